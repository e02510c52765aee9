"""The base of every spec model: unknown keys are errors, values are frozen."""

from pydantic import BaseModel, ConfigDict


class Model(BaseModel):
    """Every section of the spec derives from this."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
