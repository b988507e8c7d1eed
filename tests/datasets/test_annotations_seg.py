"""DICOM SEG as a label source: SEGs written by highdicom (an independent writer) on a pydicom
phantom series are read back voxel for voxel against the phantom's own label map."""

import numpy as np
import pydicom
import pytest
import volume_phantom as vp

from medzoo.datasets.annotations import AnnotationError, parse_segment_map, read_label_map
from medzoo.datasets.geometry import series_geometry

SEGMENT_MAP = parse_segment_map("Left Lung=lung,Right Lung=lung,Nodule=lesion,Heart=heart")


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    folder = tmp_path_factory.mktemp("seg_series")
    paths = vp.write_series(folder)
    datasets = [pydicom.dcmread(p) for p in sorted(paths)]  # file order ≠ slice order
    return folder, datasets, series_geometry(datasets)


def test_binary_seg_matches_phantom_voxel_for_voxel(series, tmp_path):
    _, datasets, geometry = series
    path = vp.write_seg(tmp_path / "ref.dcm", datasets)
    lm = read_label_map(path, geometry, class_names=vp.CLASSES, segment_map=SEGMENT_MAP)
    assert lm.classes == vp.CLASSES
    assert lm.array.dtype == np.uint8 and lm.array.shape == (vp.SLICES, vp.ROWS, vp.COLS)
    np.testing.assert_array_equal(lm.array, vp.label_map())
    # the first slice is empty and was omitted from the SEG: still background, no error
    assert not lm.array[0].any() and np.bincount(lm.array.ravel())[3] == 50


def test_classes_from_segment_map_order_and_overlap_rule(series, tmp_path):
    """Without class_names, classes follow the segments; later classes win overlaps."""
    _, datasets, geometry = series
    path = vp.write_seg(tmp_path / "ref.dcm", datasets)
    lm = read_label_map(path, geometry, segment_map=SEGMENT_MAP)
    assert lm.classes == ["background", "lung", "heart", "lesion"]
    np.testing.assert_array_equal(lm.array, vp.label_map())
    # listing lung after lesion makes lung win where the nodule lies inside the left lung
    swapped = read_label_map(path, geometry, class_names=["background", "heart", "lesion", "lung"],
                             segment_map=SEGMENT_MAP)
    nodule = vp.structure_mask("Nodule")
    assert (swapped.array[nodule] == 3).all()


def test_match_by_coded_property(series, tmp_path):
    _, datasets, geometry = series
    path = vp.write_seg(tmp_path / "ref.dcm", datasets)
    lm = read_label_map(path, geometry, class_names=vp.CLASSES,
                        segment_map={"SCT:39607008": "lung", "Heart": "heart",
                                     "nodule": "lesion"})  # code, label, meaning (any case)
    np.testing.assert_array_equal(lm.array, vp.label_map())


def test_fractional_seg_thresholded_at_half(series, tmp_path):
    _, datasets, geometry = series
    path = vp.write_seg(tmp_path / "frac.dcm", datasets, fractional=True, omit_empty_frames=False)
    lm = read_label_map(path, geometry, class_names=vp.CLASSES, segment_map=SEGMENT_MAP)
    np.testing.assert_array_equal(lm.array, vp.label_map())


def test_segment_left_out_with_dash(series, tmp_path):
    _, datasets, geometry = series
    path = vp.write_seg(tmp_path / "ref.dcm", datasets)
    lm = read_label_map(path, geometry, class_names=["background", "lung"],
                        segment_map={**SEGMENT_MAP, "Heart": "-", "Nodule": "-"})
    lungs = vp.structure_mask("Left Lung") | vp.structure_mask("Right Lung")
    np.testing.assert_array_equal(lm.array, lungs.astype(np.uint8))


def test_seg_placed_by_plane_position_without_references(series, tmp_path):
    _, datasets, geometry = series
    path = vp.write_seg(tmp_path / "ref.dcm", datasets, omit_empty_frames=False)
    ds = pydicom.dcmread(path)
    for frame in ds.PerFrameFunctionalGroupsSequence:
        del frame.DerivationImageSequence
    ds.save_as(path)
    lm = read_label_map(path, geometry, class_names=vp.CLASSES, segment_map=SEGMENT_MAP)
    np.testing.assert_array_equal(lm.array, vp.label_map())
    assert any("plane position" in w for w in lm.warnings)


def test_unknown_segment_without_mapping(series, tmp_path):
    _, datasets, geometry = series
    path = vp.write_seg(tmp_path / "ref.dcm", datasets)
    with pytest.raises(AnnotationError, match="segment 'Heart' has no mapping and is not a class"):
        read_label_map(path, geometry, class_names=vp.CLASSES,
                       segment_map={"Left Lung": "lung", "Right Lung": "lung"})


