"""The kernel layer: thin, typed, no policy. Syscalls (cffi), capabilities (python-prctl),
and later cgroupfs and netlink. Everything above imports from here, never the other way."""
