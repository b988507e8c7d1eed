"""report.html renders in a real browser: headless Chromium screenshots it and the page is not blank.

Skipped when no Chromium is installed (``apt-get install chromium``); CI installs it and sets
MEDZOO_REQUIRE_CHROMIUM=1, under which a missing browser fails these tests instead.
"""

import json
import os
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from medzoo.evaluation import charts, crossval
from medzoo.evaluation.report import write_report

from .test_crossval import _fake_cv

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)

_MISSING = "no Chromium on PATH (apt-get install -y chromium) to render report.html headless"
# CI sets MEDZOO_REQUIRE_CHROMIUM=1: there a missing browser fails the render tests, never skips them
pytestmark = pytest.mark.skipif(CHROMIUM is None and os.environ.get("MEDZOO_REQUIRE_CHROMIUM") != "1",
                                reason=_MISSING)


@pytest.fixture(autouse=True)
def _require_chromium():
    if CHROMIUM is None:
        pytest.fail(f"MEDZOO_REQUIRE_CHROMIUM=1 but {_MISSING}", pytrace=False)


def _screenshot(html_path, png_path, width=1200, height=2000):
    env = {**os.environ, "HOME": str(png_path.parent)}  # chromium writes its profile under HOME
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--user-data-dir={png_path.parent / 'profile'}", f"--screenshot={png_path}",
         f"--window-size={width},{height}", html_path.resolve().as_uri()],
        capture_output=True, text=True, timeout=120, env=env)
    assert png_path.is_file(), f"chromium wrote no screenshot (exit {proc.returncode}): {proc.stderr[-800:]}"
    with Image.open(png_path) as im:
        return np.asarray(im.convert("L"), dtype=np.float64)


def test_cv_report_renders_in_headless_chromium(tmp_path):
    accs = {"cnn": [0.8, 0.85, 0.75], "unet": [0.7, 0.72, 0.69]}
    out, rows = _fake_cv(tmp_path, list(accs), accs)
    st = crossval.cv_statistics(list(accs), rows, out)
    per_model = {m: {"accuracy": v, "sensitivity": v, "specificity": v} for m, v in accs.items()}
    crossval._write_charts(out, list(accs), rows, per_model, st, seed=0)
    (out / "stats.json").write_text(json.dumps(crossval._json_ready(st)))
    report = write_report(out)

    pixels = _screenshot(report, tmp_path / "shot.png")
    assert pixels.shape == (2000, 1200)
    assert (tmp_path / "shot.png").stat().st_size > 50_000  # text, tables and charts, not an empty page
    assert pixels.std() > 20  # not blank: dark text and chart ink on white
    dark_rows = np.mean(pixels < 128, axis=1) > 0.002
    assert dark_rows.mean() > 0.3  # content down the page, not one line at the top


def test_eval_report_renders_with_charts(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 80)
    s = np.clip(0.35 * y + rng.random(80) * 0.65, 0, 1)
    out = tmp_path / "eval"
    out.mkdir()
    g = np.arange(80) // 2
    charts.plot_roc({"cnn": (y, s, g)}, out / "roc.png", n_boot=100)
    charts.plot_pr({"cnn": (y, s, g)}, out / "pr.png", n_boot=100)
    charts.plot_calibration(y, s, out / "calibration.png")
    (out / "metrics.json").write_text('{"task": "classification", "model": "cnn", "split": "test", "fold": 0, '
                                      '"n": 80, "n_patients": 40, "threshold": 0.5, '
                                      '"metrics": {"accuracy": 0.8, "auc": 0.9}, "ci95": {"accuracy": [0.7, 0.9]}}')
    pixels = _screenshot(write_report(out), tmp_path / "shot.png")
    assert pixels.std() > 20
