"""The container's seccomp filter: which profile, compiled once per (profile, capabilities),
cached as BPF, loaded last before execve (runtime/process.py load_seccomp).

Security.seccomp says which profile:
    None        unconfined (--security-opt seccomp=unconfined, --privileged, an OCI config
                without linux.seccomp, as runc)
    "default"   docker's default profile, shipped as runtime/seccomp_default.json
    a dict      a profile in docker's or the OCI format (--security-opt seccomp=FILE, an OCI
                config's linux.seccomp)
The translation into libseccomp rules is runtime/seccomp_profile.py.

Start-up: libseccomp builds docker's profile in a few milliseconds and the translator needs
json; a start would pay both every time. Instead the BPF is cached in <state root>/seccomp/KEY,
KEY a sha256 of everything the BPF depends on: the profile's text, the capabilities (docker's
profile allows more to a container holding, say, CAP_SYS_ADMIN), the architecture and kernel
release (`includes.minKernel`), and the code that makes the BPF (its files' sizes and mtimes).
For the default profile that is one read of a 16 KB file and a hash: no json, no libseccomp
call.
The cache lives under the state root, a root-only directory: whoever could write it could
equally write the runtime.
"""
from __future__ import annotations

import os

from minicontainer.kernel import syscalls

try:
    from _sha256 import sha256  # the C module behind hashlib.sha256, without hashlib's imports
except ImportError:  # Python 3.12+
    from _sha2 import sha256

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_PROFILE = os.path.join(HERE, "seccomp_default.json")
# the code that makes the BPF: a change to either is a new cache key
TRANSLATOR = (os.path.join(HERE, "seccomp_profile.py"),
              os.path.join(os.path.dirname(HERE), "kernel", "seccomp.py"))


def profile_text(profile) -> bytes:
    """The bytes that identify a profile: the default one's file, or a dict's canonical JSON
    (only called for a dict where json is loaded already: the CLI or an OCI config read it)."""
    if profile == "default":
        with open(DEFAULT_PROFILE, "rb") as f:
            return f.read()
    import json

    return json.dumps(profile, sort_keys=True, separators=(",", ":")).encode()


def filter_for(security, state_root: str, cache: bool = True) -> tuple[bytes, int] | None:
    """(BPF, seccomp(2) flags) for a container with `security`, or None when unconfined.
    Raises ContainerError naming what a profile asks for that is not supported.
    cache=False: a profile not cached yet is compiled but not written (run --dry-run)."""
    if security.seccomp is None:
        return None
    text = profile_text(security.seccomp)
    caps = ",".join(sorted(security.capabilities)).encode()
    uname = os.uname()
    ident = f"{uname.machine}\0{uname.release}"
    for code in TRANSLATOR:
        st = os.stat(code)
        ident += f"\0{st.st_size}\0{st.st_mtime_ns}"
    key = sha256(b"\0".join((text, caps, ident.encode()))).hexdigest()[:40]
    directory = os.path.join(state_root, "seccomp")
    path = os.path.join(directory, key)
    try:
        with open(path, "rb") as f:
            data = f.read()
        syscalls.note(f"seccomp: cached filter {path} ({len(data) // 8 - 1} instructions)")
        return data[8:], int.from_bytes(data[:8], "little")
    except FileNotFoundError:
        pass
    from minicontainer.runtime import seccomp_profile

    bpf, flags = seccomp_profile.compile_profile(
        seccomp_profile.load_default() if security.seccomp == "default" else security.seccomp,
        security.capabilities)
    if not cache:
        return bpf, flags
    os.makedirs(directory, mode=0o700, exist_ok=True)
    tmp = f"{path}.{os.getpid()}"
    with open(tmp, "wb") as f:  # written aside and renamed: a reader sees all of it or none
        f.write(flags.to_bytes(8, "little") + bpf)
    os.rename(tmp, path)
    syscalls.note(f"seccomp: compiled the profile ({len(bpf) // 8} instructions) into {path}")
    return bpf, flags
