"""3D multi-class patch training on a native-volume dataset (real Keras, tiny sizes)."""

import json

import numpy as np
import pytest

from medzoo.errors import InputError
from volume_data import LABEL_CLASSES


def test_unet_trains_on_patches_with_a_softmax_over_the_label_classes(volume_run):
    from medzoo.zoo import saving

    config = json.loads((volume_run / "config.json").read_text())
    assert config["volume"] is True and config["label_classes"] == LABEL_CLASSES
    assert config["input_shape"] == [16, 32, 32, 1] and config["loss"] == "dice_ce"
    assert config["model_options"] == {"base_width": 4, "label_classes": 3}
    assert config["batch_size"] == 2  # capped by the plan's batch size
    assert config["plan"]["patch_size"] == [16, 32, 32]
    assert config["epochs_run"] == 2 and np.isfinite(config["best_val_loss"])
    assert 0.0 <= config["history"]["val_dice"] <= 1.0
    net = saving.load_model(volume_run / "model.keras")
    probs = np.asarray(net(np.zeros((1, 16, 32, 32, 1), np.float32)))
    assert probs.shape == (1, 16, 32, 32, 3)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)


@pytest.mark.parametrize("model", ["attention_unet", "unetr_pp"])
def test_3d_segmenters_build_a_multiclass_head(model):
    from medzoo.zoo import registry

    net = registry.build(model, (16, 32, 32, 1), 3, label_classes=4)
    assert net.output_shape == (None, 16, 32, 32, 4)
    probs = np.asarray(net(np.random.default_rng(0).normal(size=(1, 16, 32, 32, 1)).astype("f4")))
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)


def test_dice_ce_loss_values():
    from medzoo.zoo.losses import DiceCELoss, ForegroundDice

    y = np.zeros((1, 2, 2, 2, 3), np.float32)
    y[..., 0] = 1
    y[0, 0, 0, 0] = [0, 1, 0]
    perfect = y.copy()
    loss = float(DiceCELoss()(y, perfect))
    # class 1 perfect (Dice 1); class 2 absent from both (smoothed Dice 1); CE ≈ 0
    assert loss == pytest.approx(0.0, abs=1e-4)
    wrong = np.zeros_like(y)
    wrong[..., 0] = 1
    assert float(DiceCELoss()(y, np.clip(wrong, 1e-7, 1))) > 0.5
    metric = ForegroundDice()
    metric.update_state(y, wrong)
    assert float(metric.result()) == pytest.approx(0.5)  # class 1 missed (0), class 2 absent (1)


def test_batch_dice_does_not_punish_a_lesion_guess_in_a_patch_without_one():
    """Two patches: the first holds a 2-voxel lesion, predicted exactly; the second none, with
    a 0.5 lesion guess on one voxel. Per patch, the second's lesion Dice is smooth / (0.5 +
    smooth) ≈ 0, a loss of ~0.5 for one half-voxel; over the batch the lesion Dice is
    2·2 / (2 + 2.5) = 0.889."""
    from medzoo.zoo.losses import DiceCELoss

    y = np.zeros((2, 1, 2, 2, 2), np.float32)
    y[..., 0] = 1
    y[0, 0, 0, :] = [0, 1]
    pred = y.copy()
    pred[1, 0, 1, 1] = [0.5, 0.5]
    ce = float(np.mean(-np.log(np.sum(y * np.clip(pred, 1e-7, 1), -1))))
    per_patch = float(DiceCELoss()(y, pred))
    batch = float(DiceCELoss(batch_dice=True)(y, pred))
    assert per_patch - ce == pytest.approx(0.5, abs=1e-3)  # (0 + 1) / 2 patches
    assert batch - ce == pytest.approx(1 - 4 / 4.5, abs=1e-3)
    assert DiceCELoss.from_config(DiceCELoss(batch_dice=True).get_config()).batch_dice


def test_models_that_cannot_train_on_patches_are_refused(volume_ds, tmp_path):
    from medzoo.training.fit import train

    with pytest.raises(InputError, match="expected one of unet, attention_unet, unetr_pp. "
                                         "Received: 'cnn'"):
        train("cnn", volume_ds, tmp_path / "run", epochs=1, verbose=0)
    with pytest.raises(InputError, match="do not apply to patch training"):
        train("unet", volume_ds, tmp_path / "run2", epochs=1, verbose=0, loss="focal")


def test_a_label_value_outside_the_classes_is_refused_before_the_run_dir(tmp_path):
    import json as _json

    from medzoo.training.fit import train
    from volume_data import write_volume_dataset

    ds = write_volume_dataset(tmp_path / "ds", patients=3, folds=3)
    for name in ("dataset.json", "plan.json"):  # the label maps hold 0..2; declare 2 classes
        doc = _json.loads((ds / name).read_text())
        if "plan" in doc:
            doc["plan"]["label_classes"] = ["background", "organ"]
        doc["label_classes"] = ["background", "organ"]
        (ds / name).write_text(_json.dumps(doc))
    with pytest.raises(InputError, match="Label value 2 is outside the 2 classes"):
        train("unet", ds, tmp_path / "run", epochs=1, verbose=0)
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_cli_train_on_a_volume_dataset(volume_ds, tmp_path):
    import subprocess
    import sys

    run = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "medzoo", "train", "attention_unet", "--data",
                           str(volume_ds), "--out", str(run), "--epochs", "1"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "trained attention_unet for 1 epochs" in done.stdout
    config = json.loads((run / "config.json").read_text())
    assert config["volume"] is True and config["model_options"]["label_classes"] == 3
