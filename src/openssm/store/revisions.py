"""The Alembic revision of a migration script, read from its file name.

Migrations are numbered ``NNNN_what.py`` in the order they apply, each after the one numbered
before it, so a script's ``revision`` and ``down_revision`` follow from its name: moving a
migration to another number (two branches that both added the next one) is a rename of the file,
not three edits that must agree. The identifiers are the same four digits the scripts always
carried, so the version table of a deployed database reads as before.
"""

from __future__ import annotations

import pathlib
import re

from openssm.errors import OpenSSMError

_NAME = re.compile(r"(\d{4})_\w+\.py")


class MigrationNameError(OpenSSMError, ValueError):
    """A migration script whose file name is not ``NNNN_what.py``."""


def numbered(file: str) -> tuple[str, str | None]:
    """``(revision, down_revision)`` of the migration script at ``file`` (its ``__file__``)."""
    name = pathlib.Path(file).name
    match = _NAME.fullmatch(name)
    if match is None or int(match[1]) == 0:
        raise MigrationNameError(f"migration {name!r} is not named NNNN_what.py (0001 and up)")
    number = int(match[1])
    return match[1], (f"{number - 1:04d}" if number > 1 else None)
