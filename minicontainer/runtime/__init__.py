"""The runtime: the launch sequence, the container's filesystem and process, state."""
