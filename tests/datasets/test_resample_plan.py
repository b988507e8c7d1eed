"""Pure parts of native-spacing volumes: resampling between grids and the plan."""

import numpy as np
import pytest

from medzoo.datasets import plan as planning
from medzoo.datasets import resample


def _mm_grid(shape, spacing):
    return np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, spacing)], indexing="ij")


def test_resampled_grid_keeps_origin_and_exact_target_spacing():
    # a linear ramp in mm is reproduced exactly by linear and cubic interpolation, so any
    # misplaced voxel (half-voxel shifts, stretched extents) shows up as an error
    shape, spacing, target = (10, 20, 18), (3.0, 0.7, 0.8), (1.5, 1.0, 0.5)
    z, y, x = _mm_grid(shape, spacing)
    ramp = (0.5 * z + 2.0 * y - 1.0 * x).astype(np.float32)
    out = resample.resample_image(ramp, spacing, target, order=1)
    assert out.shape == resample.target_shape(shape, spacing, target) == (20, 14, 29)
    assert out.dtype == np.float32
    tz, ty, tx = _mm_grid(out.shape, target)
    inside = (tz <= z.max()) & (ty <= y.max()) & (tx <= x.max())  # beyond: the edge repeats
    expected = 0.5 * tz + 2.0 * ty - 1.0 * tx
    assert np.abs(out - expected)[inside].max() < 1e-3
    cubic = resample.resample_image(ramp, spacing, target)  # exact away from the borders
    core = ((tz >= 4 * 3.0) & (tz <= z.max() - 4 * 3.0) & (ty >= 4 * 0.7)
            & (ty <= y.max() - 4 * 0.7) & (tx >= 4 * 0.8) & (tx <= x.max() - 4 * 0.8))
    assert core.sum() > 100
    assert np.abs(cubic - expected)[core].max() < 1e-2


def test_round_trip_image_to_target_and_back_within_tolerance():
    shape, spacing, target = (12, 40, 40), (4.0, 0.8, 0.8), (2.0, 1.2, 1.2)
    z, y, x = _mm_grid(shape, spacing)
    blob = np.exp(-((z - 22) ** 2 / 200 + (y - 15) ** 2 / 60 + (x - 17) ** 2 / 80))
    image = (1000 * blob - 500).astype(np.float32)
    there = resample.resample_image(image, spacing, target)
    back = resample.resample_to_shape(there, target, shape, spacing)
    assert back.shape == shape
    assert np.abs(back - image).max() < 0.02 * 1000  # 2 % of the range
    assert np.abs(back - image).mean() < 2.0


def test_label_maps_stay_integer_and_keep_every_class():
    labels = np.zeros((8, 30, 30), np.uint8)
    labels[:, 5:25, 5:14] = 1
    labels[:, 5:25, 16:25] = 2
    labels[3, 10, 10] = 3  # one voxel: thinner than the coarser target voxels
    out = resample.resample_labels(labels, (2.0, 1.0, 1.0), (3.0, 2.5, 2.5), n_classes=4)
    assert out.dtype == np.uint8
    assert set(np.unique(out).tolist()) == {0, 1, 2, 3}
    finer = resample.resample_labels(labels, (2.0, 1.0, 1.0), (1.0, 0.5, 0.5))
    assert set(np.unique(finer).tolist()) == {0, 1, 2, 3}
    # label-wise: no voxel takes a value between two classes (nearest-or-better, not averaged)
    back = resample.labels_to_shape(finer, (1.0, 0.5, 0.5), labels.shape, (2.0, 1.0, 1.0), 4)
    assert np.mean(back == labels) > 0.99


def test_resample_refuses_bad_geometry_and_labels():
    with pytest.raises(ValueError, match="positive finite"):
        resample.resample_image(np.zeros((4, 4, 4)), (0.0, 1.0, 1.0), (1, 1, 1))
    with pytest.raises(ValueError, match="positive finite"):
        resample.resample_image(np.zeros((4, 4, 4)), (1.0, float("nan"), 1.0), (1, 1, 1))
    with pytest.raises(ValueError, match="integer class indices"):
        resample.resample_labels(np.zeros((4, 4, 4), np.float32), (1, 1, 1), (2, 2, 2))
    with pytest.raises(ValueError, match="n_classes"):
        resample.resample_labels(np.full((4, 4, 4), 5, np.uint8), (1, 1, 1), (2, 2, 2), 4)


