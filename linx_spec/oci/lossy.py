"""What one side can express and the other cannot, by name.

A Loss names the field (a spec path like `lifecycle.timeout` on export, a JSON
path like `linux.resources.devices` on import) and says why.  Without
`--lossy` any loss is an error listing them all (export: a PlanError, exit 66:
a valid spec the target cannot honour; import: a SpecError, exit 65, pointing
into config.json); with it, each is a warning and the rest is written.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import PlanError, Problem, SpecError


@dataclass(frozen=True)
class Loss:
    field: str
    why: str

    def __str__(self) -> str:
        return f"{self.field}: {self.why}"


class ExportLossError(PlanError):
    """The spec says things an OCI bundle cannot (exit 66, like every PlanError)."""

    def __init__(self, losses: list[Loss]):
        self.losses = list(losses)
        super().__init__("cannot be expressed in an OCI bundle: " + "; ".join(map(str, self.losses)),
                         "remove them from the spec, or export with --lossy to leave them out (each is then "
                         "a warning)", "")


def import_error(source: str, losses: list[Loss]) -> SpecError:
    """The config says things a linx-spec spec cannot (exit 65, one problem per field)."""
    return SpecError([Problem(source, 0, 0, loss.field,
                              f"{loss.why} (linx-spec cannot express it; import with --lossy to leave it out)")
                      for loss in losses])


def warnings(losses: list[Loss]) -> list[str]:
    return [f"warning: left out {loss}" for loss in losses]
