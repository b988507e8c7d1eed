"""``medzoo train auto`` picks the model from the dataset: a U-Net when finding masks exist."""

import json

from medzoo import cli


def test_train_auto_picks_unet_when_masks_exist(phantom_ds, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main(["train", "auto", "--data", str(phantom_ds), "--out", str(run),
                     "--epochs", "1", "--batch-size", "8"]) == 0
    out = capsys.readouterr().out
    assert "train auto chose unet at 32 px" in out and "finding masks exist" in out
    assert json.loads((run / "config.json").read_text())["model"] == "unet"


def test_train_auto_without_a_dataset_is_one_clear_error(tmp_path, capsys):
    assert cli.main(["train", "auto", "--data", str(tmp_path / "none"),
                     "--out", str(tmp_path / "r")]) == 2
    assert "expected a dataset dir with dataset.json" in capsys.readouterr().err
