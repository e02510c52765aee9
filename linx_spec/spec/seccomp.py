"""`seccomp:` section of the spec (placeholder until its subsystem lands)."""

from .base import Model


class Seccomp(Model):
    """Reserved: the seccomp subsystem is not implemented yet."""
