"""Audits of existing snapshots, read only: verify against the manifest, diff
two snapshots, the history of one path. Imports providers.manifest,
providers.files and providers.platform."""
