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
