"""Several models on several datasets in one call: one table, one folder per pair, the CLI."""

import csv
import json

import pytest

from medzoo import cli
from medzoo.errors import InputError
from medzoo.evaluation.evaluate import evaluate, evaluate_many, model_label

from .conftest import write_dataset, write_onnx


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_two_models_two_datasets_one_table(tmp_path):
    ds1, _, _ = write_dataset(tmp_path / "site1", patients=12)
    ds2, _, _ = write_dataset(tmp_path / "site2", patients=12, rng_seed=5)
    big, _, _ = write_dataset(tmp_path / "big", patients=6, size=32)
    clf = write_onnx(tmp_path / "models" / "tiny" / "3" / "model.onnx").parent
    seg = write_onnx(tmp_path / "seg.onnx", task="segmentation")
    out = tmp_path / "eval"
    many = evaluate_many([clf, seg], [ds1, ds2, big], out, n_boot=50, threads=1)

    rows = _rows(out / "table.csv")
    assert [(r["model"], r["dataset"]) for r in rows] == [
        (m, d) for m in ("tiny-3", "seg") for d in ("site1", "site2", "big")]
    assert many["evaluated"] == 4 and many["failed"] == 2
    for row, result in zip(rows, many["results"]):
        if row["dataset"] == "big":  # 32 px images for 16 px models: recorded, not fatal
            assert row["status"] == "failed" and "images of [16, 16]" in row["reason"]
            assert str(tmp_path) not in row["reason"]  # no paths in the table
            continue
        folder = out / row["folder"]
        assert row["folder"] == f"{row['model']}/{row['dataset']}"
        on_disk = json.loads((folder / "metrics.json").read_text())
        assert on_disk == result
        # the table holds the same numbers as each pair's own evaluation
        assert float(row["accuracy"]) == pytest.approx(on_disk["metrics"]["accuracy"], abs=1e-6)
        assert float(row["auc_ci_low"]) == pytest.approx(on_disk["ci95"]["auc"][0], abs=1e-6)
        assert int(row["n"]) == on_disk["n"] and row["status"] == "ok"
        assert (folder / "roc.png").exists() and (folder / "pr.png").exists()
    alone = evaluate(clf, ds2, tmp_path / "alone", n_boot=50)
    assert alone["metrics"] == many["results"][1]["metrics"]
    assert "dice" in rows[3] and rows[3]["dice"] != ""


def test_single_pair_writes_into_out_and_raises(tmp_path):
    ds, _, _ = write_dataset(tmp_path / "ds", patients=6)
    model = write_onnx(tmp_path / "m.onnx")
    many = evaluate_many([model], [ds], tmp_path / "eval", n_boot=0)
    assert (tmp_path / "eval" / "metrics.json").exists()
    assert _rows(tmp_path / "eval" / "table.csv")[0]["folder"] == "."
    assert many["results"][0]["n"] == 4  # fold 0: 2 of the 6 patients, 2 slices each
    with pytest.raises(InputError, match="no such file"):
        evaluate_many([tmp_path / "nope.onnx"], [ds], tmp_path / "e2")
    with pytest.raises(InputError, match="none of the 2 model/dataset pairs"):
        evaluate_many([tmp_path / "nope.onnx", tmp_path / "nope2.onnx"], [ds], tmp_path / "e3")


def test_model_labels():
    assert model_label("models/cnn/2") == "cnn-2"
    assert model_label("models/cnn/2/model.onnx") == "cnn-2"
    assert model_label("x/best.onnx") == "best"


def test_cli_several_models_and_datasets(tmp_path, capsys):
    ds1, _, _ = write_dataset(tmp_path / "a", patients=6)
    ds2, _, _ = write_dataset(tmp_path / "b", patients=6, rng_seed=2)
    m1 = write_onnx(tmp_path / "m1.onnx")
    m2 = write_onnx(tmp_path / "m2.onnx", metadata={"image_size": [16, 16], "classes": ["x", "y"]})
    args = ["evaluate", str(m1), str(m2), "--data", str(ds1), "--data", str(ds2), "--out", str(tmp_path / "e"),
            "--threads", "1", "--bootstrap", "20"]
    assert cli.main(args + ["--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["status"] for r in rows] == ["ok", "ok", "failed", "failed"]  # m2's classes differ
    assert cli.main(args) == 0
    printed = capsys.readouterr().out
    assert "evaluated 2 of 4 model/dataset pairs, failed 2" in printed and "m1 on a: n=4 accuracy=" in printed
    assert cli.main(args + ["--strict"]) == 1
    assert cli.main(["evaluate", str(m1), "--data", str(ds1), "--out", str(tmp_path / "x"), "--threads", "0"]) == 2
    assert "--threads must be a positive integer" in capsys.readouterr().err
    assert cli.main(["report", str(tmp_path / "e")]) == 0
    assert "m1" in (tmp_path / "e" / "report.html").read_text()
