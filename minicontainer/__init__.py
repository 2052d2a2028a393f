"""minicontainer: a small, fast, honest container runtime built directly on Linux primitives.

The Python API (docs/harness.md), loaded on first use: `import minicontainer` stays as cheap
as the CLI needs it to be (the launcher imports this package on every `run`).

    minicontainer.run(rootfs, argv, ...)  -> Result         one container, to completion
    minicontainer.Container(rootfs, argv, ...)             a service: start, exec, logs, ports
"""

__version__ = "0.1.0"

# name -> the module that defines it
_PUBLIC = {
    "run": "minicontainer.harness", "Container": "minicontainer.harness",
    "Result": "minicontainer.harness",
    "ContainerError": "minicontainer.errors", "UsageError": "minicontainer.errors",
    "CannotExecute": "minicontainer.errors", "CommandNotFound": "minicontainer.errors",
    "ExitStatusError": "minicontainer.errors", "Timeout": "minicontainer.errors",
}
__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'minicontainer' has no attribute {name!r}")
    value = getattr(__import__(module, fromlist=[name]), name)
    globals()[name] = value  # once: later lookups do not come here
    return value


def __dir__():
    return sorted(set(globals()) | set(_PUBLIC))
