"""TFX Pusher: copy a BLESSED version into a serving dir that TF Serving watches."""

from __future__ import annotations

import shutil
from pathlib import Path

from medzoo.errors import InputError
from medzoo.export.versions import staged_version


def push(version_dir, serving_dir) -> Path:
    """Copy ``BASE/NAME/VERSION`` to ``SERVING_DIR/NAME/VERSION``; return the new folder.

    TF Serving polls for new integer folders, so the copy is staged in a hidden folder and renamed
    into place at the end, with ``saved_model.pb`` copied last inside it.

    Raises
    ------
    InputError
        The version is not an export, is not BLESSED, or exists in the serving dir already.
    """
    version_dir, serving_dir = Path(version_dir), Path(serving_dir)
    if not (version_dir / "saved_model.pb").is_file() or not version_dir.name.isdigit():
        raise InputError(f"{version_dir}: expected an export version dir BASE/NAME/VERSION")
    if not (version_dir / "BLESSED").exists():
        reason = ""
        if (version_dir / "NOT_BLESSED").exists():
            reason = ": " + (version_dir / "NOT_BLESSED").read_text().strip().replace("\n", "; ")
        raise InputError(f"{version_dir}: not blessed, not pushed{reason}")
    target_parent = serving_dir / version_dir.parent.name
    target = target_parent / version_dir.name
    if target.exists():
        raise InputError(f"{target}: exists already; a pushed version is never overwritten")
    with staged_version(target, doing="pushing") as staging:
        for item in sorted(version_dir.iterdir()):
            if item.name == "saved_model.pb":
                continue
            copy = shutil.copytree if item.is_dir() else shutil.copy2
            copy(item, staging / item.name)
        shutil.copy2(version_dir / "saved_model.pb", staging / "saved_model.pb")
    return target
