"""A kill at any instant of a backup leaves a resumable state (state.json → whole weights file)."""

import numpy as np

from medzoo.training.backup import make_backup_callback
from medzoo.zoo import registry


def _model():
    return registry.build("cnn", (16, 16, 1), 2, widths=(4,), dense=4)


def test_resume_ignores_a_weights_file_cut_short_by_a_kill(tmp_path):
    backup = tmp_path / "backup"
    model = _model()
    callback = make_backup_callback(backup)
    callback.set_model(model)
    for epoch in range(2):
        model.get_layer("fc").kernel.assign(np.full(model.get_layer("fc").kernel.shape, epoch + 1.0))
        callback.on_epoch_end(epoch)
    # killed while writing epoch 3: a truncated temporary file, state.json untouched
    (backup / "partial-epoch-0003.weights.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 10)
    assert sorted(p.name for p in backup.iterdir()) == [
        "epoch-0002.weights.h5", "partial-epoch-0003.weights.h5", "state.json"]

    fresh = _model()
    restore = make_backup_callback(backup)
    restore.set_model(fresh)
    restore.on_train_begin()
    assert fresh._initial_epoch == 2
    np.testing.assert_array_equal(np.asarray(fresh.get_layer("fc").kernel), 2.0)
    restore.on_train_end()
    assert not backup.exists()


def test_a_resumed_run_keeps_the_better_model_saved_before_the_kill(tmp_path):
    from medzoo.training.backup import make_best_checkpoint
    from medzoo.training.fit import _callbacks

    best, history = tmp_path / "checkpoints" / "best.keras", tmp_path / "history.csv"
    model = _model()
    first = make_best_checkpoint(best, history)
    first.set_model(model)
    first.on_train_begin()
    rows = ["epoch,loss,val_loss"]
    for epoch, val_loss in enumerate([0.5, 0.3, 0.4]):
        rows.append(f"{epoch},1.0,{val_loss}")
        history.write_text("\n".join(rows) + "\n")
        first.on_epoch_end(epoch, {"val_loss": val_loss})
    saved = best.stat().st_mtime_ns
    assert [p.name for p in best.parent.iterdir()] == ["best.keras"]  # no temporary left

    # killed after epoch 2 was logged; the resumed run redoes epoch 2 (logged twice) and goes on
    resumed = make_best_checkpoint(best, history)
    resumed.set_model(_model())
    resumed.on_train_begin()
    for epoch, val_loss in [(2, 0.35), (3, 0.32)]:
        resumed.on_epoch_end(epoch, {"val_loss": val_loss})
    assert best.stat().st_mtime_ns == saved, "a worse epoch replaced the best model"
    resumed.on_epoch_end(4, {"val_loss": 0.2})
    assert best.stat().st_mtime_ns != saved

    # the epoch is logged (and the best model saved) before the backup says it is done
    names = [type(c).__name__ for c in _callbacks(tmp_path / "run", patience=3, epochs=10)]
    assert names.index("CSVLogger") < names.index("BestCheckpoint") < len(names) - 1
    assert names[-1] == "AtomicBackupAndRestore"


def test_resuming_cuts_history_back_to_the_epochs_the_backup_holds(tmp_path):
    backup, history = tmp_path / "backup", tmp_path / "history.csv"
    model = _model()
    saver = make_backup_callback(backup, history)
    saver.set_model(model)
    for epoch in range(2):
        saver.on_epoch_end(epoch)
    # epoch 2 was logged, then the run was killed before its backup
    history.write_text("epoch,loss,val_loss\n0,0.9,0.8\n1,0.7,0.6\n2,0.5,0.4\n")
    logger = open(history, "a")  # the CSV logger opens the file before the backup restores
    restore = make_backup_callback(backup, history)
    restore.set_model(_model())
    restore.on_train_begin()
    logger.write("2,0.45,0.35\n")  # the resumed run logs epoch 2 again
    logger.close()
    assert history.read_text() == "epoch,loss,val_loss\n0,0.9,0.8\n1,0.7,0.6\n2,0.45,0.35\n"
