"""The manifest, each snapshot's record of what it holds: its format, reading it
block by block, writing it during the walk, and the target's manifests
directory. Imports providers.files and providers.platform."""
