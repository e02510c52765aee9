"""`cgroup:` section of the spec (placeholder until its subsystem lands)."""

from .base import Model


class Cgroup(Model):
    """Reserved: the cgroup subsystem is not implemented yet."""
