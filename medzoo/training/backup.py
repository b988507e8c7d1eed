"""Crash-safe training backups: a run killed at any instant resumes from its last whole epoch.

Keras' ``BackupAndRestore`` overwrites ``latest.weights.h5`` in place, so a kill -9 during that
write leaves a truncated file that the next run cannot open. Here every epoch's weights go to a
new file (written under a temporary name, then renamed), and ``state.json`` — itself replaced
atomically — names the file to resume from. Whatever instant the process dies, ``state.json``
points at a complete weights file.

The backup callback goes last in a run's callbacks, after the history logger, so that an epoch
is logged before it counts as done; a kill between the two leaves rows of epochs the backup does
not hold, which the resumed run cuts off before logging them again: one row per epoch.
:func:`make_best_checkpoint` keeps the best model the same way: written beside its place and
renamed, and still the best over a run that was killed and resumed.
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

from medzoo import fsio

STATE = "state.json"


def _drop_history_from(history_csv: Path, epoch: int) -> None:
    """Cut ``history_csv`` (a CSVLogger file) before its first row of ``epoch`` or later: the rows
    a killed run logged after its last backup, which the resumed run logs again. Truncated in
    place (one system call), so a logger that already holds the file open for appending goes on
    at the new end."""
    if not history_csv.is_file():
        return
    offset = 0
    with open(history_csv, "rb") as fh:
        lines = fh.readlines()
    for i, line in enumerate(lines):
        first = line.split(b",", 1)[0].strip()
        if i and first.isdigit() and int(first) >= epoch:
            with open(history_csv, "r+b") as fh:
                fh.truncate(offset)
            return
        offset += len(line)


def make_backup_callback(backup_dir, history_csv=None):
    """A ``keras.callbacks.Callback`` that backs up after every epoch and restores on start
    (cutting ``history_csv``, when given, back to the epochs the backup holds)."""
    import keras

    backup_dir = Path(backup_dir)

    class AtomicBackupAndRestore(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            state_path = backup_dir / STATE
            if not state_path.exists():  # training starts at epoch 0: no row logged stands
                if history_csv is not None:
                    _drop_history_from(Path(history_csv), 0)
                return
            state = fsio.read_json(state_path)
            optimizer = getattr(self.model, "optimizer", None)
            if optimizer is not None and not optimizer.built:
                optimizer.build(self.model.trainable_variables)
            self.model.load_weights(backup_dir / state["weights"])
            self.model._initial_epoch = int(state["epoch"])
            if history_csv is not None:
                _drop_history_from(Path(history_csv), int(state["epoch"]))

        def on_epoch_end(self, epoch, logs=None):
            backup_dir.mkdir(parents=True, exist_ok=True)
            name = f"epoch-{epoch + 1:04d}.weights.h5"
            tmp = backup_dir / f"partial-{name}"  # Keras needs the .weights.h5 suffix
            self.model.save_weights(tmp, overwrite=True)
            os.replace(tmp, backup_dir / name)
            fsio.write_json(backup_dir / STATE, {"epoch": epoch + 1, "weights": name})
            for old in backup_dir.glob("*.weights.h5"):
                if old.name != name:
                    old.unlink(missing_ok=True)

        def on_train_end(self, logs=None):
            shutil.rmtree(backup_dir, ignore_errors=True)

    return AtomicBackupAndRestore()


def make_best_checkpoint(path, history_csv, monitor: str = "val_loss"):
    """A ``keras.callbacks.Callback`` keeping the model of the lowest ``monitor`` at ``path``.

    Like ``ModelCheckpoint(save_best_only=True)``, but crash-safe: the model is saved beside
    ``path`` and renamed over it (a kill never leaves a cut-short file), and a resumed run
    compares against the best value its killed predecessor logged in ``history_csv`` for the
    epochs before the resumed one, so a worse epoch after a restart does not replace a better
    model saved before it.
    """
    import keras

    from medzoo.training.curves import read_history

    path, history_csv = Path(path), Path(history_csv)

    class BestCheckpoint(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.best = None
            for stale in path.parent.glob(f".{path.name}.*"):  # a save cut short by a kill
                stale.unlink(missing_ok=True)

        def on_epoch_end(self, epoch, logs=None):
            if self.best is None:  # the first epoch of this fit: is it a resumed one?
                earlier = [row[monitor] for row in read_history(history_csv)
                           if row["epoch"] < epoch and monitor in row] if path.is_file() else []
                self.best = min(earlier, default=math.inf)
            value = (logs or {}).get(monitor)
            if value is None or not value < self.best:
                return
            self.best = float(value)
            with fsio.atomic_path(path, suffix=".keras") as tmp:
                self.model.save(tmp)

    return BestCheckpoint()
