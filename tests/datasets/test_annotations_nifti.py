"""NIfTI label maps written by nibabel with several affines (x-fastest as dcm2niix writes, the
series' own order, flipped and permuted by nibabel's reorientation) land voxel for voxel on the
phantom series; shifted, resized, oblique or unoriented ones are rejected with the reason."""

import numpy as np
import nibabel as nib
import pydicom
import pytest
import volume_phantom as vp

from medzoo.datasets.annotations import AnnotationError, read_label_map
from medzoo.datasets.geometry import series_geometry

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
XYZ = np.array([[0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]], float)  # (j,i,k)→(k,i,j)


@pytest.fixture(scope="module")
def geometry(tmp_path_factory):
    paths = vp.write_series(tmp_path_factory.mktemp("nifti_series"))
    return series_geometry(pydicom.dcmread(p, stop_before_pixels=True) for p in paths)


def base_image(orientation="axial") -> nib.Nifti1Image:
    """The phantom labels stored x-fastest (column, row, slice) with a RAS affine."""
    img = nib.Nifti1Image(vp.label_map(orientation).transpose(2, 1, 0).copy(),
                          LPS_TO_RAS @ vp.affine(orientation) @ XYZ)
    img.set_qform(img.affine, code=1)
    img.set_sform(img.affine, code=1)
    return img


def save(img, path):
    nib.save(img, str(path))
    return path


#: nibabel orientation transforms: (target axis, flip) per input axis
REORIENTATIONS = {
    "as written": [[0, 1], [1, 1], [2, 1]],
    "x flipped": [[0, -1], [1, 1], [2, 1]],
    "y and z flipped": [[0, 1], [1, -1], [2, -1]],
    "series order (z, y, x)": [[2, 1], [1, 1], [0, 1]],
    "permuted and flipped": [[1, -1], [2, 1], [0, -1]],
}


@pytest.mark.parametrize("name", REORIENTATIONS)
def test_reoriented_nifti_matches_phantom(geometry, tmp_path, name):
    img = base_image().as_reoriented(np.array(REORIENTATIONS[name], float))
    path = save(img, tmp_path / "labels.nii.gz")
    lm = read_label_map(path, geometry, class_names=vp.CLASSES)
    assert lm.classes == vp.CLASSES
    np.testing.assert_array_equal(lm.array, vp.label_map())


@pytest.mark.parametrize("orientation", ["sagittal", "coronal"])
@pytest.mark.parametrize("name", ["as written", "permuted and flipped"])
def test_nifti_on_sagittal_and_coronal_series(tmp_path, orientation, name):
    paths = vp.write_series(tmp_path / "series", seed=6, orientation=orientation)
    geometry = series_geometry(pydicom.dcmread(p, stop_before_pixels=True) for p in paths)
    # the same labels written by a tool that reoriented them to RAS+ (nibabel's canonical)
    img = base_image(orientation).as_reoriented(np.array(REORIENTATIONS[name], float))
    canonical = nib.as_closest_canonical(img)
    for version in (img, canonical):
        path = save(version, tmp_path / "labels.nii.gz")
        lm = read_label_map(path, geometry, class_names=vp.CLASSES)
        np.testing.assert_array_equal(lm.array, vp.label_map(orientation))


def test_uncompressed_float32_affine_and_value_map(geometry, tmp_path):
    img = base_image()
    img.set_data_dtype(np.uint8)
    path = save(img, tmp_path / "labels.nii")
    lm = read_label_map(path, geometry, segment_map={"1": "lung", "2": "heart", "3": "lung"})
    assert lm.classes == ["background", "lung", "heart"]
    expected = vp.label_map()
    expected[expected == 3] = 1
    np.testing.assert_array_equal(lm.array, expected)
    unnamed = read_label_map(path, geometry)
    assert unnamed.classes == ["background", "label1", "label2", "label3"]


@pytest.mark.parametrize("shift_mm, axis, expected", [(1.0, 2, "1.00 mm"), (0.8, 0, "0.80 mm"),
                                                      (0.3, 1, "0.30 mm")])
def test_shifted_nifti_rejected_with_offset(geometry, tmp_path, shift_mm, axis, expected):
    img = base_image()
    affine = img.affine.copy()
    affine[axis, 3] += shift_mm
    path = save(nib.Nifti1Image(np.asarray(img.dataobj), affine), tmp_path / "shifted.nii.gz")
    with pytest.raises(AnnotationError, match=f"offset by up to {expected} .tolerance 0.17 mm"):
        read_label_map(path, geometry, class_names=vp.CLASSES)


def test_tiny_float_error_accepted(geometry, tmp_path):
    img = base_image()
    affine = img.affine.copy()
    affine[:3, 3] += 0.01  # rounding in a converter: far below a quarter voxel
    path = save(nib.Nifti1Image(np.asarray(img.dataobj), affine), tmp_path / "near.nii.gz")
    np.testing.assert_array_equal(read_label_map(path, geometry).array, vp.label_map())


def test_wrong_shape_spacing_oblique_and_unoriented(geometry, tmp_path):
    img = base_image()
    data = np.asarray(img.dataobj)
    cropped = save(nib.Nifti1Image(data[:, :, :-1], img.affine), tmp_path / "crop.nii.gz")
    with pytest.raises(AnnotationError, match=r"shape mismatch \(expected 32x32x8 .* "
                                              r"received 32x32x7\)"):
        read_label_map(cropped, geometry)
    coarse = img.affine @ np.diag([2.0, 2.0, 1.0, 1.0])
    with pytest.raises(AnnotationError, match=r"not aligned .* received spacing 1.6×1.4×2.5 mm"):
        read_label_map(save(nib.Nifti1Image(data, coarse), tmp_path / "c.nii.gz"), geometry)
    c, s = np.cos(0.3), np.sin(0.3)
    rot = np.array([[c, -s, 0, 0], [s, c, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    with pytest.raises(AnnotationError, match="oblique axes"):
        read_label_map(save(nib.Nifti1Image(data, rot @ img.affine), tmp_path / "o.nii.gz"),
                       geometry)
    bare = nib.Nifti1Image(data, img.affine)
    bare.set_qform(None, code=0)
    bare.set_sform(None, code=0)
    with pytest.raises(AnnotationError, match="no orientation"):
        read_label_map(save(bare, tmp_path / "bare.nii.gz"), geometry)


def test_truncated_and_non_integer_nifti(geometry, tmp_path):
    path = save(base_image(), tmp_path / "labels.nii.gz")
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(AnnotationError, match="NIfTI unreadable or truncated"):
        read_label_map(path, geometry)
    img = base_image()
    soft = nib.Nifti1Image(np.asarray(img.dataobj).astype(np.float32) * 0.5, img.affine)
    with pytest.raises(AnnotationError, match="non-integer values"):
        read_label_map(save(soft, tmp_path / "soft.nii.gz"), geometry)
    with pytest.raises(AnnotationError, match="label value 3 has no class"):
        read_label_map(save(base_image(), tmp_path / "ok.nii.gz"), geometry,
                       class_names=["background", "lung", "heart"])


def test_npy_label_map(geometry, tmp_path):
    np.save(tmp_path / "labels.npy", vp.label_map())
    lm = read_label_map(tmp_path / "labels.npy", geometry, class_names=vp.CLASSES[1:])
    assert lm.classes == vp.CLASSES
    np.testing.assert_array_equal(lm.array, vp.label_map())
    np.save(tmp_path / "flat.npy", vp.label_map()[0])
    with pytest.raises(AnnotationError, match=r"expected 8x32x32 as the series, received 32x32"):
        read_label_map(tmp_path / "flat.npy", geometry)
