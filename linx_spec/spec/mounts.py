"""`mounts:` section of the spec (placeholder until its subsystem lands)."""

from .base import Model


class Mounts(Model):
    """Reserved: the mounts subsystem is not implemented yet."""
