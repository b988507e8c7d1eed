"""Export versions ``BASE/NAME/VERSION``: which exist, which is next, and writing a new one.

A version is built in a hidden folder beside its final place (``.VERSION.partial-XXXX``) and
renamed into place when it is complete, so a half-written version is never visible; an existing
version is never overwritten, and the hidden folder is removed when the export fails.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from pathlib import Path

from medzoo.errors import InputError

__all__ = ["existing_versions", "new_version_dir", "staged_version"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def existing_versions(model_dir: Path) -> list[int]:
    """Integer version folders under ``BASE/NAME`` (hidden temp folders are not versions)."""
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def new_version_dir(base: Path, name: str, version: int | None) -> Path:
    """``base/name/version`` for a new export (next free version by default); never existing.

    Raises
    ------
    InputError
        A name that is not a plain folder name, a version below 1, or an existing version.
    """
    if not _NAME.match(name):
        raise InputError(f"--name must be letters, digits, '_', '.', '-'. Received: {name!r}")
    versions = existing_versions(base / name)
    version = int(version) if version is not None else (versions[-1] + 1 if versions else 1)
    if version < 1:
        raise InputError(f"--version must be a positive integer. Received: {version}")
    final_dir = base / name / str(version)
    if final_dir.exists():
        raise InputError(f"{final_dir}: version {version} exists already; exports are never "
                         "overwritten (omit --version to take the next one)")
    return final_dir


@contextlib.contextmanager
def staged_version(final_dir: Path, *, doing: str = "exporting"):
    """Yield a hidden sibling folder of ``final_dir`` to write the version into.

    When the block succeeds the folder is renamed to ``final_dir``; when it raises, or when
    ``final_dir`` appeared meanwhile, it is removed and nothing is published.

    Parameters
    ----------
    final_dir : Path
        ``BASE/NAME/VERSION`` (its parent is created).
    doing : str
        What the block does, for the error ("exporting", "pushing").

    Raises
    ------
    InputError
        ``final_dir`` exists when the block ends ("appeared while exporting; not overwritten").
    """
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final_dir.name}.partial-", dir=final_dir.parent))
    try:
        yield staging
        if final_dir.exists():
            raise InputError(f"{final_dir}: appeared while {doing}; not overwritten")
        os.rename(staging, final_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
