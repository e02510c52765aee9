"""`did you mean ...?` for error messages: the closest known word.

difflib is imported on the first error, not with the modules that may raise one:
it cost ~5 ms of every cache-miss `apply` (bench/README.md, fourth round).
"""

from __future__ import annotations


def closest(word: str, choices) -> str | None:
    """The choice closest to `word` (difflib's ratio >= 0.6), or None."""
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=1)
    return close[0] if close else None


__all__ = ["closest"]