def test_target_spacing_is_the_median_unless_anisotropic():
    target, aniso = planning.plan_target_spacing([[1.0, 0.8, 0.8], [2.0, 0.6, 0.6],
                                                  [1.5, 0.9, 0.9]])
    assert (target, aniso) == ([1.5, 0.8, 0.8], False)
    # coarse z (median 5 mm ≥ 3 × 0.75): z takes the 10th percentile of z spacings
    spacings = [[5.0, 0.7, 0.7], [5.0, 0.8, 0.8], [3.0, 0.75, 0.75], [5.0, 0.7, 0.7],
                [2.0, 0.8, 0.8]]
    target, aniso = planning.plan_target_spacing(spacings)
    assert aniso is True
    assert target[1:] == [0.75, 0.75]
    assert target[0] == pytest.approx(np.percentile([5, 5, 3, 5, 2], 10))  # 2.4 mm


def _fingerprint(modality="CT", shapes=((60, 256, 256),) * 5, spacing=(2.0, 0.8, 0.8)):
    rng = np.random.default_rng(0)
    sample = np.concatenate([rng.normal(-700, 200, 5000), rng.normal(40, 30, 5000)])
    return planning.make_fingerprint([spacing] * len(shapes), shapes, modality, [sample])


def test_plan_patch_fits_memory_and_is_a_multiple_of_the_pooling():
    fp = _fingerprint()
    roomy = planning.make_plan(fp, memory_gb=64)
    tight = planning.make_plan(fp, memory_gb=1)
    for plan in (roomy, tight):
        step = 2 ** plan["network"]["depth"]
        assert all(p % step == 0 and p <= m for p, m in zip(plan["patch_size"],
                                                            plan["median_shape"]))
        assert plan["batch_size"] >= 2
    assert plan["median_shape"] == [60, 256, 256]
    assert np.prod(tight["patch_size"]) < np.prod(roomy["patch_size"])
    widths = tight["network"]["widths"]
    assert planning.estimate_memory_bytes(tight["patch_size"], 2, widths) \
        <= planning.MEMORY_SHARE * 1 * 1024**3
    assert tight["overrides"] == {}


def test_plan_overrides_and_normalisation_per_modality():
    ct = planning.make_plan(_fingerprint(), patch_size=[16, 64, 64], batch_size=3,
                            target_spacing=[1, 1, 1])
    assert ct["patch_size"] == [16, 64, 64] and ct["batch_size"] == 3
    assert ct["target_spacing"] == [1.0, 1.0, 1.0]
    assert set(ct["overrides"]) == {"patch_size", "batch_size", "target_spacing"}
    norm = ct["normalization"]
    assert norm["scheme"] == "ct" and norm["clip"][0] < -900 and norm["clip"][1] > 100
    hu = np.array([-3000.0, norm["mean"], 3000.0])
    out = planning.normalize(hu, norm)
    assert out[1] == pytest.approx(0.0, abs=1e-5)
    assert out[0] == pytest.approx((norm["clip"][0] - norm["mean"]) / norm["std"], rel=1e-5)
    mr = planning.make_plan(_fingerprint("MR"))
    assert mr["normalization"] == {"scheme": "zscore"}
    z = planning.normalize(np.arange(10.0), mr["normalization"])
    assert z.mean() == pytest.approx(0, abs=1e-6) and z.std() == pytest.approx(1, abs=1e-5)
    with pytest.raises(ValueError, match="patch_size"):
        planning.make_plan(_fingerprint(), patch_size=[0, 64, 64])


def test_spacing_and_patch_options_share_one_rule_with_their_own_errors():
    from medzoo.datasets import volumes
    from medzoo.errors import InputError

    assert volumes.parse_spacing("2.5, 0.7,0.7") == [2.5, 0.7, 0.7]
    assert volumes.parse_spacing(" AUTO ") is None
    assert volumes.parse_triple("16,48,48", "--patch-size") == [16, 48, 48]
    assert volumes.parse_triple(None, "--patch-size") is None
    for bad in ("1,2", "1,0,1", "1,nan,1", "1,inf,1", "a,b,c", 5):
        with pytest.raises(InputError, match=r"--spacing must be auto or three positive numbers"):
            volumes.parse_spacing(bad)
    for bad in ("16,48", "16,0,48", "16,48.5,48", "1" * 400 + ",1,1"):
        with pytest.raises(InputError, match=r"--patch-size must be three positive integers "
                                             r"D,H,W\. Received: '"):
            volumes.parse_triple(bad, "--patch-size")
    for key, bad in (("target_spacing", [1.0, -1.0, 1.0]), ("patch_size", [16, float("inf"), 16])):
        with pytest.raises(ValueError, match=rf"Argument `{key}` must be 3 positive numbers"):
            planning.make_plan(_fingerprint(), **{key: bad})
