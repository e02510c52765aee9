"""`rlimits:` section of the spec (placeholder until its subsystem lands)."""

from .base import Model


class Rlimits(Model):
    """Reserved: the rlimits subsystem is not implemented yet."""
