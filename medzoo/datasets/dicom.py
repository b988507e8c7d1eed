"""Read one DICOM object and run the pixel chain (docs/internals.md).

decode → Modality LUT (rescale slope/intercept) → VOI window (linear, DICOM C.11.2.1.2)
→ MONOCHROME1 inverted (1 − y) → resize (bilinear, half-pixel centres, no antialias).

The pure steps (:func:`window_linear`, :func:`invert`, :func:`to_grey`, :func:`resize_bilinear`)
take and return numpy arrays and are separate from the I/O in :func:`read_dicom`. Nothing here
imports TensorFlow: this module runs in the ingest worker processes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import os
import re
import stat
import struct
import sys
import threading
import warnings
import zlib
from pathlib import Path

import numpy as np

MAX_PIXEL_BYTES = 512 * 1024 * 1024
"""Refuse an object whose header promises more decoded pixel bytes than this."""

DEFER_BYTES = 1 << 20
"""Elements larger than this are read from disk only when used (after the size check)."""

DEFER_FILE_BYTES = 64 * 1024 * 1024
"""Files up to this size are read in one go (deferred reads re-open the file: slower)."""

WINDOW_PRESETS = {"CT": (40.0, 400.0)}
"""VOI windows used when a file has none (center, width); other modalities fall back to min–max."""

CT_WINDOWS = {
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
    "brain": (40.0, 80.0),
    "bone": (400.0, 1800.0),
    "abdomen": (50.0, 400.0),
}
"""Named CT windows ``(center, width)`` in Hounsfield units (``--window lung`` …)."""

COLOR_MODES = ("grey", "rgb")


class DicomRejected(Exception):
    """A file that cannot enter a dataset; ``reason`` is a short phrase written to rejected.csv.

    The reason never holds PHI: it is built from fixed words and numbers only.
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


# --------------------------------------------------------------------------- pure functions


def window_linear(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """Linear VOI transform of DICOM PS3.3 C.11.2.1.2, output in [0, 1].

    Parameters
    ----------
    values : ndarray
        Modality values (after the Modality LUT).
    center, width : float
        Window center and width; ``width`` must be ≥ 1.

    Returns
    -------
    ndarray of float32
        ``clip((x − (c − 0.5)) / (w − 1) + 0.5, 0, 1)``; for ``w == 1`` a threshold at ``c − 0.5``.

    Raises
    ------
    ValueError
        When ``width < 1``.
    """
    if not width >= 1:
        raise ValueError(f"Window width must be >= 1. Received: width={width}")
    x = np.asarray(values)
    if width == 1:
        return (x > center - 0.5).astype(np.float32)
    # float32 throughout (the images are float32 anyway); float64 inputs keep their precision
    dtype = np.float64 if x.dtype == np.float64 else np.float32
    y = np.subtract(x, dtype(center - 0.5), dtype=dtype)
    y /= dtype(width - 1)
    y += dtype(0.5)
    np.clip(y, 0.0, 1.0, out=y)
    return y.astype(np.float32, copy=False)


def window_min_max(values: np.ndarray) -> tuple[float, float]:
    """The (center, width) that maps the minimum of ``values`` to 0 and the maximum to 1."""
    lo = float(np.min(values))
    hi = float(np.max(values))
    return (lo + hi) / 2.0 + 0.5, (hi - lo) + 1.0


def invert(y: np.ndarray) -> np.ndarray:
    """MONOCHROME1 display: ``1 − y`` for an image windowed to [0, 1]."""
    return (1.0 - np.asarray(y, dtype=np.float32)).astype(np.float32)


def to_grey(rgb: np.ndarray) -> np.ndarray:
    """Luma (ITU-R BT.601) of an ``(..., 3)`` RGB array, as float32 with the channel axis dropped."""
    rgb = np.asarray(rgb, dtype=np.float32)
    return (0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]).astype(np.float32)


@functools.lru_cache(maxsize=64)
def _interp_weights(in_size: int, out_size: int):
    """``(lower, upper, lerp)`` of a half-pixel-centre linear resize (read-only, cached)."""
    scale = in_size / out_size
    centre = (np.arange(out_size, dtype=np.float64) + 0.5) * scale - 0.5
    floor = np.floor(centre)
    lower = np.maximum(floor, 0).astype(np.int64)
    upper = np.minimum(np.ceil(centre), in_size - 1).astype(np.int64)
    lerp = (centre - floor).astype(np.float32)
    for a in (lower, upper, lerp):
        a.flags.writeable = False
    return lower, upper, lerp


