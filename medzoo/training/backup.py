"""Crash-safe training backups: a run killed at any instant resumes from its last whole epoch.

Keras' ``BackupAndRestore`` overwrites ``latest.weights.h5`` in place, so a kill -9 during that
write leaves a truncated file that the next run cannot open. Here every epoch's weights go to a
new file (written under a temporary name, then renamed), and ``state.json`` — itself replaced
atomically — names the file to resume from. Whatever instant the process dies, ``state.json``
points at a complete weights file.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from medzoo import fsio

STATE = "state.json"


def make_backup_callback(backup_dir):
    """A ``keras.callbacks.Callback`` that backs up after every epoch and restores on start."""
    import keras

    backup_dir = Path(backup_dir)

    class AtomicBackupAndRestore(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            state_path = backup_dir / STATE
            if not state_path.exists():
                return
            state = fsio.read_json(state_path)
            optimizer = getattr(self.model, "optimizer", None)
            if optimizer is not None and not optimizer.built:
                optimizer.build(self.model.trainable_variables)
            self.model.load_weights(backup_dir / state["weights"])
            self.model._initial_epoch = int(state["epoch"])

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
