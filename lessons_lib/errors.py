"""Exceptions raised by :mod:`lessons_lib`.

Every error a user can cause with bad input is a :class:`DataError` whose message names the
file (or folder) at fault and says how to fix it.
"""

from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """Bad or missing input data.

    Args:
        message: What is wrong.
        path: The file or folder at fault (named in the message).
        fix: What the user should do about it.
    """

    def __init__(self, message: str, path: Path | str | None = None, fix: str | None = None):
        self.path = Path(path) if path is not None else None
        self.fix = fix
        text = message
        if path is not None:
            text = f"{path}: {message}"
        if fix:
            text = f"{text}\n  fix: {fix}"
        super().__init__(text)
