"""hardsnap: a declarative reconciler for hardlink-based incremental snapshots."""

__version__ = "0.1.0"
