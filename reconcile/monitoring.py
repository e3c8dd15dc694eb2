"""Telling the outside world how backups went: an on_failure hook and a
Prometheus text-format metrics file (healthchecks-style pings are in
reconcile/pings.py).

Neither can fail a backup: an on_failure hook that fails, or a metrics
file that cannot be written, is a warning.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

from hardsnap.providers.backup import hooks
from hardsnap.providers.backup.resource import Resource
from hardsnap.providers.files import outside


def run_on_failure(resource: Resource, error: str, cwd: str) -> str | None:
    """Run the resource's on_failure hook with the error in its environment;
    return a warning when the hook itself fails."""
    if not resource.on_failure:
        return None
    environment = hooks.hook_environment(
        resource.name, resource.source_dir, resource.target_path, None
    )
    environment["HARDSNAP_ERROR"] = error
    result = hooks.run_hook(resource.on_failure, environment, cwd, resource.hook_timeout)
    if result.succeeded:
        return None
    what = "timed out" if result.timed_out else f"exited {result.exit_code}"
    return f"on_failure {what}"


GAUGES = (
    ("hardsnap_last_run_timestamp_seconds", "Time of the last apply of the resource."),
    ("hardsnap_last_success_timestamp_seconds", "Time of the last successful apply."),
    ("hardsnap_last_run_success", "1 when the last apply of the resource succeeded, else 0."),
    ("hardsnap_snapshots", "Snapshots of the resource in its target."),
    ("hardsnap_last_snapshot_bytes_copied", "Bytes the last snapshot copied."),
    ("hardsnap_last_run_duration_seconds", "Seconds the last apply of the resource took."),
    (
        "hardsnap_pruning_suspended",
        "1 while pruning of the resource is suspended (clock sanity), else 0.",
    ),
)


def metrics_text(values: dict[str, dict[str, float]]) -> str:
    """The Prometheus text format of gauges by resource name: each gauge
    with its HELP and TYPE lines, then one sample per resource that has it."""
    lines = []
    for gauge, help_text in GAUGES:
        samples = [(name, got[gauge]) for name, got in values.items() if gauge in got]
        if not samples:
            continue
        lines.append(f"# HELP {gauge} {help_text}")
        lines.append(f"# TYPE {gauge} gauge")
        for name, value in samples:
            lines.append(f'{gauge}{{resource="{_label(name)}"}} {_number(value)}')
    return "\n".join(lines) + "\n"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def resource_metrics(record: dict[str, Any], snapshots: int) -> dict[str, float]:
    """The gauges of one resource from its record (see reconcile/applier.py)."""
    values: dict[str, float] = {
        "hardsnap_snapshots": snapshots,
        "hardsnap_pruning_suspended": 1 if record.get("pruning_suspended_since") else 0,
    }
    last = record.get("last_run")
    if not last:
        return values
    values["hardsnap_last_run_timestamp_seconds"] = _seconds(last["at"])
    values["hardsnap_last_run_success"] = 1 if last["success"] else 0
    values["hardsnap_last_run_duration_seconds"] = float(last.get("duration") or 0)
    if record.get("last_success_at"):
        values["hardsnap_last_success_timestamp_seconds"] = _seconds(record["last_success_at"])
    if record.get("last_snapshot_bytes_copied") is not None:
        values["hardsnap_last_snapshot_bytes_copied"] = record["last_snapshot_bytes_copied"]
    return values


def _seconds(moment: str) -> float:
    return dt.datetime.fromisoformat(moment.replace("Z", "+00:00")).timestamp()


def write_metrics(path: str, text: str) -> list[str]:
    """Replace the metrics file atomically, readable by the node_exporter
    user, through its directory's descriptor (providers/files/outside.py); return
    warnings: that another user can write that directory, that the file
    could not be written."""
    directory = os.path.realpath(os.path.dirname(os.path.abspath(path)))
    try:
        directory_fd, exposed = outside.open_directory(directory)
    except OSError as error:
        return [f"cannot write metrics_file {path}: {error.strerror}"]
    warnings = []
    if exposed is not None:
        warnings.append(
            f"metrics_file {path}: another user can write {exposed}, and so replace the "
            f"metrics file (hardsnap never writes through what they put there): make "
            f"{exposed} writable by its owner alone (chown root, chmod go-w); node_exporter "
            f"only reads the file"
        )
    try:
        outside.replace_file(
            directory_fd,
            os.path.basename(path),
            text.encode("utf-8"),
            0o644,
            ".hardsnap-metrics.",
        )
    except OSError as error:
        warnings.append(f"cannot write metrics_file {path}: {error.strerror}")
    finally:
        os.close(directory_fd)
    return warnings
