"""The kernel layer: thin, typed, no policy. Syscalls through cffi (syscalls.py, its C module
built by _build.py), capabilities (caps.py: raw capset(2) and prctl(2)), cgroup v2 files
(cgroupfs.py), netlink (netlink.py), nftables (nftables.py), seccomp (seccomp.py) and the
--trace switch (trace.py). Everything above imports from here, never the other way."""
