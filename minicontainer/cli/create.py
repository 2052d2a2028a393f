"""`minicontainer create --bundle DIR [--pid-file F] [--console-socket S] [--no-pivot]
[--preserve-fds N] ID` (OCI): set the container up from the bundle's config.json and leave its
process waiting for `start`. Exits 0 once the container exists, as runc. The fds it keeps
(--preserve-fds, LISTEN_FDS) are held by that waiting process until `start` execs."""
from __future__ import annotations

import os

from minicontainer.cli._common import kept_fds
from minicontainer.cli.flags import Verb, whole

VERB = Verb("create", "[--bundle DIR] [--pid-file F] [--console-socket S] [--preserve-fds N] ID",
            "Create a container from an OCI bundle; `start` runs its process.",
            [("-b, --bundle DIR", "the bundle directory (default: .)"),
             ("--pid-file FILE", "write the container process's pid here"),
             ("--console-socket SOCKET", "send the pty master here (process.terminal)"),
             ("--no-pivot", "chroot instead of pivot_root"),
             ("--no-new-keyring", "keep the caller's session keyring instead of a new one"),
             ("--preserve-fds N", "the process keeps fds 3..3+N-1 (after LISTEN_FDS ones), "
              "as runc")],
            ["id"])


def main(args: list[str], root: str | None) -> int:
    opts = VERB.parse(args)
    preserve = whole("--preserve-fds", opts["preserve_fds"])
    from minicontainer.errors import ContainerError
    from minicontainer.runtime.state import check_id

    cid = opts["id"]
    check_id(cid)  # before the bundle is read (the store checks it again)
    from minicontainer import oci
    from minicontainer.runtime import api

    bundle = os.path.abspath(opts["bundle"] or ".")
    spec, annotations = oci.load_bundle(bundle, cid, opts["no_pivot"])
    spec.process.preserve_fds = kept_fds(preserve, spec.process.env)
    spec.security.new_keyring = not opts["no_new_keyring"]
    if spec.process.terminal and not opts["console_socket"]:
        raise ContainerError("process.terminal is set: --console-socket is required")
    if opts["console_socket"] and not spec.process.terminal:
        raise ContainerError("--console-socket given, but process.terminal is false")
    api.create(spec, cid, bundle, annotations, root,
               pid_file=opts["pid_file"] and os.path.abspath(opts["pid_file"]),
               console_socket=opts["console_socket"])
    return 0
