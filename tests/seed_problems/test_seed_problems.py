"""The seed's open problems: several findings, imbalance, quantised exports (tiny, real runs)."""

import csv
import json

import numpy as np
import pytest

SIZE = 32


def _chain(tmp, *, epochs=3, train_kw=None, export_kw=None, **synth_kw):
    """synth → ingest → train → export; returns (ds, run, version dir, config)."""
    from medzoo.datasets.ingest import ingest
    from medzoo.datasets.synth import write_synthetic
    from medzoo.evaluation.evaluate import evaluate
    from medzoo.export.exporter import export_run
    from medzoo.training.fit import train

    write_synthetic(tmp / "dicom", size=SIZE, seed=1, **synth_kw)
    ingest(tmp / "dicom", tmp / "dicom" / "labels.csv", tmp / "ds", size=SIZE, folds=3, seed=0,
           key_file=tmp / "k.key")
    config = train("cnn", tmp / "ds", tmp / "run", epochs=epochs, batch_size=8, seed=0,
                   learning_rate=3e-3, verbose=0, **(train_kw or {}))
    version = export_run(tmp / "run", tmp / "models", evaluator=evaluate, **(export_kw or {}))
    return tmp / "ds", tmp / "run", version, config


def _predictions(eval_dir):
    with open(eval_dir / "predictions.csv") as fh:
        return list(csv.DictReader(fh))


def test_three_classes_end_to_end_match_scikit_learn(tmp_path):
    from sklearn.metrics import recall_score, roc_auc_score

    from medzoo.evaluation.evaluate import evaluate

    ds, _, version, config = _chain(tmp_path, patients=15, slices=2, classes=3)
    info = json.loads((ds / "dataset.json").read_text())
    assert info["classes"] == ["normal", "ground_glass", "nodule"]  # negative name first
    assert config["classes"] == info["classes"] and not config["multi_label"]
    card = json.loads((version / "model_card.json").read_text())
    assert card["model"]["classes"] == info["classes"]
    result = evaluate(version, ds, tmp_path / "eval", n_boot=0)
    rows = _predictions(tmp_path / "eval")
    y = np.array([int(r["label"]) for r in rows])
    probs = np.array([[float(r[f"score_{k}"]) for k in range(3)] for r in rows])
    assert probs.shape == (result["n"], 3) and np.allclose(probs.sum(1), 1.0, atol=1e-4)
    assert set(y) == {0, 1, 2}
    assert result["metrics"]["macro_auc"] == pytest.approx(
        roc_auc_score(y, probs, multi_class="ovr", average="macro"), abs=1e-4)
    sens = recall_score(y, probs.argmax(1), average=None, labels=[0, 1, 2])
    for k, row in enumerate(result["per_class"]):
        assert row["n"] == int((y == k).sum())
        assert row["auc"] == pytest.approx(roc_auc_score(y == k, probs[:, k]), abs=1e-4)
        assert row["sensitivity"] == pytest.approx(sens[k])
        assert row["specificity"] == pytest.approx(
            recall_score(y != k, probs.argmax(1) != k), abs=1e-9)


def test_multi_label_end_to_end_match_scikit_learn(tmp_path):
    from sklearn.metrics import recall_score, roc_auc_score

    from medzoo.evaluation.evaluate import evaluate

    ds, _, version, config = _chain(tmp_path, patients=16, slices=2, multi_label=True)
    info = json.loads((ds / "dataset.json").read_text())
    assert info["multi_label"] is True  # multi-hot labels in the records
    assert info["classes"] == ["normal", "ground_glass", "nodule"]
    assert config["multi_label"]
    from medzoo.zoo import saving

    head = saving.load_model(tmp_path / "run" / "model.keras").get_layer("probabilities")
    assert head.activation.__name__ == "sigmoid"
    result = evaluate(version, ds, tmp_path / "eval", n_boot=0)
    assert result["multi_label"]
    rows = _predictions(tmp_path / "eval")
    Y = np.array([[int(v) for v in r["labels"].split("|")] for r in rows])
    P = np.array([[float(r[f"score_{k}"]) for k in range(3)] for r in rows])
    assert (Y.sum(1) >= 1).all() and (Y[:, 1:].sum(1) == 2).any()  # both findings at once
    for k, row in enumerate(result["per_class"]):
        assert row["auc"] == pytest.approx(roc_auc_score(Y[:, k], P[:, k]), abs=1e-4)
        assert row["sensitivity"] == pytest.approx(recall_score(Y[:, k], P[:, k] >= 0.5))
        assert row["specificity"] == pytest.approx(recall_score(1 - Y[:, k], P[:, k] < 0.5))
    assert result["metrics"]["macro_auc"] == pytest.approx(
        roc_auc_score(Y, P, average="macro"), abs=1e-4)


