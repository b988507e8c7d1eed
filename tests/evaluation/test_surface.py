"""Metrics in mm: known answers on hand-made shapes at anisotropic spacing, and a brute-force
reference (all pairwise surface distances) on random blobs."""

import math

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial.distance import cdist

from medzoo.evaluation.surface import binary_metrics, summarize, surface_distances, volume_metrics

SPACING = (3.0, 1.0, 0.5)  # z, y, x mm: strongly anisotropic


def plate(z, shape=(12, 10, 16)):
    m = np.zeros(shape, bool)
    m[z] = True
    return m


def test_parallel_plates_have_the_distance_between_them():
    """Two one-voxel plates spanning the grid, 3 slices apart at 3 mm: every surface voxel is
    exactly 9 mm from the other plate."""
    m = binary_metrics(plate(2), plate(5), SPACING, tolerance_mm=8.9)
    assert m["dice"] == 0.0
    assert m["hd95"] == pytest.approx(9.0) and m["asd"] == pytest.approx(9.0)
    assert m["nsd"] == 0.0
    assert binary_metrics(plate(2), plate(5), SPACING, tolerance_mm=9.0)["nsd"] == 1.0
    voxel_ml = 3 * 1 * 0.5 / 1000
    assert m["volume_pred_ml"] == pytest.approx(160 * voxel_ml) and m["volume_diff_ml"] == 0.0


def test_boxes_shifted_along_x_known_dice_hausdorff_and_volumes():
    a = np.zeros((10, 20, 40), bool)
    a[2:7, 5:15, 10:30] = True  # 5 × 10 × 20 voxels
    b = np.roll(a, 4, axis=2)  # 4 voxels × 0.5 mm = 2 mm along x
    m = binary_metrics(b, a, SPACING)
    assert m["dice"] == pytest.approx(2 * 5 * 10 * 16 / (2 * 1000))
    assert m["volume_ref_ml"] == pytest.approx(1000 * 1.5 / 1000)
    assert m["volume_diff_ml"] == 0.0
    d_ab, d_ba = surface_distances(b, a, SPACING)
    assert d_ab.max() == pytest.approx(2.0) and d_ba.max() == pytest.approx(2.0)  # the shift
    assert 0.0 < m["hd95"] <= 2.0 and 0.0 < m["asd"] < 2.0
    # grown by one slice at the top: 3 mm of z, reached only by the new top face
    c = a.copy()
    c[7] = a[6]
    m = binary_metrics(c, a, SPACING)
    assert surface_distances(c, a, SPACING)[0].max() == pytest.approx(3.0)
    assert m["volume_diff_ml"] == pytest.approx(10 * 20 * 1.5 / 1000)


def test_sphere_radius_difference_in_mm():
    """Concentric spheres of radii 10 and 13 mm on a 1 × 0.5 × 0.5 mm grid: HD95 and ASD near
    the 3 mm gap (voxelisation moves it by under a voxel)."""
    spacing = (1.0, 0.5, 0.5)
    z, y, x = np.meshgrid(*(np.arange(n) * s for n, s in zip((40, 70, 70), spacing)), indexing="ij")
    r = np.sqrt((z - 20) ** 2 + (y - 17.5) ** 2 + (x - 17.5) ** 2)
    m = binary_metrics(r <= 10, r <= 13, spacing)
    assert m["hd95"] == pytest.approx(3.0, abs=0.6) and m["asd"] == pytest.approx(3.0, abs=0.6)
    assert m["dice"] == pytest.approx(2 * 10 ** 3 / (10 ** 3 + 13 ** 3), abs=0.02)
    assert m["volume_ref_ml"] == pytest.approx(4 / 3 * math.pi * 13 ** 3 / 1000, rel=0.02)


def brute_force(a, b, spacing, tolerance):
    """All pairwise distances between surface voxel centres, in mm."""
    st = ndimage.generate_binary_structure(3, 1)
    pts = []
    for m in (a, b):
        surface = m & ~ndimage.binary_erosion(m, structure=st, border_value=0)
        pts.append(np.argwhere(surface) * np.asarray(spacing))
    d = cdist(pts[0], pts[1])
    d_ab, d_ba = d.min(1), d.min(0)
    allv = np.r_[d_ab, d_ba]
    return {"hd95": max(np.percentile(d_ab, 95), np.percentile(d_ba, 95)), "asd": allv.mean(),
            "nsd": np.mean(allv <= tolerance)}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_brute_force_pairwise_distances_on_random_blobs(seed):
    rng = np.random.default_rng(seed)
    shape = (14, 24, 24)
    a = ndimage.gaussian_filter(rng.normal(size=shape), 2) > 0.05
    b = ndimage.gaussian_filter(rng.normal(size=shape), 2) > 0.05
    got = binary_metrics(a, b, SPACING, tolerance_mm=2.0)
    ref = brute_force(a, b, SPACING, 2.0)
    for key in ("hd95", "asd", "nsd"):
        assert got[key] == pytest.approx(ref[key], rel=1e-9, abs=1e-9), key


def test_empty_mask_conventions():
    empty, full = np.zeros((4, 4, 4), bool), np.zeros((4, 4, 4), bool)
    full[1:3, 1:3, 1:3] = True
    both = binary_metrics(empty, empty, SPACING)
    assert both["dice"] == 1.0 and both["nsd"] == 1.0 and both["volume_diff_ml"] == 0.0
    assert math.isnan(both["hd95"]) and math.isnan(both["asd"])
    missed = binary_metrics(empty, full, SPACING)
    assert missed["dice"] == 0.0 and missed["nsd"] == 0.0 and math.isnan(missed["hd95"])
    assert missed["volume_diff_ml"] == pytest.approx(8 * 1.5 / 1000)


def test_volume_metrics_per_class_and_summary():
    ref = np.zeros((6, 8, 8), np.uint8)
    ref[1:4, 1:4, 1:4] = 1
    ref[4:6, 5:8, 5:8] = 2
    pred = ref.copy()
    pred[4:6, 5:8, 5:8] = 0  # class 2 missed entirely
    classes = ["background", "lung", "lesion", "heart"]  # heart absent in both
    per = volume_metrics(pred, ref, (2.0, 1.0, 1.0), classes)
    assert list(per) == ["lung", "lesion", "heart"]
    assert per["lung"]["dice"] == 1.0 and per["lung"]["hd95"] == 0.0
    assert per["lesion"]["dice"] == 0.0 and per["heart"]["dice"] == 1.0
    s = summarize([per, per])
    assert s["per_class"]["lesion"]["n_undefined"]["hd95"] == 2
    assert s["mean"]["dice"] == pytest.approx((1 + 0 + 1) / 3)
    assert s["mean"]["hd95"] == 0.0  # only lung is defined


def test_bad_input_is_refused_with_what_was_received():
    with pytest.raises(ValueError, match="Received: spacing=\\(1.0, 0.0, 1.0\\)"):
        binary_metrics(np.ones((2, 2, 2)), np.ones((2, 2, 2)), (1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="label value 3"):
        volume_metrics(np.full((2, 2, 2), 3), np.zeros((2, 2, 2)), (1, 1, 1), ["background", "a"])
