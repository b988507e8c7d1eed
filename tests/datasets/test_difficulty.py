"""Difficulty knobs do what they say, measured on the written DICOM (pydicom + modality LUT)."""

import csv

import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_modality_lut
from scipy.ndimage import binary_dilation, binary_erosion, gaussian_filter, label, minimum_filter

from medzoo.datasets import difficulty
from medzoo.datasets.synth import write_synthetic


def _slices(out):
    with open(out / "labels.csv") as handle:
        for row in csv.DictReader(handle):
            ds = pydicom.dcmread(out / row["path"])
            yield row, apply_modality_lut(ds.pixel_array, ds).astype(np.float64), \
                np.load(out / row["mask"])


def _lungs(hu):
    """Low-density regions not touching the image border (outside air does), off their edges."""
    regions, _ = label(gaussian_filter(hu, 2.0) < -600)
    border = np.unique(np.concatenate([regions[0], regions[-1], regions[:, 0], regions[:, -1]]))
    return binary_erosion((regions > 0) & ~np.isin(regions, border), iterations=2)


@pytest.mark.parametrize("contrast,noise", [(300.0, 50.0), (120.0, 25.0)])
def test_lesion_contrast_and_noise_in_hu_match_the_request(tmp_path, contrast, noise):
    knobs = {"lesion_contrast_hu": contrast, "noise_hu": noise, "lesion_radius_mm": (14.0, 16.0),
             "distractors": 0, "blur_mm": 0.0, "anatomy": 0.0, "scanner": 0.0}
    summary = write_synthetic(tmp_path, patients=4, size=96, slices=1, seed=2, knobs=knobs)
    assert summary["difficulty"]["lesion_contrast_hu"] == contrast
    measured_contrast, measured_noise = [], []
    for row, hu, mask in _slices(tmp_path):
        lung = _lungs(hu) & ~binary_dilation(mask > 0, iterations=3)
        measured_noise.append(hu[lung].std())
        if row["label"] == "lesion":
            core = binary_erosion(mask > 0, iterations=2)
            assert core.sum() > 10
            measured_contrast.append(hu[core].mean() - hu[lung].mean())
    assert len(measured_contrast) == 2
    assert np.allclose(measured_contrast, contrast, atol=0.06 * contrast + 5)
    assert np.allclose(measured_noise, noise, rtol=0.08)


def test_lesion_radius_and_distractors(tmp_path):
    knobs = {"lesion_radius_mm": (10.0, 10.0), "distractors": 5, "noise_hu": 0.0,
             "anatomy": 0.0, "scanner": 0.0, "blur_mm": 0.0, "lesion_contrast_hu": 300.0}
    write_synthetic(tmp_path, patients=2, size=140, slices=1, seed=0, knobs=knobs)
    (normal, hu_n, mask_n), (lesion, hu_l, mask_l) = list(_slices(tmp_path))
    spacing = difficulty.FOV_MM / 140
    # a 10 mm radius ellipse (aspect 0.85-1.15, slice through its middle) has area ~ pi r^2
    area_mm2 = mask_l.sum() * spacing**2
    assert 0.75 * np.pi * 100 < area_mm2 < 1.15 * np.pi * 100
    assert mask_n.sum() == 0
    # vessel-like dots: soft tissue (-800 + 840 = 40 HU) inside the lungs of the normal patient
    assert ((hu_n > 0) & (minimum_filter(hu_n, size=7) < -700)).sum() > 5


def test_label_noise_flips_labels_not_masks(tmp_path):
    summary = write_synthetic(tmp_path, patients=40, size=32, slices=1, seed=0,
                              knobs={"label_noise": 0.25})
    rows = list(_slices(tmp_path))
    wrong = sum((row["label"] == "lesion") != bool(mask.any()) for row, _, mask in rows)
    assert wrong == summary["labels_flipped"] and 4 <= wrong <= 18


def test_unknown_level_and_bad_knobs_say_what_was_expected():
    assert difficulty.resolve("easy") is None
    with pytest.raises(ValueError, match="Expected one of .*Received: difficulty='extreme'"):
        difficulty.resolve("extreme")
    with pytest.raises(ValueError, match="noise_hu` must be >= 0. Received: noise_hu=-1"):
        difficulty.resolve("hard", noise_hu=-1)
    with pytest.raises(ValueError, match="lesion_radius_mm` must be 0 < low <= high"):
        difficulty.resolve("medium", lesion_radius_mm=(5, 2))


def _fixed_rule(hu):
    """A fixed detector: pixels denser than -700 HU next to lung (lesions, dots, lung edges)."""
    smooth = gaussian_filter(hu, 1.0)
    return float(((smooth > -700) & (minimum_filter(smooth, size=9) < -600)).sum())


def test_hard_is_harder_than_easy_for_a_fixed_rule(tmp_path):
    from medzoo.roc import roc_auc

    auc = {}
    for level in ("easy", "hard"):
        write_synthetic(tmp_path / level, patients=24, size=64, slices=1, seed=11,
                        difficulty=level)
        y, s = zip(*((row["label"] == "lesion", _fixed_rule(hu))
                     for row, hu, _ in _slices(tmp_path / level)))
        auc[level] = roc_auc(np.array(y, int), np.array(s))
    assert auc["easy"] >= 0.95
    assert auc["hard"] <= auc["easy"] - 0.3
