"""`capabilities:` section of the spec (placeholder until its subsystem lands)."""

from .base import Model


class Capabilities(Model):
    """Reserved: the capabilities subsystem is not implemented yet."""
