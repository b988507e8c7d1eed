"""RTSTRUCT as a label source: a structure set written by hand with pydicom (the phantom's
analytic shapes cut by each slice plane, sampled as polygons in LPS mm) is rasterised back onto
the series and compared with the phantom's label map (Dice ≥ 0.99 per class, holes kept)."""

import numpy as np
import pydicom
import pytest
import volume_phantom as vp
from pydicom.uid import generate_uid

from medzoo.datasets.annotations import AnnotationError, parse_segment_map, read_label_map
from medzoo.datasets.geometry import series_geometry
from medzoo.datasets.rtstruct import fill_polygon

SEGMENT_MAP = parse_segment_map("Left Lung=lung,Right Lung=lung,Nodule=lesion,Heart=heart")


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    paths = vp.write_series(tmp_path_factory.mktemp("rt_series"))
    datasets = [pydicom.dcmread(p, stop_before_pixels=True) for p in paths]
    return datasets, series_geometry(datasets)


@pytest.fixture(scope="module", params=["sagittal", "coronal"])
def oblique_series(request, tmp_path_factory):
    """The phantom in another orientation (slices normal to x or y instead of z)."""
    paths = vp.write_series(tmp_path_factory.mktemp(f"rt_{request.param}"), seed=4,
                            orientation=request.param)
    datasets = [pydicom.dcmread(p, stop_before_pixels=True) for p in paths]
    return request.param, datasets, series_geometry(datasets)


def dice(a, b):
    return 2 * np.logical_and(a, b).sum() / max(a.sum() + b.sum(), 1)


def test_rtstruct_rasterised_matches_phantom(series, tmp_path):
    datasets, geometry = series
    path = vp.write_rtstruct(tmp_path / "rt.dcm", datasets, vp.phantom_contours(datasets))
    lm = read_label_map(path, geometry, class_names=vp.CLASSES, segment_map=SEGMENT_MAP)
    assert lm.classes == vp.CLASSES
    truth = vp.label_map()
    for value in (1, 2, 3):
        assert dice(lm.array == value, truth == value) >= 0.99, vp.CLASSES[value]
    # the heart's inner contour is a hole: background (0) inside the shell on the middle slice
    hole = vp.STRUCTURES["Heart"][2][0].contains(vp.voxel_centres())
    assert hole.sum() > 5 and (lm.array[hole] == 0).all()


def test_holes_even_odd_whatever_the_order(series, tmp_path):
    """Hole listed before its outer contour: still a hole (XOR of the contours on a slice)."""
    datasets, geometry = series
    heart = vp.phantom_contours(datasets)["Heart"]
    path = vp.write_rtstruct(tmp_path / "rt.dcm", datasets, {"Heart": heart[::-1]})
    lm = read_label_map(path, geometry)
    truth = vp.structure_mask("Heart")
    assert lm.classes == ["background", "Heart"] and dice(lm.array == 1, truth) >= 0.99


def test_fill_polygon_known_areas():
    square = np.array([[2.5, 2.5], [12.5, 2.5], [12.5, 8.5], [2.5, 8.5]])  # (x=col, y=row)
    m = fill_polygon(square, 16, 16)
    assert m.sum() == 10 * 6 and m[3:9, 3:13].all()
    triangle = np.array([[0.5, 0.5], [20.5, 0.5], [0.5, 10.5]])  # no pixel centre on an edge
    assert fill_polygon(triangle, 32, 32).sum() == 100  # = its area, 20 × 10 / 2
    t = np.linspace(0, 2 * np.pi, 400, endpoint=False)
    disk = fill_polygon(np.stack([40 + 20 * np.cos(t), 40 + 20 * np.sin(t)], 1), 80, 80)
    assert abs(disk.sum() - np.pi * 20 ** 2) / (np.pi * 20 ** 2) < 0.01
    assert fill_polygon(square + 100, 16, 16).sum() == 0  # outside the image: nothing


