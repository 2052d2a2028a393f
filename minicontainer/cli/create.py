"""`minicontainer create --bundle DIR [--pid-file F] [--console-socket S] [--no-pivot]
[--preserve-fds N] ID` (OCI): set the container up from the bundle's config.json and leave its
process waiting for `start`. Exits 0 once the container exists, as runc. The fds it keeps
(--preserve-fds, LISTEN_FDS) are held by that waiting process until `start` execs."""
from __future__ import annotations

import os

from minicontainer.cli._common import kept_fds, parser, store


def main(args: list[str], root: str | None) -> int:
    p = parser("create", "[--bundle DIR] [--pid-file F] [--console-socket S] [--preserve-fds N] ID",
               "Create a container from an OCI bundle; `start` runs its process.")
    p.add_argument("-b", "--bundle", default=".", help="the bundle directory (default: .)")
    p.add_argument("--pid-file", help="write the container process's pid here")
    p.add_argument("--console-socket", help="send the pty master here (process.terminal)")
    p.add_argument("--no-pivot", action="store_true", help="chroot instead of pivot_root")
    p.add_argument("--no-new-keyring", action="store_true", help="accepted; no keyring is made")
    p.add_argument("--preserve-fds", type=int, default=0, metavar="N",
                   help="the process keeps fds 3..3+N-1 (after LISTEN_FDS ones), as runc")
    p.add_argument("id")
    opts = p.parse_args(args)
    from minicontainer.errors import ContainerError
    from minicontainer.runtime.state import check_id

    check_id(opts.id)  # before the bundle is read (the store checks it again)
    from minicontainer import oci
    from minicontainer.runtime.launch import create

    bundle = os.path.abspath(opts.bundle)
    spec, annotations = oci.load_bundle(bundle, opts.id, opts.no_pivot)
    spec.process.preserve_fds = kept_fds(opts.preserve_fds, spec.process.env)
    if spec.process.terminal and not opts.console_socket:
        raise ContainerError("process.terminal is set: --console-socket is required")
    if opts.console_socket and not spec.process.terminal:
        raise ContainerError("--console-socket given, but process.terminal is false")
    create(spec, store(root), opts.id, bundle, annotations,
           pid_file=opts.pid_file and os.path.abspath(opts.pid_file),
           console_socket=opts.console_socket)
    return 0
