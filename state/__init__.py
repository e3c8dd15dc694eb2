"""Persisted state of hardsnap: runs, results, reverts, pending hooks, the apply lock."""
