"""The plan: a value describing what a converge would do, per resource.

Each resource's provider plans its change (providers/backup/plan.py); the
core puts the change's actions in a graph that orders them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from hardsnap.providers.backup.actions import Action, ActionKind, Change, Pruning
from hardsnap.providers.backup.resource import Resource
from hardsnap.providers.backup.retention import Reason


class ActionGraph:
    """The actions of one resource and what each waits for, as a networkx
    DiGraph: one node per ActionKind with its Action under "action"; an edge
    means "runs after, and only if it succeeded".

    networkx is imported when the first action is added, so a run with
    nothing to do (a timer every few minutes) never pays for loading it.
    """

    def __init__(self) -> None:
        self.graph: Any = None

    @classmethod
    def of(cls, actions: tuple[Action, ...]) -> ActionGraph:
        graph = cls()
        for action in actions:
            graph.add(action)
        return graph

    def add(self, action: Action) -> None:
        """Add an action after those it names in `after` (when planned)."""
        if self.graph is None:
            import networkx

            self.graph = networkx.DiGraph()
        self.graph.add_node(action.kind, action=action)
        for kind in action.after:
            if kind in self.graph:
                self.graph.add_edge(kind, action.kind)

    def __contains__(self, kind: ActionKind) -> bool:
        return self.graph is not None and kind in self.graph

    def __len__(self) -> int:
        return 0 if self.graph is None else int(self.graph.number_of_nodes())

    @property
    def edges(self) -> list[tuple[ActionKind, ActionKind]]:
        return [] if self.graph is None else list(self.graph.edges)

    def ordered(self) -> list[Action]:
        """The actions in execution order: topological, ties by kind."""
        if self.graph is None:
            return []
        import networkx

        order = networkx.lexicographical_topological_sort(self.graph, key=lambda kind: kind.rank)
        return [self.graph.nodes[kind]["action"] for kind in order]

    def action(self, kind: ActionKind) -> Action | None:
        if kind not in self:
            return None
        action: Action = self.graph.nodes[kind]["action"]
        return action

    def predecessors(self, kind: ActionKind) -> list[ActionKind]:
        if kind not in self:
            return []
        return sorted(self.graph.predecessors(kind), key=lambda kind: kind.rank)


@dataclass(frozen=True)
class ResourcePlan:
    """The planned actions of one resource, with why and why not."""

    resource: Resource
    change: Change
    graph: ActionGraph = field(compare=False)

    @classmethod
    def of(cls, resource: Resource, change: Change) -> ResourcePlan:
        return cls(resource, change, ActionGraph.of(change.actions))

    @property
    def target(self) -> str:
        return self.change.target

    @property
    def notes(self) -> tuple[str, ...]:
        return self.change.notes

    @property
    def refusal(self) -> str | None:
        return self.change.refusal

    @property
    def warning(self) -> str | None:
        return self.change.warning

    @property
    def warnings(self) -> tuple[str, ...]:
        return self.change.warnings

    @property
    def config_warnings(self) -> tuple[str, ...]:
        return self.change.config_warnings

    @property
    def kept(self) -> tuple[tuple[str, tuple[Reason, ...]], ...]:
        return self.change.kept

    @property
    def pruning(self) -> Pruning:
        return self.change.pruning

    @property
    def actions(self) -> list[Action]:
        return self.graph.ordered()

    def action(self, kind: ActionKind) -> Action | None:
        return self.graph.action(kind)

    def depends_on(self, kind: ActionKind) -> list[ActionKind]:
        return self.graph.predecessors(kind)

    @property
    def has_changes(self) -> bool:
        return len(self.graph) > 0


@dataclass(frozen=True)
class Plan:
    now: dt.datetime
    resources: tuple[ResourcePlan, ...]
    # Resources with recorded state but absent from the config.
    unmanaged: tuple[str, ...] = ()

    @property
    def has_changes(self) -> bool:
        return any(resource.has_changes for resource in self.resources)

    @property
    def refused(self) -> bool:
        return any(resource.refusal for resource in self.resources)
