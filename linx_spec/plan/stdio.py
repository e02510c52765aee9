"""The stdio plan: where the workload's fds 0, 1 and 2 come from (opened by the
runner at spawn, relative file paths against the spec file's directory)."""

from __future__ import annotations

import os

from ..record import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (a cached apply's path: record.py)

if TYPE_CHECKING:
    from ..spec import Spec


class StreamPlan(Record):
    kind: str  # inherit | null | file | pty
    path: str | None = None  # absolute, for file
    append: bool = True


class StdioPlan(Record):
    stdin: StreamPlan = StreamPlan("inherit")
    stdout: StreamPlan = StreamPlan("inherit")
    stderr: StreamPlan = StreamPlan("inherit")

    @property
    def pty(self) -> bool:
        return self.stdin.kind == "pty"


def resolve(spec: Spec, base_dir: str) -> StdioPlan:
    from ..spec.stdio import FileStream

    value = "null" if spec.stdio is None else spec.stdio  # YAML's bare null
    if isinstance(value, str):
        return StdioPlan(*(StreamPlan(value),) * 3)

    def one(stream) -> StreamPlan:
        if stream is None:
            return StreamPlan("null")
        if isinstance(stream, FileStream):
            path = os.path.normpath(os.path.join(base_dir, stream.file))
            return StreamPlan("file", path, stream.mode == "append")
        return StreamPlan(stream)

    return StdioPlan(one(value.stdin), one(value.stdout), one(value.stderr))
