"""The one world every CLI test builds on: sites (source, target, config,
state) run through the real CLI at moments of the tests' clock, files made
and read back, processes to signal, other users, real filesystems."""