def _balanced_accuracy(run, ds, threshold=0.5):
    """Balanced accuracy of a run's Keras model on every record of ``ds`` at ``threshold``."""
    from medzoo.datasets import manifest, records
    from medzoo.zoo import saving

    recs = list(records.read_records(ds, [r["record_id"] for r in manifest.read_index(ds)]))
    scores = np.asarray(saving.load_model(run / "model.keras")(
        np.stack([r["image"] for r in recs]), training=False))[:, 1]
    y = np.array([r["label"] for r in recs])
    called = scores >= threshold
    return 0.5 * (called[y == 1].mean() + (~called[y == 0]).mean())


def test_balance_raises_balanced_accuracy_and_threshold_reaches_the_card(tmp_path, capsys):
    from medzoo.datasets.ingest import ingest
    from medzoo.datasets.synth import write_synthetic
    from medzoo.evaluation.evaluate import evaluate
    from medzoo.export.exporter import export_run
    from medzoo.training.fit import train

    write_synthetic(tmp_path / "dicom", patients=40, size=SIZE, slices=2, seed=1,
                    positive_fraction=0.1)
    ds = tmp_path / "ds"
    ingest(tmp_path / "dicom", tmp_path / "dicom" / "labels.csv", ds, size=SIZE, folds=3, seed=0,
           key_file=tmp_path / "k.key")
    info = json.loads((ds / "dataset.json").read_text())
    assert info["counts"]["per_class"] == {"normal": 72, "lesion": 8}  # 1:9 by patient
    figures = {}
    for balance in (None, "sample"):  # same data, same seed
        run = tmp_path / f"run-{balance}"
        config = train("cnn", ds, run, epochs=10, batch_size=8, seed=0, learning_rate=3e-3,
                       schedule="constant",  # the recipe the README's balance figures used
                       verbose=0, balance=balance, threshold="youden" if balance else None)
        figures[balance] = _balanced_accuracy(run, ds)
    version = export_run(run, tmp_path / "models", evaluator=evaluate)
    result = evaluate(version, ds, tmp_path / "eval", split="all", n_boot=0)  # card's threshold
    card = json.loads((version / "model_card.json").read_text())
    chosen = config["threshold"]
    assert chosen["rule"] == "youden" and 0.0 <= chosen["value"] <= 1.0
    assert card["metrics"]["threshold"] == pytest.approx(chosen["value"])
    assert card["metrics"]["threshold_source"] == "validation (youden)"
    assert result["threshold"] == pytest.approx(chosen["value"])  # evaluate reads the card's
    with capsys.disabled():
        print(f"\nbalanced accuracy, 1:9 phantoms, all records, threshold 0.5: unbalanced "
              f"{figures[None]:.3f}, --balance sample {figures['sample']:.3f}; with the youden "
              f"threshold {chosen['value']:.3f} chosen on validation: "
              f"{result['metrics']['balanced_accuracy']:.3f}")
    assert figures["sample"] >= figures[None] + 0.2  # measured: 0.500 → 0.875
    # The threshold comes from a validation fold with two or three positive images: noisy
    # (measured 0.688 and 0.750 in two runs), still above the unbalanced run.
    assert result["metrics"]["balanced_accuracy"] > figures[None]


def test_class_weights_and_threshold_rules():
    from medzoo.errors import InputError
    from medzoo.training.fit import choose_threshold

    y = np.array([0, 0, 0, 0, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.6, 0.4, 0.9])
    assert choose_threshold("youden", y, s) == pytest.approx(0.4)
    assert choose_threshold("sens:1.0", y, s) == pytest.approx(0.4)
    assert choose_threshold("sens:0.5", y, s) == pytest.approx(0.9)
    assert (s[y == 0] < choose_threshold("spec:0.75", y, s)).mean() >= 0.75
    with pytest.raises(InputError, match="youden, sens:X or spec:X"):
        choose_threshold("sens:2", y, s)


def test_quantized_exports_and_refusal(well_trained_cnn, tmp_path):
    import onnxruntime as ort

    from medzoo.export.exporter import export_run
    from medzoo.export.quantize import QuantizationError

    cnn_run = well_trained_cnn / "run"
    version = export_run(cnn_run, tmp_path / "models", quantize=["int8", "fp16"], max_drop=0.01)
    quantized = json.loads((version / "parity.json").read_text())["quantized"]
    for mode in ("int8", "fp16"):
        entry = quantized[mode]
        path = version / f"model.{mode}.onnx"
        assert entry["file"] == path.name and path.is_file() and entry["passed"]
        assert entry["auc_drop"] <= 0.01 and 0.0 <= entry["max_abs_prob_difference"] < 0.05
        meta = ort.InferenceSession(str(path)).get_modelmeta().custom_metadata_map
        assert json.loads(meta["medzoo.quantized"]) == mode and "medzoo.classes" in meta
    assert quantized["int8"]["calibration_images"] > 0
    ops = {n.op_type for n in __import__("onnx").load(str(version / "model.int8.onnx")).graph.node}
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops  # QDQ format
    with pytest.raises(QuantizationError, match="refused"):
        export_run(cnn_run, tmp_path / "refused", quantize=["int8"], max_drop=-1.0)
    assert not any((tmp_path / "refused").rglob("*.onnx"))  # nothing visible, nothing half-made
