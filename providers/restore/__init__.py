"""Restoring from a snapshot: the restore plan (what would be created,
replaced and why, or is already equal) and carrying it out into a
destination other users may write. Imports providers.engine,
providers.manifest, providers.files and providers.platform."""
