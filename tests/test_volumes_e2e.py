"""Issue 16 "done when": the 3D chain from the command line, as a user runs it.

synth --volumes → ingest --spacing auto → train unet (3D patches) → export → evaluate →
predict (DICOM SEG), each a `python -m medzoo` subprocess, at a small size.
"""
import csv
import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import highdicom as hd
import pydicom
import pytest


def _medzoo(*args, cwd):
    result = subprocess.run([sys.executable, "-m", "medzoo", *map(str, args)], cwd=cwd,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"medzoo {' '.join(map(str, args))}:\n{result.stderr[-3000:]}"
    return result


def _source_series(folder):
    """SeriesInstanceUID → set of SOPInstanceUIDs of the synthesised DICOM slices."""
    series = defaultdict(set)
    for path in Path(folder).rglob("*.dcm"):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        series[ds.SeriesInstanceUID].add(ds.SOPInstanceUID)
    return series


@pytest.mark.slow
def test_volumes_cli_synth_to_seg(tmp_path):
    _medzoo("data", "synth", "ph", "--volumes", "--patients", 5, "--size", 48, "--slices", 12,
            "--seed", 1, cwd=tmp_path)
    _medzoo("data", "ingest", "ph", "--labels", "ph/labels.csv", "--out", "ds",
            "--spacing", "auto", "--patch-size", "8,32,32", "--folds", 3, cwd=tmp_path)
    info = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    assert info["kind"] == "volume" and info["spacing_mode"] == "native"
    label_classes = info["label_classes"]
    assert label_classes == ["background", "lung", "heart", "lesion"]
    assert json.loads((tmp_path / "ds" / "plan.json").read_text())["patch_size"] == [8, 32, 32]

    _medzoo("train", "unet", "--data", "ds", "--out", "run", "--epochs", 3,
            "--learning-rate", "3e-3", "--seed", 0, cwd=tmp_path)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (tmp_path / "run" / "model.keras").is_file()
    assert len(list(csv.DictReader(open(tmp_path / "run" / "history.csv")))) == 3
    assert json.dumps(config).count("lesion") >= 1  # class names carried into the config

    _medzoo("export", "run", "--out", "models", cwd=tmp_path)
    model = tmp_path / "models" / "unet" / "1"
    assert (model / "model.onnx").is_file() and (model / "saved_model.pb").is_file()
    card = json.loads((model / "model_card.json").read_text())
    assert card["volume"]["plan"]["patch_size"] == [8, 32, 32]

    _medzoo("evaluate", model, "--data", "ds", "--out", "eval", cwd=tmp_path)
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["volume"] is True and metrics["label_classes"] == label_classes
    assert metrics["n"] >= 1
    for name in label_classes[1:]:
        dice = metrics["per_class"][name]["dice"]
        assert 0.0 <= dice <= 1.0, (name, dice)
        assert metrics["metrics"][f"dice_{name}"] == pytest.approx(dice)
    foreground = [metrics["per_class"][name]["dice"] for name in label_classes[1:]]
    assert metrics["metrics"]["dice"] == pytest.approx(sum(foreground) / len(foreground))

    _medzoo("predict", model, "ph", "--out", "pred", cwd=tmp_path)
    sources = _source_series(tmp_path / "ph")
    segs = sorted((tmp_path / "pred" / "seg").glob("*.dcm"))
    assert len(segs) == len(sources) == 5
    seen = set()
    for path in segs:
        seg = hd.seg.segread(path)
        assert seg.SegmentationType == "BINARY"
        assert [s.SegmentLabel for s in seg.SegmentSequence] == label_classes[1:]
        assert seg.number_of_segments == len(label_classes) - 1
        referenced = {sop for _, _, sop in seg.get_source_image_uids()}
        series_uid = seg.ReferencedSeriesSequence[0].SeriesInstanceUID
        assert referenced == sources[series_uid], path.name  # every source slice referenced
        assert seg.NumberOfFrames == len(sources[series_uid]) * seg.number_of_segments
        assert (seg.Rows, seg.Columns) == (48, 48)
        seen.add(series_uid)
    assert seen == set(sources)

    rows = list(csv.DictReader(open(tmp_path / "pred" / "predictions.csv")))
    lungs = [row for row in rows if row["class"] == "lung"]
    assert len(lungs) == 5
    assert all(float(row["volume_ml"]) > 0 for row in lungs)
    assert {row["class"] for row in rows} == set(label_classes[1:])
    rejected = list(csv.DictReader(open(tmp_path / "pred" / "rejected.csv")))
    assert rejected == []
