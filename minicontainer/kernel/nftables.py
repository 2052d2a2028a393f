"""nftables scripts, run in-process through libnftables (the library behind the `nft` command).

`run(script)` applies a script (the `nft -f` language) as one transaction: all or nothing.
A SIGKILL cannot leave half of it behind either: the kernel commits the whole batch or none.
Through ctypes it costs about 2 ms; starting the `nft` command costs 5-30 ms (fork of a big
process, exec, loading its libraries), paid twice per bridge network. If libnftables cannot
be loaded, the `nft` command is used instead: same language, same engine.
"""
from __future__ import annotations

import ctypes
import subprocess

__all__ = ["NftError", "run"]

_context = None  # (library, context) once loaded; False if libnftables is unavailable


class NftError(Exception):
    """nft refused a script: the message is its first error line."""


def run(script: str) -> str:
    """Apply `script`; returns what nft printed (for `list ...`)."""
    global _context
    if _context is None:
        _context = _load() or False
    if _context:
        lib, ctx = _context
        rc = lib.nft_run_cmd_from_buffer(ctx, script.encode())
        # Reading a buffer also empties it for the next call.
        output = (lib.nft_ctx_get_output_buffer(ctx) or b"").decode(errors="replace")
        errors = (lib.nft_ctx_get_error_buffer(ctx) or b"").decode(errors="replace")
        if rc != 0:
            raise NftError(_first_line(errors) or f"nft failed ({rc})")
        return output
    try:
        done = subprocess.run(["nft", "-f", "-"], input=script, capture_output=True, text=True)
    except FileNotFoundError:
        raise NftError("neither libnftables nor the nft command is installed "
                       "(Debian package nftables)") from None
    if done.returncode != 0:
        raise NftError(_first_line(done.stderr) or f"nft exited with {done.returncode}")
    return done.stdout


def reset() -> None:
    """Forget the library context (after fork, when its netlink socket was the parent's)."""
    global _context
    _context = None


def _load():
    try:
        lib = ctypes.CDLL("libnftables.so.1")
    except OSError:
        return None
    lib.nft_ctx_new.restype = ctypes.c_void_p
    lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
    lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
    for getter in (lib.nft_ctx_get_output_buffer, lib.nft_ctx_get_error_buffer):
        getter.restype = ctypes.c_char_p
        getter.argtypes = [ctypes.c_void_p]
    ctx = lib.nft_ctx_new(0)  # NFT_CTX_DEFAULT
    if not ctx:
        return None
    # Keep output and errors in buffers instead of on our stdout and stderr.
    lib.nft_ctx_buffer_output(ctx)
    lib.nft_ctx_buffer_error(ctx)
    return lib, ctx


def _first_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else ""
