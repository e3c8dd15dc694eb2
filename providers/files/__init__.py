"""Handling files below a directory descriptor, never following a symlink: the
walk, digests, holes, locks, trust and escaping that the engine, the manifests,
the audits and the backup resource share. Imports only providers.platform."""
