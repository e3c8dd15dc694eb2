"""hardsnap: a declarative reconciler for hardlink-based incremental snapshots.

The package is made of three parts, each a folder of the repository:
`hardsnap.reconcile` (config, planner, applier, command line),
`hardsnap.providers` (the backup provider: what touches disk) and
`hardsnap.state` (persisted state). This folder holds only what makes
them one package: `python -m hardsnap` runs the command line.
"""

from hardsnap.reconcile import __version__

__all__ = ["__version__"]