def test_fill_polygon_agrees_with_matplotlib():
    """The scanline fill against matplotlib's point-in-polygon on random star polygons."""
    from matplotlib.path import Path as MplPath

    rng = np.random.default_rng(1)
    jj, ii = np.meshgrid(np.arange(32), np.arange(32))
    centres = np.stack([jj.ravel(), ii.ravel()], 1)
    for _ in range(100):
        n = rng.integers(3, 40)
        t = np.sort(rng.uniform(0, 2 * np.pi, n))
        r = rng.uniform(2, 20, n)
        poly = np.stack([16 + r * np.cos(t), 16 + r * np.sin(t)], 1) + rng.uniform(-0.5, 1.5, 2)
        expected = MplPath(poly).contains_points(centres).reshape(32, 32)
        np.testing.assert_array_equal(fill_polygon(poly, 32, 32), expected)


def test_bad_contours(series, tmp_path):
    datasets, geometry = series
    rois = vp.phantom_contours(datasets)
    nodule = rois["Nodule"]

    def fails(rois, match, **kw):
        path = vp.write_rtstruct(tmp_path / "bad.dcm", datasets, rois, **kw)
        with pytest.raises(AnnotationError, match=match):
            read_label_map(path, geometry, class_names=vp.CLASSES, segment_map=SEGMENT_MAP)

    fails({"Nodule": nodule}, "is OPEN_PLANAR .expected CLOSED_PLANAR",
          kinds={"Nodule": "OPEN_PLANAR"})
    between = [(p + [0, 0, 1.0], None) for p, _ in nodule]  # 1.0 mm > 2.5 mm / 4 off the slices
    fails({"Nodule": between}, r"lies 1.00 mm from the nearest slice .*, 0.62 mm\): off the image")
    beyond = [(nodule[0][0] + [0, 0, 40.0], None)]
    fails({"Nodule": beyond}, "off the image planes")
    bow = np.array([[0, 0, 0], [5, 5, 0], [5, 0, 0], [0, 5, 0]], float) + [0, 0, -1.25]
    fails({"Nodule": [(bow, None)]}, "intersects itself")
    tilted = nodule[2][0] + np.outer(np.linspace(0, 1, len(nodule[2][0])), [0, 0, 1.0])
    fails({"Nodule": [(tilted, None)]}, "is not planar")
    fails({"Nodule": nodule, "Heart": []}, "ROI 'Heart' is empty")
    fails({"Nodule": nodule, "Spine": nodule}, "segment 'Spine' has no mapping")
    fails({"Nodule": nodule}, "another frame of reference", frame_uid=generate_uid())
    # an empty ROI left out with NAME=- is not an error
    ok = vp.write_rtstruct(tmp_path / "ok.dcm", datasets, {"Nodule": nodule, "Couch": []})
    lm = read_label_map(ok, geometry, segment_map={"Nodule": "lesion", "Couch": "-"})
    assert lm.classes == ["background", "lesion"]
    assert dice(lm.array == 1, vp.structure_mask("Nodule")) >= 0.99


def test_contours_referencing_images_not_in_series(series, tmp_path):
    datasets, geometry = series
    other = [pydicom.dcmread(p, stop_before_pixels=True)
             for p in vp.write_series(tmp_path / "other", seed=5)]
    rois = {"Nodule": [(p, other[0]) for p, _ in vp.phantom_contours(datasets)["Nodule"]]}
    path = vp.write_rtstruct(tmp_path / "rt.dcm", datasets, rois)
    with pytest.raises(AnnotationError, match=r"reference 1 image\(s\) not in the series"):
        read_label_map(path, geometry)


def test_rtstruct_other_orientations(oblique_series, tmp_path):
    orientation, datasets, geometry = oblique_series
    path = vp.write_rtstruct(tmp_path / "rt.dcm", datasets, vp.phantom_contours(datasets))
    lm = read_label_map(path, geometry, class_names=vp.CLASSES, segment_map=SEGMENT_MAP)
    truth = vp.label_map(orientation)
    for value in (1, 2, 3):
        assert dice(lm.array == value, truth == value) >= 0.99, (orientation, vp.CLASSES[value])