def test_seg_referencing_images_not_in_series(series, tmp_path):
    folder, datasets, geometry = series
    other = [pydicom.dcmread(p) for p in sorted(vp.write_series(tmp_path / "other", seed=9))]
    path = vp.write_seg(tmp_path / "ref.dcm", other)  # same geometry, other SOP instances
    geometry_same_for = geometry.__class__(**{**geometry.__dict__, "frame_of_reference_uid": None})
    with pytest.raises(AnnotationError, match=r"references 7 image\(s\) not in the series"):
        read_label_map(path, geometry_same_for, class_names=vp.CLASSES, segment_map=SEGMENT_MAP)
    with pytest.raises(AnnotationError, match="another frame of reference"):
        read_label_map(path, geometry, class_names=vp.CLASSES, segment_map=SEGMENT_MAP)


def test_truncated_seg(series, tmp_path):
    _, datasets, geometry = series
    path = vp.write_seg(tmp_path / "ref.dcm", datasets)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(AnnotationError) as err:
        read_label_map(path, geometry, class_names=vp.CLASSES, segment_map=SEGMENT_MAP)
    assert "\n" not in str(err.value) and "1.2." not in str(err.value)


def test_medzoo_seg_round_trip(series):
    """A SEG medzoo's predict writes, read back as a label source, gives the same mask."""
    from medzoo.deploy.dicom_seg import SEGMENT_LABEL, build_segmentation

    _, datasets, geometry = series
    order = [vp.slice_index(ds) for ds in datasets]
    mask = vp.label_map() == 3
    seg = build_segmentation(datasets, mask[order], model_name="unet", model_version=1)
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "series-001.dcm"
        seg.save_as(str(path))
        lm = read_label_map(path, geometry)
    assert lm.classes == ["background", SEGMENT_LABEL]
    np.testing.assert_array_equal(lm.array, mask.astype(np.uint8))


def test_labelmap_seg(series, tmp_path):
    """highdicom's LABELMAP type (one frame per slice, pixel = segment number)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    _, datasets, geometry = series
    order = [vp.slice_index(ds) for ds in datasets]
    algorithm = hd.AlgorithmIdentificationSequence(
        name="test", version="1", family=codes.DCM.ArtificialIntelligence)
    descriptions = [hd.seg.SegmentDescription(
        segment_number=n, segment_label=name, segmented_property_category=codes.SCT.Organ,
        segmented_property_type=codes.SCT.Tissue,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm) for n, name in enumerate(vp.CLASSES[1:], start=1)]
    seg = hd.seg.Segmentation(
        source_images=datasets, pixel_array=vp.label_map()[order],
        segmentation_type=hd.seg.SegmentationTypeValues.LABELMAP,
        segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=5,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="test",
        manufacturer_model_name="test", software_versions="1", device_serial_number="1")
    seg.save_as(str(tmp_path / "labelmap.dcm"))
    lm = read_label_map(tmp_path / "labelmap.dcm", geometry, class_names=vp.CLASSES)
    np.testing.assert_array_equal(lm.array, vp.label_map())


def test_seg_on_sagittal_series(tmp_path):
    paths = vp.write_series(tmp_path / "series", seed=7, orientation="sagittal")
    datasets = [pydicom.dcmread(p) for p in sorted(paths)]
    geometry = series_geometry(datasets)
    path = vp.write_seg(tmp_path / "ref.dcm", datasets)
    lm = read_label_map(path, geometry, class_names=vp.CLASSES, segment_map=SEGMENT_MAP)
    np.testing.assert_array_equal(lm.array, vp.label_map("sagittal"))


def test_non_conformant_seg(series, tmp_path):
    """A SEG without its Segment Sequence, or with frames of another size: one-line reasons."""
    _, datasets, geometry = series
    path = vp.write_seg(tmp_path / "ref.dcm", datasets)
    ds = pydicom.dcmread(path)
    del ds.SegmentSequence
    ds.save_as(tmp_path / "no_segments.dcm")
    with pytest.raises(AnnotationError, match="DICOM SEG unreadable or non-conformant"):
        read_label_map(tmp_path / "no_segments.dcm", geometry, segment_map=SEGMENT_MAP)
    ct = pydicom.dcmread(sorted(vp.write_series(tmp_path / "s"))[0])
    ct.save_as(tmp_path / "ct.dcm")
    with pytest.raises(AnnotationError, match="not an annotation .* modality CT"):
        read_label_map(tmp_path / "ct.dcm", geometry)
