"""The engine: the walk that makes a snapshot (directories, placing files,
copying, hashing, flushing, forked walkers). Imports providers.manifest,
providers.files and providers.platform; it knows nothing of resources."""