def resize_bilinear(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize with half-pixel centres and no antialiasing.

    Equal to ``tf.image.resize(image, size, "bilinear")`` (TensorFlow 2), in pure numpy.

    Parameters
    ----------
    image : ndarray
        ``(H, W)`` or ``(H, W, C)``.
    size : (int, int)
        Output ``(height, width)``.

    Returns
    -------
    ndarray of float32 with shape ``size`` (+ ``(C,)`` when the input had channels).
    """
    img = np.asarray(image, dtype=np.float32)
    out_h, out_w = int(size[0]), int(size[1])
    if out_h < 1 or out_w < 1:
        raise ValueError(f"Resize size must be positive. Received: size={size}")
    squeeze = img.ndim == 2
    if squeeze:
        img = img[:, :, None]
    top, bottom, ylerp = _interp_weights(img.shape[0], out_h)
    left, right, xlerp = _interp_weights(img.shape[1], out_w)
    ylerp = ylerp[:, None, None]
    xlerp = xlerp[None, :, None]
    tl = img[top][:, left]
    tr = img[top][:, right]
    bl = img[bottom][:, left]
    br = img[bottom][:, right]
    top_row = tl + (tr - tl) * xlerp
    bottom_row = bl + (br - bl) * xlerp
    out = top_row + (bottom_row - top_row) * ylerp
    return out[:, :, 0] if squeeze else out


# --------------------------------------------------------------------------- I/O


@contextlib.contextmanager
def pydicom_quiet():
    """Silence pydicom's warnings: they quote element values, which may be PHI (UIDs, names)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _without_value_validation():
    """pydicom's value checks switched off while reading, in the main thread only (the setting
    is global to the process). In pydicom's default mode they only warn, and :func:`pydicom_quiet`
    drops those warnings: the values read are the same, and reading is a few percent faster."""
    if threading.current_thread() is not threading.main_thread():
        return contextlib.nullcontext()
    from pydicom import config

    return config.disable_value_validation()


@dataclasses.dataclass
class DicomImage:
    """One decoded object: windowed frames in [0, 1] plus the metadata the index needs.

    Attributes hold identifiers (UIDs, PatientID) only in memory; callers pseudonymise them.
    """

    frames: np.ndarray  # (frames, rows, cols) or (frames, H, W, C) float32 in [0, 1]
    modality: str
    photometric: str
    window_center: float
    window_width: float
    rows: int
    columns: int
    patient_id: str
    study_uid: str
    series_uid: str
    sop_uid: str
    slice_position: float | None
    instance_number: int | None
    geometry: "Geometry | None" = None
    voi: str = "window"  # "window" (linear), "lut" (VOI LUT Sequence) or "colour"
    domain: dict | None = None  # what kind of image, no identifiers (medzoo.datasets.domain)


def _first(value):
    if value is None:
        return None
    try:
        if isinstance(value, (str, bytes)):
            raise TypeError
        return value[0]
    except (TypeError, IndexError):
        return value


DEFLATED = b"1.2.840.10008.1.2.1.99"


def _check_file(path) -> int:
    """Size of a regular file that is safe to hand to pydicom; refuse anything else.

    A FIFO, a device (``/dev/zero``) or a socket would block or never end; a deflated dataset is
    inflated whole in memory by pydicom, so its inflated size is measured first, in bounded
    memory: a small file must not inflate to gigabytes (a "zip bomb").
    """
    try:
        info = os.stat(path)
    except OSError:
        raise DicomRejected("file not found")
    if not stat.S_ISREG(info.st_mode):
        raise DicomRejected("not a regular file")
    if info.st_size > 2 * MAX_PIXEL_BYTES:
        raise DicomRejected(f"file too large (expected at most {2 * MAX_PIXEL_BYTES} bytes, "
                            f"received {info.st_size} bytes)")
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
        start = _deflated_start(head) if DEFLATED in head else None
        if start is not None:
            fh.seek(start)
            inflater, total = zlib.decompressobj(-zlib.MAX_WBITS), 0
            while not inflater.eof and (chunk := inflater.unconsumed_tail or fh.read(1 << 20)):
                try:
                    total += len(inflater.decompress(chunk, 1 << 24))
                except zlib.error:
                    break  # pydicom will say it is unreadable
                if total > MAX_PIXEL_BYTES:
                    raise DicomRejected(f"deflated data too large (expected at most "
                                        f"{MAX_PIXEL_BYTES} bytes inflated)")
    return info.st_size


def _deflated_start(head: bytes):
    """Offset of the deflated dataset after the file meta group, when the syntax says deflate."""
    pos = 132 if head[128:132] == b"DICM" else 0
    deflated = False
    while pos + 8 <= len(head) and head[pos:pos + 2] == b"\x02\x00":
        vr = head[pos + 4:pos + 6]
        if vr in (b"OB", b"OW", b"UN", b"UT", b"SQ", b"UC", b"UR", b"OV", b"OL", b"OD", b"OF"):
            length, value = int.from_bytes(head[pos + 8:pos + 12], "little"), pos + 12
        else:
            length, value = int.from_bytes(head[pos + 6:pos + 8], "little"), pos + 8
        if head[pos + 2:pos + 4] == b"\x10\x00":  # (0002,0010) TransferSyntaxUID
            deflated = head[value:value + length].rstrip(b"\0 ") == DEFLATED
        pos = value + length
    return pos if deflated and pos <= len(head) else None


def read_dataset(path):
    """Parse one DICOM file with pydicom after checking it is a readable file.

    Large values (the pixel data) are deferred until needed. A file without the DICOM preamble
    is accepted only when it parses as an image or a SOP instance.

    Raises
    ------
    DicomRejected
        ``"not DICOM"``, ``"truncated or unreadable"`` or what :func:`_check_file` refuses.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    size = _check_file(path)
    try:
        # large values (the pixel data) stay on disk until check_header has passed
        return pydicom.dcmread(path, defer_size=DEFER_BYTES if size > DEFER_FILE_BYTES else None)
    except InvalidDicomError:
        pass
    except (EOFError, OSError, ValueError, KeyError, TypeError, AttributeError, IndexError):
        raise DicomRejected("truncated or unreadable")
    # No preamble: accept only what parses as an image dataset.
    try:
        ds = pydicom.dcmread(path, force=True, defer_size=DEFER_BYTES)
        ok = ("PixelData" in ds and "Rows" in ds) or ("SOPClassUID" in ds and "SOPInstanceUID" in ds)
    except Exception:
        ok = False
    if not ok:
        raise DicomRejected("not DICOM")
    return ds


_ABSENT = object()

_BINARY_FORMATS = {"US": "H", "SS": "h", "UL": "I", "SL": "i", "FL": "f", "FD": "d"}
_TEXT_VRS = frozenset({"CS", "UI", "LO", "SH", "DS", "IS"})


@functools.lru_cache(maxsize=None)
def _element_key(keyword: str):
    """``(tag, dictionary VR)`` of a DICOM keyword, or None for a name that is not an element."""
    from pydicom.datadict import dictionary_VR, tag_for_keyword

    tag = tag_for_keyword(keyword)
    return None if tag is None else (tag, dictionary_VR(tag))


def _plain_value(elem, dictionary_vr: str):
    """The value pydicom gives a raw element holding one plain number or ASCII string (VR US,
    SS, UL, SL, FL, FD, or CS, UI, LO, SH, DS, IS), converted here; ``_ABSENT`` for anything
    else (a sequence, several strings, other characters, big endian, empty…), which pydicom
    then converts itself. Numbers come back as ``int``/``float`` (a list when several), where
    pydicom gives its ``IS``/``DSfloat`` subclasses of them."""
    from pydicom.dataelem import RawDataElement

    if not isinstance(elem, RawDataElement) or not isinstance(elem.value, bytes) or not elem.value:
        return _ABSENT
    raw, vr = elem.value, elem.VR or dictionary_vr
    fmt = _BINARY_FORMATS.get(vr)
    if fmt is not None:
        n, rest = divmod(len(raw), struct.calcsize(fmt))
        if rest or not elem.is_little_endian:
            return _ABSENT
        values = struct.unpack(f"<{n}{fmt}", raw)
        return values[0] if n == 1 else list(values)
    if vr not in _TEXT_VRS or not raw.isascii() or b"\x1b" in raw:  # ESC: ISO 2022 switching
        return _ABSENT
    text = raw.decode("ascii")
    if vr == "DS" or vr == "IS":
        items = (text.strip() if vr == "DS" else text).rstrip(" \x00").split("\\")
        if any(not item.strip() for item in items):
            return _ABSENT
        try:
            values = [float(item) for item in items] if vr == "DS" else [int(item) for item in items]
        except ValueError:  # "1.0" as IS, or not a number: pydicom's rules apply
            return _ABSENT
        return values[0] if len(values) == 1 else values
    value = text.rstrip(" \x00")
    return _ABSENT if "\\" in value else value


class _Header:
    """A dataset's top-level values, each converted once and only as far as needed.

    The pixel chain asks for the same two dozen elements several times per file, and pydicom
    spends about 10 µs converting each raw element (a third of the time a small file takes):
    this read-through cache converts plain numbers and ASCII strings itself
    (:func:`_plain_value`) and leaves everything else to pydicom. It answers ``get``, ``in`` and
    attribute access like the dataset it wraps; anything that is not a DICOM keyword
    (``pixel_array``, ``file_meta``) goes to the dataset, and pydicom's own functions are handed
    :attr:`dataset` (see :func:`_dataset`).
    """

    __slots__ = ("dataset", "_values")

    def __init__(self, dataset):
        self.dataset = dataset
        self._values = {}

    def get(self, keyword, default=None):
        try:
            value = self._values[keyword]
        except KeyError:
            key = _element_key(keyword)
            if key is None:  # not an element: an attribute of the dataset
                return getattr(self.dataset, keyword, default)
            elem = self.dataset.get_item(key[0], keep_deferred=True)
            if elem is None:
                value = _ABSENT
            else:
                value = _plain_value(elem, key[1])
                if value is _ABSENT:
                    value = self.dataset.get(keyword, _ABSENT)
            self._values[keyword] = value
        return default if value is _ABSENT else value

    def __contains__(self, keyword) -> bool:
        return self.get(keyword, _ABSENT) is not _ABSENT

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        value = self.get(name, _ABSENT)
        if value is _ABSENT:
            return getattr(self.dataset, name)  # pydicom's AttributeError for a missing element
        return value


def _dataset(ds):
    """The pydicom dataset behind ``ds`` (a :class:`_Header` or a dataset)."""
    return ds.dataset if isinstance(ds, _Header) else ds


NON_IMAGE_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.66.": "segmentation, registration or fiducials",
    "1.2.840.10008.5.1.4.1.1.88.": "structured report",
    "1.2.840.10008.5.1.4.1.1.11.": "presentation state",
    "1.2.840.10008.5.1.4.1.1.104.": "encapsulated document",
}
"""SOP Class UID prefixes of objects that are not images of the patient, with what they are."""


def non_image_kind(sop_class_uid: str) -> str | None:
    """What a SOP class that is not an image is ("structured report" …), else None."""
    for prefix, kind in NON_IMAGE_SOP_CLASSES.items():
        if sop_class_uid.startswith(prefix):
            return kind
    return None


def check_header(ds) -> None:
    """Refuse, before decoding, an object without pixels, one that is not an image (a DICOM SEG
    holds a mask in its pixel data) or one whose size is absurd.

    Raises
    ------
    DicomRejected
        ``no pixel data``, ``not an image (…)`` or ``image too large (…)``.
    """
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise DicomRejected("no pixel data")
    kind = non_image_kind(str(ds.get("SOPClassUID", "") or ""))
    if kind:  # a SEG's frames are a mask, not an image of the patient
        raise DicomRejected(f"not an image ({kind})")
    try:
        rows = int(ds.Rows)
        cols = int(ds.Columns)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        bits = int(ds.BitsAllocated)
    except (AttributeError, TypeError, ValueError):
        raise DicomRejected("no pixel data (missing Rows, Columns or BitsAllocated)")
    nbytes = rows * cols * frames * samples * max(1, math.ceil(bits / 8))
    if rows < 1 or cols < 1 or frames < 1:
        raise DicomRejected(f"empty image (rows={rows}, columns={cols}, frames={frames})")
    if nbytes > MAX_PIXEL_BYTES:
        raise DicomRejected(
            f"image too large (expected at most {MAX_PIXEL_BYTES} decoded bytes, "
            f"received {rows}x{cols}x{frames} frames = {nbytes} bytes)"
        )


_UID = re.compile(r"[0-9]{1,10}(\.[0-9]{1,20}){1,30}")


NATIVE_LITTLE_ENDIAN = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1")
"""Implicit and Explicit VR Little Endian: pixel data stored as plain little-endian integers."""


def _native_pixels(ds):
    """Plain uncompressed grey pixels as a read-only view on the file's bytes, else None.

    Only for the layout in which pydicom's ``pixel_array`` is exactly these bytes reinterpreted:
    a little-endian native transfer syntax, one sample, MONOCHROME1/2, Bits Stored equal to Bits
    Allocated (8, 16 or 32: no unused bits to mask or sign-extend), and exactly the expected
    number of bytes (plus the one pad byte of odd lengths). Everything else returns None and is
    decoded by ``pixel_array``, with its checks and error messages. Saves pydicom's decoder
    set-up and one copy of the image per file.
    """
    try:
        ts = str(ds.file_meta.TransferSyntaxUID)
    except AttributeError:
        return None
    if (ts not in NATIVE_LITTLE_ENDIAN or sys.byteorder != "little" or "FloatPixelData" in ds
            or "DoubleFloatPixelData" in ds):
        return None
    try:
        frames = int(ds.NumberOfFrames) if "NumberOfFrames" in ds else 1
        rows, cols = int(ds.Rows), int(ds.Columns)
        bits, stored = int(ds.BitsAllocated), int(ds.BitsStored)
        signed, samples = int(ds.PixelRepresentation), int(ds.SamplesPerPixel)
        photometric = ds.PhotometricInterpretation
        data = ds.PixelData
    except (AttributeError, TypeError, ValueError, KeyError):
        return None
    if (samples != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2") or bits != stored
            or bits not in (8, 16, 32) or signed not in (0, 1) or frames < 1
            or not (0 < rows < 65536 and 0 < cols < 65536) or not isinstance(data, bytes)):
        return None
    expected = frames * rows * cols * (bits // 8)
    if len(data) not in (expected, expected + expected % 2):
        return None
    dtype = f"<{'i' if signed else 'u'}{bits // 8}"
    arr = np.frombuffer(data, dtype=dtype, count=frames * rows * cols)
    return arr.reshape((frames, rows, cols) if frames > 1 else (rows, cols))


def decode_pixels(ds) -> np.ndarray:
    """Stored pixel values of ``ds`` (all frames), before any LUT.

    Raises
    ------
    DicomRejected
        ``"unsupported transfer syntax …"``, ``"truncated pixel data"`` or ``"cannot decode
        pixel data …"`` (never quoting element values, which may be PHI).
    """
    native = _native_pixels(ds)
    if native is not None:
        return native
    ts = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
    if not _UID.fullmatch(ts):  # a corrupt length swallows the next elements (names, UIDs…):
        ts = "(invalid transfer syntax UID)"  # never copy them into a reason
    try:
        return ds.pixel_array
    except NotImplementedError:
        raise DicomRejected(f"unsupported transfer syntax {ts}".strip())
    except (RuntimeError, ValueError, AttributeError) as exc:
        msg = str(exc).lower()
        if "less than expected" in msg or "truncat" in msg or "length of the pixel data" in msg:
            raise DicomRejected("truncated pixel data")
        if "transfer syntax uid" in msg or "no pixel data decoders" in msg or "plugin" in msg \
                and "unable to decode" not in msg:
            raise DicomRejected(f"unsupported transfer syntax {ts}".strip())
        raise DicomRejected(f"cannot decode pixel data {ts}".strip())
    except Exception:
        raise DicomRejected(f"cannot decode pixel data {ts}".strip())
    except BaseException as exc:
        # a decoder written in Rust (pylibjpeg-rle) panics on some corrupt data with pyo3's
        # PanicException, a BaseException that `except Exception` does not catch
        if type(exc).__name__ != "PanicException":
            raise
        raise DicomRejected(f"cannot decode pixel data {ts}".strip()) from None


def rescale_source(ds):
    """Dataset holding rescale values: the top level, else the shared functional groups."""
    if "RescaleSlope" in ds or "ModalityLUTSequence" in ds:
        return ds
    try:
        item = ds.SharedFunctionalGroupsSequence[0].PixelValueTransformationSequence[0]
    except (AttributeError, IndexError, KeyError):
        return ds
    import pydicom

    src = pydicom.Dataset()
    for key in ("RescaleSlope", "RescaleIntercept", "RescaleType"):
        if key in item:
            setattr(src, key, item.get(key))
    return src


def modality_values(ds, arr: np.ndarray) -> np.ndarray:
    """Modality LUT of decoded pixels; ``(frames, rows, cols[, 3])`` float32 (no LUT for colour)."""
    from pydicom.pixels import apply_modality_lut

    frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if samples == 1:
        arr = apply_modality_lut(arr, rescale_source(ds))
        if frames == 1 and arr.ndim == 2:
            arr = arr[None]
    elif frames == 1 and arr.ndim == 3:
        arr = arr[None]
    return np.asarray(arr, dtype=np.float32)


def read_modality_values(path) -> np.ndarray:
    """Decoded pixels after the Modality LUT, ``(frames, rows, cols[, 3])`` float32 (no VOI)."""
    with pydicom_quiet():
        ds = read_dataset(path)
        check_header(ds)
        return modality_values(ds, decode_pixels(ds))


def choose_window(ds, values: np.ndarray, window="auto") -> tuple[float, float]:
    """The VOI window to apply: the user's, else the file's first, else a preset, else min–max.

    Parameters
    ----------
    ds : pydicom.Dataset
    values : ndarray
        Modality values (used only for the min–max fallback).
    window : "auto" or (center, width)
    """
    if window != "auto" and window is not None:
        c, w = window
        return float(c), float(w)
    if int(ds.get("SamplesPerPixel", 1) or 1) == 3:
        bits = int(ds.get("BitsStored", 8) or 8)
        full = float(2**bits)
        return full / 2.0, full
    c, w = _file_window(ds)
    if c is not None:
        return c, w
    preset = WINDOW_PRESETS.get(str(ds.get("Modality", "")).upper())
    if preset:
        return preset
    return window_min_max(values)


def slice_position(ds) -> float | None:
    """Position of the slice along its normal (mm), from orientation and position; None if absent."""
    try:
        iop = [float(v) for v in ds.ImageOrientationPatient]
        ipp = [float(v) for v in ds.ImagePositionPatient]
    except (AttributeError, TypeError, ValueError):
        return None
    if len(iop) != 6 or len(ipp) != 3:
        return None
    return float(np.dot(_cross(iop[:3], iop[3:]), ipp))


def _cross(a, b) -> tuple:
    """``np.cross`` of two 3-vectors, the same float64 steps in the same order (a tenth of the
    time: this runs once per file)."""
    return a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]


def _floats(value, n):
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return out if len(out) == n and all(math.isfinite(v) for v in out) else None


def _frame_positions(ds, n_frames: int):
    """Position of each frame of a multi-frame object along its normal, or None."""
    if n_frames < 2:
        return None
    try:
        groups = ds.PerFrameFunctionalGroupsSequence
        shared = ds.get("SharedFunctionalGroupsSequence")
        iop = None
        if shared:
            iop = _floats(shared[0].PlaneOrientationSequence[0].ImageOrientationPatient, 6)
        out = []
        for g in groups:
            ipp = _floats(g.PlanePositionSequence[0].ImagePositionPatient, 3)
            if iop is None and "PlaneOrientationSequence" in g:
                iop = _floats(g.PlaneOrientationSequence[0].ImageOrientationPatient, 6)
            out.append(ipp)
        if iop is not None and len(out) == n_frames and all(p is not None for p in out):
            normal = np.cross(iop[:3], iop[3:])
            return [float(np.dot(normal, p)) for p in out]
    except (AttributeError, IndexError, KeyError, TypeError):
        pass
    offsets = ds.get("GridFrameOffsetVector")  # RT Dose: offsets along the normal
    base = slice_position(ds)
    if offsets is not None and base is not None:
        try:
            offsets = [float(v) for v in offsets]
        except (TypeError, ValueError):
            return None
        if len(offsets) == n_frames:
            return [base + o for o in offsets]
    return None


def read_header(path):
    """Header only (no pixels): ``(series_uid, slice_position, instance_number)`` for sorting."""
    import pydicom

    _check_file(path)
    with pydicom_quiet():
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True, defer_size=DEFER_BYTES)
        inst = ds.get("InstanceNumber")
        try:
            inst = int(inst)
        except (TypeError, ValueError):
            inst = None
        return str(ds.get("SeriesInstanceUID", "")), slice_position(ds), inst


# --------------------------------------------------------------------------- the pixel chain


@dataclasses.dataclass
class Geometry:
    """Where a file's pixels lie in the patient (only what series checks and volumes need)."""

    orientation: tuple | None  # ImageOrientationPatient (6 floats)
    position: tuple | None  # ImagePositionPatient (3 floats)
    pixel_spacing: tuple | None  # (row spacing, column spacing) in mm
    slice_spacing: float | None  # SpacingBetweenSlices, else SliceThickness
    frame_positions: list | None  # multi-frame: position of each frame along the normal


def _geometry(ds, n_frames) -> Geometry:
    spacing = None
    for key in ("SpacingBetweenSlices", "SliceThickness"):
        try:
            v = float(ds.get(key))
        except (TypeError, ValueError):
            continue
        if math.isfinite(v) and v > 0:
            spacing = v
            break
    return Geometry(orientation=_floats(ds.get("ImageOrientationPatient"), 6),
                    position=_floats(ds.get("ImagePositionPatient"), 3),
                    pixel_spacing=_floats(ds.get("PixelSpacing"), 2),
                    slice_spacing=spacing, frame_positions=_frame_positions(ds, n_frames))


def _voi_lut_item(ds):
    """The first VOI LUT Sequence item when it is usable (descriptor and data), else None."""
    seq = ds.get("VOILUTSequence")
    if not seq:
        return None
    item = seq[0]
    if item.get("LUTDescriptor") is None or item.get("LUTData") is None:
        return None
    return item


def _is_palette(ds) -> bool:
    return str(ds.get("PhotometricInterpretation", "")).strip() == "PALETTE COLOR"


class _Chain:
    """The pointwise part of the pixel chain for one object, applied to any subset of its pixels.

    Every step (Modality LUT, VOI window or VOI LUT, MONOCHROME1 inversion, luma) works on each
    pixel alone, so applying it to the few pixels a bilinear resize reads gives exactly the
    values of applying it to the whole image first.
    """

    def __init__(self, ds, raw: np.ndarray, window, color: str):
        self.ds = ds
        self.photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip()
        self.samples = int(ds.get("SamplesPerPixel", 1) or 1)
        self.palette = _is_palette(ds) and self.samples == 1
        self.color = color
        self.source = rescale_source(ds)
        self.rescale = _linear_rescale(self.source)
        self.lut_item = None
        self.lut_scale = None
        if self.palette:
            from pydicom.pixels import apply_color_lut

            self._apply_palette = lambda a: apply_color_lut(a, _dataset(ds))
            bits = 16 if self._apply_palette(raw.reshape(-1)[:1]).dtype.itemsize == 2 else 8
            full = float(2**bits)
            self.center, self.width, self.voi = full / 2.0, full, "colour"
            return
        if self.samples == 3:
            bits = int(ds.get("BitsStored", 8) or 8)
            full = float(2**bits)
            self.center, self.width, self.voi = full / 2.0, full, "colour"
            if window != "auto" and window is not None:
                self.center, self.width = (float(v) for v in window)
                self.voi = "window"
            return
        if (window == "auto" or window is None) and _voi_lut_item(ds) is not None:
            self.lut_item = _voi_lut_item(ds)
            desc = [int(v) for v in self.lut_item.LUTDescriptor]
            entries = desc[0] or 2**16
            self.lut_scale = float(2 ** desc[2] - 1)
            # the linear window that spans the LUT's input range (recorded in index.csv only)
            self.center, self.width, self.voi = desc[1] + entries / 2.0, float(entries), "lut"
            return
        if window == "auto" or window is None:
            c, w = _file_window(ds)
            if c is None:
                preset = WINDOW_PRESETS.get(str(ds.get("Modality", "")).upper())
                if preset:
                    c, w = preset
                else:
                    if self.source.get("ModalityLUTSequence"):  # not monotonic: all values
                        ends = self.modality(raw)
                    else:  # a linear rescale: the extremes map to the extremes
                        ends = self.modality(np.array([raw.min(), raw.max()], dtype=raw.dtype))
                    c, w = window_min_max(ends)
            self.center, self.width, self.voi = float(c), float(w), "window"
        else:
            self.center, self.width = (float(v) for v in window)
            self.voi = "window"

    def modality(self, raw: np.ndarray) -> np.ndarray:
        if self.rescale is None:  # a Modality LUT Sequence, or values pydicom must interpret
            from pydicom.pixels import apply_modality_lut

            return np.asarray(apply_modality_lut(raw, _dataset(self.source)),
                              dtype=np.float32)
        if not self.rescale:  # no rescale: the stored values are the modality values
            return np.asarray(raw, dtype=np.float32)
        slope, intercept = self.rescale  # the same float64 steps as apply_modality_lut
        values = raw.astype(np.float64) * slope
        values += intercept
        return values.astype(np.float32)

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        """Raw stored values ``(..., [3])`` → displayed values in [0, 1], ``(..., C)``."""
        if self.palette:
            raw = self._apply_palette(raw)
        if self.palette or self.samples == 3:
            rgb = np.asarray(raw, dtype=np.float32)
            if self.color == "rgb":
                return window_linear(rgb, self.center, self.width)
            return window_linear(to_grey(rgb), self.center, self.width)[..., None]
        if self.lut_item is not None:
            from pydicom.pixels import apply_modality_lut
            from pydicom.pixels.processing import apply_voi

            values = apply_modality_lut(raw, _dataset(self.source))
            y = (np.asarray(apply_voi(values, _dataset(self.ds)), dtype=np.float32)
                 / np.float32(self.lut_scale))
        else:
            y = window_linear(self.modality(raw), self.center, self.width)
        if self.photometric == "MONOCHROME1":
            y = invert(y)
        y = y[..., None]
        return np.repeat(y, 3, axis=-1) if self.color == "rgb" else y


def _linear_rescale(source):
    """What :func:`pydicom.pixels.apply_modality_lut` would do with ``source``, decided once:
    ``(slope, intercept)`` floats for its linear rescale, ``()`` when it returns the values
    unchanged, None when a Modality LUT Sequence or unusual values leave it to pydicom."""
    if source.get("ModalityLUTSequence"):
        return None
    if "RescaleSlope" not in source or "RescaleIntercept" not in source:
        return ()
    slope, intercept = source.RescaleSlope, source.RescaleIntercept
    if isinstance(slope, float) and isinstance(intercept, float):
        return float(slope), float(intercept)
    return None


def _file_window(ds):
    c = _first(ds.get("WindowCenter"))
    w = _first(ds.get("WindowWidth"))
    try:
        c, w = float(c), float(w)
        if w >= 1 and math.isfinite(c) and math.isfinite(w):
            return c, w
    except (TypeError, ValueError):
        pass
    return None, None


def _resize_through(chain, raw: np.ndarray, size) -> np.ndarray:
    """``resize_bilinear(chain(raw))`` per frame, reading only the pixels the resize needs.

    ``raw`` is ``(frames, rows, cols[, 3])``; the result ``(frames, H, W, C)`` float32 equals
    the full-image chain followed by :func:`resize_bilinear`, bit for bit.
    """
    out_h, out_w = int(size[0]), int(size[1])
    n, rows, cols = raw.shape[:3]
    if 4 * out_h * out_w >= rows * cols:  # upsampling or a small image: the plain way
        full = chain(raw)
        return np.stack([resize_bilinear(f, (out_h, out_w)) for f in full]).astype(np.float32)
    index, ylerp, xlerp = _corner_index(rows, cols, out_h, out_w)
    # the four neighbours of every output pixel, raw (one gather), then through the pointwise
    # chain at once: (4, frames, H, W[, 3])
    flat = raw.reshape(n, rows * cols, *raw.shape[3:])
    corners = np.moveaxis(np.take(flat, index, axis=1), 1, 0)
    tl, tr, bl, br = chain(corners)
    top_row = tl + (tr - tl) * xlerp
    bottom_row = bl + (br - bl) * xlerp
    return (top_row + (bottom_row - top_row) * ylerp).astype(np.float32, copy=False)


@functools.lru_cache(maxsize=64)
def _corner_index(rows: int, cols: int, out_h: int, out_w: int):
    """Flat indices ``(4, H, W)`` of the top-left, top-right, bottom-left and bottom-right
    neighbours of every output pixel, and the lerp weights shaped for ``(frames, H, W, C)``."""
    top, bottom, ylerp = _interp_weights(rows, out_h)
    left, right, xlerp = _interp_weights(cols, out_w)
    index = np.stack([top[:, None] * cols + left[None, :], top[:, None] * cols + right[None, :],
                      bottom[:, None] * cols + left[None, :],
                      bottom[:, None] * cols + right[None, :]])
    ylerp = ylerp[None, :, None, None]
    xlerp = xlerp[None, None, :, None]
    for a in (index, ylerp, xlerp):
        a.flags.writeable = False
    return index, ylerp, xlerp


def decoded_frames(ds, arr: np.ndarray) -> np.ndarray:
    """Pixels from :func:`decode_pixels` with a leading frame axis, checked against the header.

    Returns ``(frames, rows, cols)`` or ``(frames, rows, cols, 3)``; raises ``DicomRejected``
    when the pixel data holds another number of frames than ``NumberOfFrames`` declares.
    """
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if frames == 1 and arr.ndim == (3 if samples == 3 else 2):
        arr = arr[None]
    if arr.shape[0] != frames:  # pydicom infers frames from excess data when the header has none
        raise DicomRejected(f"pixel data holds {arr.shape[0]} frames, the header declares {frames}")
    return arr


def read_dicom(path, window="auto", *, color="grey", size=None) -> DicomImage:
    """Read one DICOM file through the pixel chain (resized only when ``size`` is given).

    Parameters
    ----------
    path : path-like
        A DICOM file.
    window : "auto" or (center, width)
        "auto": the file's VOI LUT Sequence (first item) when present, else its first
        WindowCenter/Width, else a modality preset, else min–max. A user window replaces all.
    color : {"grey", "rgb"}
        "grey": colour (RGB, YBR, palette) reduced to luma, frames ``(n, rows, cols)``.
        "rgb": three channels, frames ``(n, rows, cols, 3)`` (monochrome repeated).
    size : (int, int), optional
        Resize every frame (bilinear, half-pixel centres, no antialias); frames are then
        ``(n, H, W, C)`` with C = 1 or 3. Only the pixels the resize reads go through the chain.

    Returns
    -------
    DicomImage
        ``frames`` float32 in [0, 1]; ``geometry`` for series checks and volumes; ``voi`` says
        which VOI step ran ("window", "lut" or "colour").

    Raises
    ------
    DicomRejected
        With a short reason: not DICOM, no pixel data, image too large, unsupported transfer
        syntax, truncated pixel data, cannot decode.
    """
    if color not in COLOR_MODES:
        raise ValueError(f"Argument `color` must be one of {COLOR_MODES}. Received: color={color!r}")
    with pydicom_quiet(), _without_value_validation():
        return _read_dicom(Path(path), window, color, size)


def _check_output(ds, size, color) -> None:
    """Refuse an object whose resized frames would exceed the decoded-bytes limit: a small file
    of many tiny frames (1 x 1 pixel each) otherwise yields one ``size``-sized image per frame."""
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    nbytes = frames * int(size[0]) * int(size[1]) * (3 if color == "rgb" else 1) * 4
    if nbytes > MAX_PIXEL_BYTES:
        raise DicomRejected(f"too many frames (expected at most {MAX_PIXEL_BYTES} bytes of "
                            f"resized images, received {frames} frames = {nbytes} bytes)")


def _read_dicom(path: Path, window, color, size) -> DicomImage:
    ds = _Header(read_dataset(path))
    check_header(ds)
    if size is not None:
        _check_output(ds, size, color)
    raw = decoded_frames(ds, decode_pixels(ds))
    chain = _Chain(ds, raw, window, color)
    if size is not None:
        frames = _resize_through(chain, raw, size)
    else:
        frames = chain(raw)
        if color == "grey":
            frames = frames[..., 0]
    if not np.isfinite(frames).all():
        raise DicomRejected("non-finite pixel values (check RescaleSlope, RescaleIntercept "
                            "and the window)")
    inst = ds.get("InstanceNumber")
    try:
        inst = int(inst)
    except (TypeError, ValueError):
        inst = None
    patient = str(ds.get("PatientID", "") or "") or str(ds.get("PatientName", "") or "")
    return DicomImage(
        frames=frames,
        modality=str(ds.get("Modality", "") or "OT"),
        photometric=chain.photometric,
        window_center=chain.center,
        window_width=chain.width,
        rows=int(ds.Rows),
        columns=int(ds.Columns),
        patient_id=patient,
        study_uid=str(ds.get("StudyInstanceUID", "") or ""),
        series_uid=str(ds.get("SeriesInstanceUID", "") or ""),
        sop_uid=str(ds.get("SOPInstanceUID", "") or ""),
        slice_position=slice_position(ds),
        instance_number=inst,
        geometry=_geometry(ds, int(raw.shape[0])),
        voi=chain.voi,
        domain=_domain_facts(ds, raw, chain),
    )


def _domain_facts(ds, raw: np.ndarray, chain) -> dict:
    """Header facts and sampled modality values of one object (the dataset's domain)."""
    from medzoo.datasets import domain

    values = None
    if chain.samples == 1 and not chain.palette:
        few = np.unique(np.linspace(0, raw.shape[0] - 1, min(raw.shape[0], 16)).astype(int))
        frames = raw[few]  # many-frame objects: 16 frames tell the intensities well enough
        values = chain.modality(domain.sample_grid(frames))
    return domain.object_facts(ds, values)
