"""``medzoo train auto`` picks the model from the dataset: a U-Net when finding masks exist."""

import json

from medzoo import cli


def test_train_auto_picks_unet_when_masks_exist(phantom_ds, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main(["train", "auto", "--data", str(phantom_ds), "--out", str(run),
                     "--epochs", "1", "--batch-size", "8"]) == 0
    out = capsys.readouterr().out
    assert "train auto chose unet at 32 px" in out and "finding masks exist" in out
    config = json.loads((run / "config.json").read_text())
    # a 2D segmenter's default learning rate (classifiers keep 1e-3; docs/difficulty.md)
    assert config["model"] == "unet" and config["learning_rate"] == 3e-3


def test_train_auto_without_a_dataset_is_one_clear_error(tmp_path, capsys):
    assert cli.main(["train", "auto", "--data", str(tmp_path / "none"),
                     "--out", str(tmp_path / "r")]) == 2
    assert "expected a dataset dir with dataset.json" in capsys.readouterr().err


def test_default_schedule_is_warmup_then_cosine(cnn_run, phantom_ds, tmp_path):
    from medzoo.errors import InputError
    from medzoo.training.fit import lr_schedule, train

    config = json.loads((cnn_run / "config.json").read_text())
    assert config["schedule"] == "cosine"
    info = config["lr_schedule"]
    assert info["kind"] == "warmup_cosine" and info["warmup_steps"] >= 1
    schedule, _ = lr_schedule(1e-3, epochs=10, steps_per_epoch=5)
    rates = [float(schedule(step)) for step in (0, 5, 25, 50)]
    assert abs(rates[0] - 1e-4) < 1e-9 and abs(rates[1] - 1e-3) < 1e-9  # warm-up: lr/10 → lr
    assert rates[1] > rates[2] > rates[3] and abs(rates[3] - 5e-5) < 1e-9  # cosine to 5 %
    try:
        train("cnn", phantom_ds, tmp_path / "bad", schedule="step", verbose=0)
    except InputError as exc:
        assert "--schedule must be cosine or constant. Received: 'step'" in str(exc)
    else:
        raise AssertionError("an unknown schedule was accepted")
    assert not (tmp_path / "bad").exists()
