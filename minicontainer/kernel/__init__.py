"""The kernel layer: thin, typed, no policy. Syscalls (cffi), capabilities (raw capset(2) and
prctl(2)), and later cgroupfs and netlink. Everything above imports from here, never the other way."""
