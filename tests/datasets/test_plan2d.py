"""``ingest --size auto``: the size comes from the data (native grid, smallest findings, budget)."""

import json
import os
import subprocess
import sys

from medzoo.datasets import manifest, plan2d
from medzoo.datasets.synth import write_synthetic

_EXACT = {"distractors": 0, "anatomy": 0.0, "scanner": 0.0, "blur_mm": 0.0}


def _plan(tmp_path, name, radius_mm, size=192, **kw):
    out = tmp_path / name
    write_synthetic(out, patients=4, size=size, slices=1, seed=0,
                    knobs={"lesion_radius_mm": radius_mm, **_EXACT}, **kw)
    return plan2d.plan_size(manifest.read_labels(out / "labels.csv"))


def test_small_findings_get_a_larger_size_than_large_ones(tmp_path):
    small = _plan(tmp_path, "small", (4.0, 5.0))
    large = _plan(tmp_path, "large", (25.0, 30.0))
    assert small["native_size"] == large["native_size"] == 192
    assert small["pixel_spacing_mm"] == large["pixel_spacing_mm"] == round(350 / 192, 6)
    # ~8-10 mm findings at 1.82 mm/px are ~5 px: 6 px need more than native → native
    assert small["image_size"] == 192 and "capped at the native size" in small["reason"]
    # ~55 mm findings need only ~36 px → the 64 px floor
    assert large["image_size"] == 64 and "raised to the floor 64 px" in large["reason"]
    assert 45 < large["smallest_finding_mm"] < 62
    medium = _plan(tmp_path, "medium", (9.0, 10.0))
    assert small["image_size"] >= medium["image_size"] > large["image_size"]


def test_budget_caps_the_size(tmp_path):
    out = tmp_path / "d"
    write_synthetic(out, patients=4, size=192, slices=1, seed=0,
                    knobs={"lesion_radius_mm": (4.0, 5.0), **_EXACT})
    plan = plan2d.plan_size(manifest.read_labels(out / "labels.csv"), budget_mpx=0.1)
    # 0.1 Mpx over 4 records → sqrt(25000) = 158 → 144 px
    assert plan["image_size"] == plan["budget_size"] == 144
    assert "capped by the budget" in plan["reason"]


def test_cli_ingest_defaults_to_auto_and_stores_the_plan(tmp_path):
    write_synthetic(tmp_path / "dicom", patients=4, size=96, slices=1, seed=0,
                    knobs={"lesion_radius_mm": (6.0, 7.0), **_EXACT})
    done = subprocess.run(
        [sys.executable, "-m", "medzoo", "data", "ingest", str(tmp_path / "dicom"), "--labels",
         str(tmp_path / "dicom" / "labels.csv"), "--out", str(tmp_path / "ds"), "--folds", "2",
         "--key-file", str(tmp_path / "k.key")],
        capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr
    info = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    assert info["plan"]["kind"] == "2d"
    assert info["image_size"] == [info["plan"]["image_size"]] * 2 == [96, 96]
    assert f"--size auto chose 96 px: size 96: smallest findings" in done.stdout
