"""`network:` section of the spec (placeholder until its subsystem lands)."""

from .base import Model


class Network(Model):
    """Reserved: the network subsystem is not implemented yet."""
