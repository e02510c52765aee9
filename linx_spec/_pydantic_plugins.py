"""pydantic without plugin discovery, for the `linx-spec` command.

The first time pydantic builds a validator it looks for plugins: the entry points
of every installed distribution (importlib.metadata, which imports email, zipfile
and csv: ~17 ms of a cold `apply`, a fifth of validating a spec), and it imports
whatever declares one into the process.  The command wants neither: a plugin of
some other package would see every spec and could change how it is validated, in
a process that often runs as root.  pydantic's own switch (PYDANTIC_DISABLE_PLUGINS)
still imports the discovery code, so the command registers, before pydantic builds
anything, a loader module that has no plugins.  The Python API leaves pydantic as
the application set it up.
"""

from __future__ import annotations

import sys

LOADER = "pydantic.plugin._loader"  # pydantic/plugin/_schema_validator.py: `from ._loader import get_plugins`


def _no_plugins() -> tuple[()]:
    return ()


def disable() -> None:
    """No pydantic plugins in this process (a no-op once pydantic has looked for them)."""
    if LOADER not in sys.modules:
        loader = type(sys)(LOADER)
        loader.__doc__ = __doc__
        loader.get_plugins = _no_plugins
        sys.modules[LOADER] = loader
