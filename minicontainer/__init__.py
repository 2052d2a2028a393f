"""minicontainer: a small, fast, honest container runtime built directly on Linux primitives."""

__version__ = "0.1.0"
