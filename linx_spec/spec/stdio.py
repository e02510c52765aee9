"""`stdio:` where the workload's standard streams go.

    stdio: inherit            # all three streams: inherit (default) | null | pty
    stdio:                    # or per stream
      stdin: null
      stdout: {file: logs/out.log, mode: append}
      stderr: {file: logs/err.log, mode: truncate}

`pty` gives the workload a pseudo-terminal (as `apply -t`): it becomes the
session leader with the terminal as its controlling tty.  Captured pipes are a
Python API feature (`run(plan, capture_output=True)`), not a spec setting.
Relative file paths resolve against the spec file's directory.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from typing import Any

from pydantic import Discriminator, Field, Tag, model_validator

from .base import Model


class FileStream(Model):
    """A stream connected to a file on the host (opened by the runner)."""

    file: str = Field(min_length=1, description="Path of the file (relative paths: against the spec's directory).")
    mode: Literal["append", "truncate"] = Field(
        default="append", description="For output streams: append to the file, or truncate it first.")


def _kind(value: Any) -> str:
    return "file" if isinstance(value, (dict, FileStream)) else "word"


Stream = Annotated[
    Union[Annotated[Literal["inherit", "null"], Tag("word")], Annotated[FileStream, Tag("file")]],
    Discriminator(_kind),
    Field(description="`inherit` the caller's stream, `null` (/dev/null), or `{file: PATH, mode: append|truncate}`."),
]


class Streams(Model):
    """Per-stream form."""

    # YAML reads a bare `null` as None: it means /dev/null here (plan/stdio.py).
    stdin: Stream | None = Field(default="inherit", description="Standard input: inherit, null or {file: PATH}.")
    stdout: Stream | None = Field(default="inherit", description="Standard output: inherit, null or {file: PATH, mode: append|truncate}.")
    stderr: Stream | None = Field(default="inherit", description="Standard error: inherit, null or {file: PATH, mode: append|truncate}.")

    @model_validator(mode="after")
    def _stdin_mode(self) -> "Streams":
        if isinstance(self.stdin, FileStream) and "mode" in self.stdin.model_fields_set:
            raise ValueError("stdin: `mode` applies to output streams only")
        return self


def _stdio_kind(value: Any) -> str:
    return "streams" if isinstance(value, (dict, Streams)) else "word"


StdioSpec = Annotated[
    Union[Annotated[Literal["inherit", "null", "pty"], Tag("word")], Annotated[Streams, Tag("streams")]],
    Discriminator(_stdio_kind),
    Field(description="`inherit` (default), `null`, `pty`, or a mapping per stream (stdin, stdout, stderr)."),
]
