"""What `apply` shows while it runs: lines per action, a live progress bar on
a terminal, warnings on stderr. Only presentation; the applier decides."""

from __future__ import annotations

import textwrap
from typing import Any

from hardsnap.providers.backup.actions import Action, ActionKind
from hardsnap.providers.files.escaping import escape_text, format_bytes
from hardsnap.reconcile import journal, render
from hardsnap.reconcile.outcomes import ActionOutcome, Reporter, ResourceOutcome, Result


def warn(outcome: ResourceOutcome) -> None:
    """Print a resource's warnings and error on stderr, a line each."""
    for warning in outcome.warnings:
        journal.say(f"warning: {outcome.name}: {escape_text(warning)}", journal.WARNING)
    if outcome.message:
        journal.say(f"error: {outcome.name}: {escape_text(outcome.message)}", journal.ERROR)


class WarningsReporter(Reporter):
    """For --json: stdout carries only the final document; warnings go to stderr."""

    def resource_finished(self, outcome: ResourceOutcome) -> None:
        warn(outcome)


class TextReporter(Reporter):
    """Plain lines per action and resource; on a terminal, also a live
    progress bar while a snapshot runs (files and bytes done, rate, and an
    ETA from the previous snapshot's file count).

    verbosity: -1 quiet (failed resources and warnings only), 0 normal, 1
    verbose (reasons too).
    """

    def __init__(self, verbosity: int = 0, color: bool = False, live: bool = False) -> None:
        self.verbosity = verbosity
        self.color = color
        self.live = live and verbosity >= 0
        self.wants_totals = self.live
        # rich is loaded only for the live bar, which owns the terminal while
        # it runs: lines then go through its console.
        self.console: Any = None
        if self.live:
            from rich.console import Console

            self.console = Console(
                highlight=False, soft_wrap=True, no_color=not color, force_terminal=True
            )
        self._progress: Any = None
        self._task: Any = None
        self._announced: set[str] = set()

    def _print(self, line: str) -> None:
        if self.console is None:
            print(line, flush=True)
            return
        from rich.text import Text

        # On a terminal, a long line wraps at a space, its continuation
        # indented, never in the middle of a number or a name.
        text = Text.from_ansi(line)
        width = self.console.width
        if text.cell_len <= width:
            self.console.print(text)
            return
        indent = " " * (len(text.plain) - len(text.plain.lstrip(" ")) + 4)
        for part in textwrap.wrap(text.plain, width, subsequent_indent=indent):
            self.console.print(Text(part))

    def _announce(self, resource: str) -> None:
        if resource not in self._announced and self.verbosity >= 0:
            self._announced.add(resource)
            self._print(render.resource_heading(resource, self.color))

    def action_started(self, resource: str, action: Action, expected_files: int | None) -> None:
        self._announce(resource)
        if self.live and action.kind is ActionKind.SNAPSHOT:
            self._start_bar("  + snapshot", expected_files)

    def _start_bar(self, description: str, expected_files: int | None) -> None:
        from rich.progress import (
            BarColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        # Laid out for 80 columns: "  + snapshot ━━━━━━━━━━ 12,345/100,000
        # files, 1.2 GiB, 3,456/s ETA 0:01:40" (the name is on the line above).
        self._progress = Progress(
            TextColumn("{task.description}", markup=False),
            BarColumn(bar_width=10),
            TextColumn(
                "{task.fields[done]} files, {task.fields[copied]}, {task.fields[rate]}",
                markup=False,
            ),
            TextColumn("ETA", markup=False),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        self._progress.start()
        self._task = self._progress.add_task(
            description,
            total=expected_files,
            done=_counted(0, expected_files),
            copied="0 B",
            rate="-/s",
        )

    def snapshot_progress(self, files: int, bytes_copied: int) -> None:
        if self._progress is None:
            return
        task = self._progress.tasks[0]
        elapsed = task.elapsed or 0.0
        rate = f"{files / elapsed:,.0f}/s" if elapsed > 0 else "-/s"
        total = task.total
        if total is not None and files > total:
            total = None
        self._progress.update(
            self._task,
            completed=files,
            total=total,
            done=_counted(files, None if total is None else int(total)),
            copied=format_bytes(bytes_copied),
            rate=rate,
        )

    def _stop_bar(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def action_finished(self, resource: ResourceOutcome, outcome: ActionOutcome) -> None:
        self._stop_bar()
        if self.verbosity < 0:
            return
        self._announce(resource.name)
        self._print(render.action_outcome_line(outcome, self.color))
        if self.verbosity > 0:
            self._print(f"      {outcome.action.reason}")
        lines = render.hook_output_lines(outcome, all_lines=self.verbosity > 0)
        for line in lines:
            self._print(line)

    def resource_finished(self, outcome: ResourceOutcome) -> None:
        self._stop_bar()
        # Quiet: nothing but problems (cron mails whatever is printed).
        if self.verbosity >= 0 or outcome.result is Result.FAILED:
            self._print(render.resource_outcome_line(outcome, self.color))
        warn(outcome)

    def close(self) -> None:
        self._stop_bar()


def _counted(files: int, total: int | None) -> str:
    """`12,345/100,000`, or `12,345` when the total is not known."""
    return f"{files:,}" if total is None else f"{files:,}/{total:,}"
