"""The ``mask`` column of a 2D labels.csv row: read it, check it, resize it (2D ingest).

A row's mask is a ``.npy`` / ``.png`` array of the image's rows × columns, read here, or a DICOM
SEG / RTSTRUCT covering the row's image, read by :mod:`medzoo.datasets.slice_masks`. Either
becomes a binary mask at the stored size. A mask that cannot be used raises
:class:`~medzoo.datasets.dicom.DicomRejected` with the reason the row is rejected for. Runs in
the ingest worker processes (no TensorFlow).
"""

from __future__ import annotations

import functools
import io
import math
from pathlib import Path

import numpy as np

from medzoo.datasets import dicom


def load_mask(path: Path, rows: int, cols: int, image_path=None, segment_map=None) -> np.ndarray:
    """The mask a row names, at the image's native ``rows × cols``.

    Parameters
    ----------
    path : Path
        A ``.npy`` or ``.png`` array, or a DICOM SEG / RTSTRUCT.
    rows, cols : int
        The image's size, which the mask must have.
    image_path : path-like, optional
        The row's image; a DICOM mask is read only with it (its frames are matched by SOP
        Instance UID).
    segment_map : dict, optional
        A DICOM mask's segment / ROI names → classes; ``NAME=-`` leaves that segment out of the
        (binary) mask (:func:`medzoo.datasets.slice_masks.read_slice_mask`).

    Returns
    -------
    numpy.ndarray
        The mask as stored (any numeric dtype; a DICOM mask is uint8 0/1).

    Raises
    ------
    DicomRejected
        Unreadable, not numeric, another shape, or a DICOM mask that does not cover the image.
    """
    from medzoo.datasets import slice_masks

    if image_path is not None and slice_masks.is_dicom_annotation(path):
        from medzoo.datasets.annotations import AnnotationError

        try:  # a DICOM SEG / RTSTRUCT: this image's frames (docs/annotations.md)
            return slice_masks.read_slice_mask(path, image_path, segment_map=segment_map)
        except AnnotationError as exc:
            raise dicom.DicomRejected(f"mask: {exc}") from None
    if path.suffix.lower() == ".npy":
        try:
            mask = _read_npy(path)
        except (OSError, ValueError, SyntaxError, TypeError, MemoryError):
            raise dicom.DicomRejected("mask file unreadable (expected .npy or .png)")
        if mask.dtype.kind not in "biuf":  # structured, string, object... arrays
            raise dicom.DicomRejected(f"mask file unreadable (expected a numeric array, "
                                      f"received dtype {mask.dtype.kind!r})")
    else:
        try:
            from PIL import Image

            with Image.open(path) as im:
                mask = np.asarray(im.convert("L"))
        except Exception:
            raise dicom.DicomRejected("mask file unreadable (expected .npy or .png)")
    mask = np.squeeze(mask)
    if mask.shape != (rows, cols):
        got = "x".join(str(s) for s in mask.shape) or "scalar"
        raise dicom.DicomRejected(f"mask shape mismatch (expected {rows}x{cols}, received {got})")
    return mask


def _read_npy(path: Path) -> np.ndarray:
    """``np.load(path, allow_pickle=False)``, parsing each distinct header once.

    Masks of one dataset share their header (shape, dtype), and parsing it (a Python literal)
    is most of the time ``np.load`` takes. Plain .npy files of version 1 or 2 with all their
    data are read here; anything else goes to ``np.load``, with its checks and errors.
    """
    data = path.read_bytes()
    if data[:6] == b"\x93NUMPY" and len(data) >= 12 and data[7] == 0 and data[6] in (1, 2):
        size_bytes = 2 if data[6] == 1 else 4
        end = 8 + size_bytes + int.from_bytes(data[8:8 + size_bytes], "little")
        if end <= len(data):
            shape, fortran, dtype = _npy_header(data[:end])
            count = math.prod(shape)
            if (not dtype.hasobject and dtype.itemsize > 0
                    and len(data) - end >= count * dtype.itemsize):
                array = np.frombuffer(data, dtype=dtype, count=count, offset=end)
                return array.reshape(shape[::-1]).transpose() if fortran else array.reshape(shape)
    return np.load(path, allow_pickle=False)


@functools.lru_cache(maxsize=16)
def _npy_header(head: bytes):
    """``(shape, fortran_order, dtype)`` of a .npy header (magic and header, version 1 or 2)."""
    from numpy.lib import format as npy

    fh = io.BytesIO(head)
    version = npy.read_magic(fh)
    read = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
    return read(fh)


def resize_mask(mask: np.ndarray, size) -> np.ndarray:
    """``mask > 0`` resized (bilinear, as the images) and thresholded at 0.5 → uint8 0/1.

    The comparison is pointwise, so it runs only on the pixels the resize reads.
    """
    small = dicom._resize_through(lambda a: (a > 0).astype(np.float32)[..., None], mask[None],
                                  size)
    return (small[0, ..., 0] >= 0.5).astype(np.uint8)
