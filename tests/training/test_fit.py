import json

import pytest

from medzoo import fsio
from medzoo.errors import InputError
from medzoo.training import fit


def test_run_dir_holds_what_design_promises(cnn_run):
    for name in ("config.json", "model.keras", "history.csv", "curves.png", "checkpoints"):
        assert (cnn_run / name).exists(), name
    assert (cnn_run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    config = json.loads((cnn_run / "config.json").read_text())
    assert config["model"] == "cnn" and config["task"] == "classification"
    assert config["classes"] == ["normal", "lesion"]
    assert (config["test_fold"], config["val_fold"], config["folds"]) == (0, 1, 3)
    history = fsio.read_csv(cnn_run / "history.csv")
    assert len(history) == config["epochs_run"] == 3
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(history[0])


def test_train_validation_and_test_parts_share_no_patient(phantom_ds):
    from medzoo.datasets import manifest, splits

    fold_of = splits.fold_assignment(phantom_ds, 3, 0)
    parts = fit.split_record_ids(fold_of, test_fold=2, folds=3)
    patient_of = {row["record_id"]: row["patient"] for row in manifest.read_index(phantom_ds)}
    patients = {k: {patient_of[r] for r in ids} for k, ids in parts.items()}
    assert not patients["train"] & patients["test"]
    assert not patients["train"] & patients["val"]
    assert not patients["val"] & patients["test"]
    assert sum(len(v) for v in parts.values()) == len(patient_of)
    assert {fold_of[r] for r in parts["test"]} == {2}
    assert {fold_of[r] for r in parts["val"]} == {0}


def test_a_finished_run_is_never_trained_over(cnn_run, phantom_ds):
    before = (cnn_run / "model.keras").read_bytes()
    with pytest.raises(InputError, match="finished run"):
        fit.train("cnn", phantom_ds, cnn_run, epochs=3, batch_size=8, verbose=0)
    assert (cnn_run / "model.keras").read_bytes() == before


def test_segmentation_needs_masks_and_bad_fold_is_refused(phantom_ds, tmp_path):
    with pytest.raises(InputError, match="--test-fold"):
        fit.train("cnn", phantom_ds, tmp_path / "r", test_fold=7, verbose=0)
    with pytest.raises(InputError, match="Unknown model"):
        fit.train("no-such", phantom_ds, tmp_path / "r2", verbose=0)


def test_fine_tuning_starts_from_a_lower_loss_than_scratch(cnn_run, phantom_ds, tmp_path):
    scratch = fit.train("cnn", phantom_ds, tmp_path / "scratch", epochs=1, batch_size=8,
                        seed=0, verbose=0)
    tuned = fit.train("cnn", phantom_ds, tmp_path / "tuned", epochs=1, batch_size=8, seed=0,
                      init_from=cnn_run, verbose=0)
    assert "probabilities" in tuned["init_layers"] and "fc" in tuned["init_layers"]
    assert tuned["history"]["loss"] < scratch["history"]["loss"]


def test_freeze_encoder_keeps_encoder_weights_fixed(cnn_run, phantom_ds, tmp_path):
    import numpy as np

    from medzoo.zoo import saving

    source = saving.load_model(cnn_run / "model.keras")
    config = fit.train("cnn", phantom_ds, tmp_path / "frozen", epochs=1, batch_size=8, seed=0,
                       init_from=cnn_run, freeze=True, verbose=0)
    assert [n for n in config["frozen_layers"] if "conv" in n] == [
        "stage0_conv0", "stage1_conv0", "stage2_conv0"]
    tuned = saving.load_model(tmp_path / "frozen" / "model.keras")
    for name in config["frozen_layers"]:
        for a, b in zip(source.get_layer(name).get_weights(), tuned.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)
    changed = [not np.array_equal(a, b) for a, b in
               zip(source.get_layer("fc").get_weights(), tuned.get_layer("fc").get_weights())]
    assert any(changed)
