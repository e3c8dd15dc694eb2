"""The `backup` resource: its schema, its plan (policy, refusals, retention and
pruning), the facts it observes and its effects (hooks, snapshot, prune). May
import every other providers folder; nothing under providers imports it."""
