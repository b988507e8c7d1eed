"""Label maps from where annotations live: DICOM SEG, RTSTRUCT, NIfTI and ``.npy``.

One entry point, :func:`read_label_map`, turns an annotation file into a ``uint8`` array on a
series' own voxel grid (:class:`~medzoo.datasets.geometry.SeriesGeometry`, axis order
``(z, y, x)``) plus the class name of every voxel value. Volume ingest calls it for every
``mask`` in labels.csv that is not a ``.npy``; ``medzoo evaluate --reference`` calls it for
reference and predicted objects alike.

Rules shared by every source
----------------------------
* Segments (SEG) and ROIs (RTSTRUCT) become classes by name: ``segment_map`` maps a segment
  label, or its coded segmented property (code meaning, ``SCHEME:VALUE`` or ``VALUE``), to a
  class name, case-insensitively; unmapped names are their own class. A map value of ``-``
  leaves that segment out. A name that maps to no class in ``class_names`` is an error, never
  silently dropped.
* Overlaps: where several classes claim a voxel, the class that comes **later in the class
  list** wins (list "lesion" after "lung" and a nodule inside a lung stays a nodule).
* Fractional SEGs are thresholded at 0.5: a voxel belongs to a segment when its stored fraction
  is at least half of MaximumFractionalValue. BINARY, FRACTIONAL and LABELMAP SEGs are read.
* SEG frames are placed through the source SOP Instance UIDs each frame references; a SEG
  without such references is placed by each frame's ImagePositionPatient (within half a slice
  spacing of a slice, same orientation).
* Bad input raises :class:`AnnotationError` with a one-line reason that names no identifier
  (no UID, no patient data), so it can go to rejected.csv as is.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import warnings
from pathlib import Path

import numpy as np

#: Fractional segments: a voxel is in the segment when its fraction is at least this.
FRACTION_THRESHOLD = 0.5
#: A segment_map value that leaves the segment out.
SKIP = "-"
_SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
_RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"



@contextlib.contextmanager
def _silenced():
    """pydicom/highdicom warnings off: they quote element values, which may be PHI (UIDs)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


class AnnotationError(ValueError):
    """An annotation that cannot become a label map; the message is one line, without PHI."""


@dataclasses.dataclass
class LabelMap:
    """A label map on a series' grid.

    Attributes
    ----------
    array : numpy.ndarray
        ``uint8`` of shape ``(D, H, W)`` (the series' array order); value ``v`` is ``classes[v]``.
    classes : list of str
        ``classes[0] == "background"``.
    warnings : list of str
        Sound-but-notable findings (e.g. a segment with no pixels), one line each.
    """

    array: np.ndarray
    classes: list
    warnings: list = dataclasses.field(default_factory=list)


def parse_segment_map(text: str | None) -> dict:
    """``"Left Lung=lung,Right Lung=lung,Nodule=lesion"`` → ``{"Left Lung": "lung", ...}``.

    Raises
    ------
    ValueError
        An item without ``=`` or with an empty side.
    """
    if not text:
        return {}
    out = {}
    for item in text.split(","):
        if not item.strip():
            continue
        name, sep, cls = item.partition("=")
        if not sep or not name.strip() or not cls.strip():
            raise ValueError("Argument `--segment-map` must be NAME=CLASS items separated by "
                             f"commas. Received: {item.strip()!r}")
        out[name.strip()] = cls.strip()
    return out


def read_label_map(path, geometry, *, class_names=None, segment_map=None) -> LabelMap:
    """Read an annotation file as a label map on ``geometry``'s voxel grid.

    Parameters
    ----------
    path : str or Path
        ``.nii``/``.nii.gz`` (NIfTI label map), ``.npy`` (integer array in the series' array
        order), or a DICOM SEG or RTSTRUCT file (any other suffix).
    geometry : medzoo.datasets.geometry.SeriesGeometry
        The series the annotation belongs to.
    class_names : sequence of str, optional
        The class list, ``"background"`` first (prepended when missing). Voxel value ``v`` of
        the result is ``class_names[v]``. When None, the classes are ``background`` followed by
        the (mapped) segment/ROI names in segment order, or ``label<v>`` for NIfTI/npy values.
    segment_map : dict or str, optional
        Segment/ROI name or coded property → class name (see the module docstring); for
        NIfTI/npy, label value (as text) → class name. A string is parsed by
        :func:`parse_segment_map`.

    Returns
    -------
    LabelMap

    Raises
    ------
    AnnotationError
        Unreadable, truncated or non-conformant object, references to images not in the
        series, a grid that does not match the series, unknown segment names, bad contours.
    """
    path = Path(path)
    classes = _normalise_classes(class_names)
    mapping = (parse_segment_map(segment_map) if isinstance(segment_map, str)
               else dict(segment_map or {}))
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        from medzoo.datasets import nifti

        values = nifti.read_nifti_labels(path, geometry)
        return _value_label_map(values, classes, mapping)
    if name.endswith(".npy"):
        try:
            values = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise AnnotationError(f"label map unreadable (expected a .npy array): {e}") from None
        if values.shape != tuple(geometry.shape):
            raise AnnotationError(f"label map shape mismatch (expected {_shape(geometry.shape)} "
                                  f"as the series, received {_shape(values.shape)})")
        return _value_label_map(values, classes, mapping)
    ds = _read_dicom(path)
    sop_class = str(ds.get("SOPClassUID", ""))
    modality = str(ds.get("Modality", ""))
    if sop_class == _SEG_SOP_CLASS or modality == "SEG":
        masks, names, notes = _read_seg(path, geometry)
        return _combine(masks, names, classes, mapping, geometry.shape, notes)
    if sop_class == _RTSTRUCT_SOP_CLASS or modality == "RTSTRUCT":
        return _read_rtstruct(ds, geometry, classes, mapping)
    raise AnnotationError("not an annotation (expected a DICOM SEG or RTSTRUCT, .nii, .nii.gz "
                          f"or .npy; received a DICOM object of modality {modality or '?'})")


def _read_rtstruct(ds, geometry, classes, mapping) -> LabelMap:
    """ROIs resolved to classes first, so ROIs left out (``NAME=-``) are never rasterised."""
    from medzoo.datasets import rtstruct

    rois = rtstruct.roi_names(ds)
    rtstruct.check_references(ds, geometry)
    names = [keys for _, keys in rois]
    resolved, _ = _resolve(names, classes, mapping)
    masks = [rtstruct.rasterise_roi(ds, number, keys[0], geometry) if c is not None else None
             for (number, keys), c in zip(rois, resolved)]
    return _combine(masks, names, classes, mapping, geometry.shape, [])


# -------------------------------------------------------------------------- class resolution
def _normalise_classes(class_names):
    if class_names is None:
        return None
    classes = [str(c) for c in class_names]
    if not classes or classes[0] != "background":
        classes = ["background", *classes]
    if len(set(classes)) != len(classes):
        raise ValueError(f"class names must be unique. Received: {classes}")
    if len(classes) > 256:
        raise ValueError(f"at most 255 classes fit a uint8 label map. Received: {len(classes) - 1}")
    return classes


def _resolve(names: list, classes, mapping: dict) -> tuple[list, list]:
    """Class name (or None for skipped) of every segment, and the final class list."""
    lowered = {k.lower(): v for k, v in mapping.items()}
    resolved = []
    for keys in names:
        # keys: the segment label first, then its coded property forms
        hit = next((lowered[k.lower()] for k in keys if k and k.lower() in lowered), None)
        resolved.append(None if hit == SKIP else (hit or keys[0]))
    if classes is None:
        classes = ["background"]
        for c in resolved:
            if c is not None and c not in classes:
                classes.append(c)
        if len(classes) > 256:
            raise AnnotationError(f"too many classes for a uint8 label map ({len(classes) - 1})")
        return resolved, classes
    for keys, c in zip(names, resolved):
        if c is not None and c not in classes:
            how = f"mapped to {c!r}" if c != keys[0] else "has no mapping"
            raise AnnotationError(
                f"segment {keys[0]!r} {how} and is not a class (expected one of "
                f"{classes[1:]}; add it to --segment-map NAME=CLASS or NAME=- to leave it out)")
    return resolved, classes


def _combine(masks, names, classes, mapping, shape, notes) -> LabelMap:
    """Paint boolean segment masks into one label map, later classes winning overlaps."""
    resolved, classes = _resolve(names, classes, mapping)
    out = np.zeros(tuple(shape), np.uint8)
    order = sorted((classes.index(c), n) for n, c in enumerate(resolved) if c is not None)
    for value, n in order:
        out[masks[n]] = value
    warnings = list(notes)
    for keys, c, m in zip(names, resolved, masks):
        if c is not None and not np.any(m):
            warnings.append(f"segment {keys[0]!r} has no voxels on this series")
    return LabelMap(out, classes, warnings)


def _value_label_map(values: np.ndarray, classes, mapping: dict) -> LabelMap:
    """An integer label array (NIfTI/npy) with class names from ``classes`` or ``mapping``."""
    values = np.asarray(values)
    if values.dtype.kind == "f":
        if not np.all(np.isfinite(values)) or np.any(values != np.round(values)):
            raise AnnotationError("label map holds non-integer values (expected class indices)")
        values = values.astype(np.int64)
    elif values.dtype.kind not in "biu":
        raise AnnotationError(f"label map must hold integers. Received dtype {values.dtype}")
    if values.size and values.min() < 0:
        raise AnnotationError(f"label map holds negative values (minimum {int(values.min())})")
    present = [int(v) for v in np.unique(values) if v != 0]
    # only the keys that are label values apply (a shared map may also name SEG segments)
    mapping = {k: v for k, v in mapping.items() if k.strip().isdigit()}
    if not mapping:
        if classes is None:
            top = max(present, default=0)
            if top > 255:
                raise AnnotationError(f"label value {top} does not fit a uint8 label map")
            return LabelMap(values.astype(np.uint8),
                            ["background", *(f"label{v}" for v in range(1, top + 1))])
        beyond = [v for v in present if v >= len(classes)]
        if beyond:
            raise AnnotationError(f"label value {beyond[0]} has no class (expected values below "
                                  f"{len(classes)} for classes {classes})")
        return LabelMap(values.astype(np.uint8), classes)
    if classes is not None:  # unmapped values keep their own class name
        mapping = {**{str(v): classes[v] for v in present if v < len(classes)}, **mapping}
    names = [(str(v),) for v in present]
    masks = [values == v for v in present]
    return _combine(masks, names, classes, mapping, values.shape, [])


# ------------------------------------------------------------------------------ references
def referenced_series(ds, series_of_sop: dict | None = None) -> set:
    """Series UIDs a SEG / RTSTRUCT references: named in its Referenced Series Sequence (SEG),
    its RT Referenced Series Sequence (RTSTRUCT), or through the images its frames / contours
    reference (``series_of_sop``: SOP Instance UID → Series Instance UID)."""
    series = {str(s.SeriesInstanceUID) for s in ds.get("ReferencedSeriesSequence", [])
              if "SeriesInstanceUID" in s}
    for frame in ds.get("ReferencedFrameOfReferenceSequence", []):
        for study in frame.get("RTReferencedStudySequence", []):
            series |= {str(s.SeriesInstanceUID) for s in study.get("RTReferencedSeriesSequence", [])
                       if "SeriesInstanceUID" in s}
    sops = set()
    for item in ds.get("PerFrameFunctionalGroupsSequence", []):
        for der in item.get("DerivationImageSequence", []):
            sops |= {str(x.ReferencedSOPInstanceUID) for x in der.get("SourceImageSequence", [])}
    for roi in ds.get("ROIContourSequence", []):
        for contour in roi.get("ContourSequence", []):
            sops |= {str(x.ReferencedSOPInstanceUID)
                     for x in contour.get("ContourImageSequence", [])}
    series_of_sop = series_of_sop or {}
    return series | {series_of_sop[u] for u in sops if u in series_of_sop}


# ------------------------------------------------------------------------------ DICOM SEG
def _read_dicom(path: Path):
    import pydicom

    try:
        with _silenced():
            return pydicom.dcmread(str(path), stop_before_pixels=True)  # SEG pixels: highdicom
    except FileNotFoundError:
        raise AnnotationError("annotation file missing") from None
    except Exception as e:  # noqa: BLE001 - pydicom raises many types for broken files
        raise AnnotationError(f"annotation unreadable (expected DICOM, NIfTI or .npy): "
                              f"{type(e).__name__}") from None


def _code_keys(code) -> list:
    if code is None:
        return []
    meaning, scheme, value = (str(getattr(code, a, "") or "") for a in
                              ("meaning", "scheme_designator", "value"))
    return [meaning, f"{scheme}:{value}" if scheme and value else "", value]


def open_seg(path: Path):
    """``(highdicom Segmentation, segment numbers, name keys per segment)`` of a SEG file.

    Raises
    ------
    AnnotationError
        Unreadable or non-conformant, or no segments.
    """
    try:
        import highdicom as hd
    except ImportError:
        raise AnnotationError("reading DICOM SEG needs highdicom (pip install "
                              "'medzoo[seg]')") from None

    try:
        with _silenced():
            seg = hd.seg.segread(str(path))
            numbers = list(seg.segment_numbers)
            descriptions = [seg.get_segment_description(n) for n in numbers]
    except Exception as e:  # noqa: BLE001 - truncated/non-conformant objects fail in many ways
        raise AnnotationError(f"DICOM SEG unreadable or non-conformant: {_short(e)}") from None
    if not numbers:
        raise AnnotationError("DICOM SEG has no segments")
    names = [(str(d.segment_label), *_code_keys(d.segmented_property_type)) for d in descriptions]
    return seg, numbers, names


def _read_seg(path: Path, geometry):
    """Boolean masks (one per segment, on the series grid), their name keys and notes."""
    import highdicom as hd

    seg, numbers, names = open_seg(path)
    if (int(seg.Rows), int(seg.Columns)) != (geometry.rows, geometry.columns):
        raise AnnotationError(f"SEG frames are {int(seg.Rows)}x{int(seg.Columns)}, the series' "
                              f"images {geometry.rows}x{geometry.columns}")
    _check_frame_of_reference(seg, geometry, "SEG")
    refs = _frame_references(seg)
    notes = []
    try:
        with _silenced():
            if refs is not None:
                unknown = set(refs) - set(geometry.sop_uids)
                if unknown:
                    raise AnnotationError(f"SEG references {len(unknown)} image(s) not in the "
                                          f"series ({len(geometry.sop_uids)} slices)")
                pixels = seg.get_pixels_by_source_instance(
                    list(geometry.sop_uids), segment_numbers=numbers,
                    ignore_spatial_locations=True, assert_missing_frames_are_empty=True,
                    skip_overlap_checks=True, rescale_fractional=True, dtype=np.float32)
            else:
                pixels = _pixels_by_position(seg, geometry, numbers)
                notes.append("SEG frames placed by plane position (no source image references)")
    except AnnotationError:
        raise
    except Exception as e:  # noqa: BLE001
        raise AnnotationError(f"DICOM SEG frames unreadable: {_short(e)}") from None
    pixels = np.asarray(pixels)
    if seg.segmentation_type == hd.seg.SegmentationTypeValues.FRACTIONAL:
        masks = pixels >= FRACTION_THRESHOLD
    else:
        masks = pixels > 0
    return [masks[..., n] for n in range(len(numbers))], names, notes


def _frame_references(seg):
    """Referenced source SOP Instance UID of every frame, or None when frames carry none."""
    refs = []
    for frame in seg.get("PerFrameFunctionalGroupsSequence", []):
        uids = [str(src.ReferencedSOPInstanceUID)
                for der in frame.get("DerivationImageSequence", [])
                for src in der.get("SourceImageSequence", [])
                if "ReferencedSOPInstanceUID" in src]
        if not uids:
            return None
        refs.extend(uids)
    return refs or None


def _pixels_by_position(seg, geometry, numbers):
    """Frames placed on slices by ImagePositionPatient (SEGs without source references)."""
    shared = seg.get("SharedFunctionalGroupsSequence", [None])[0]
    orient = None
    if shared is not None and "PlaneOrientationSequence" in shared:
        orient = [float(v) for v in shared.PlaneOrientationSequence[0].ImageOrientationPatient]
    if orient is None or max(abs(a - b) for a, b in zip(orient, geometry.orientation)) > 1e-3:
        raise AnnotationError("SEG frames carry neither source image references nor the "
                              "series' plane orientation")
    frames = np.asarray(seg.pixel_array)
    if frames.ndim == 2:
        frames = frames[None]
    pos = np.asarray(geometry.positions, float)
    out = np.zeros((*geometry.shape, len(numbers)), np.float32)
    tol = max(0.5 * geometry.slice_spacing, 0.01) if len(pos) > 1 else 0.5
    max_frac = float(seg.get("MaximumFractionalValue", 1) or 1)
    fractional = str(seg.get("SegmentationType", "")) == "FRACTIONAL"
    labelmap = str(seg.get("SegmentationType", "")) == "LABELMAP"
    for f, item in enumerate(seg.PerFrameFunctionalGroupsSequence):
        ipp = np.asarray(item.PlanePositionSequence[0].ImagePositionPatient, float)
        dist = np.linalg.norm(pos - ipp, axis=1)
        k = int(np.argmin(dist))
        if dist[k] > tol:
            raise AnnotationError(f"SEG frame {f + 1} lies {dist[k]:.2f} mm from the nearest "
                                  "slice of the series")
        frame = frames[f].astype(np.float32)
        if labelmap:
            for s, n in enumerate(numbers):
                out[k, :, :, s] = np.maximum(out[k, :, :, s], frame == n)
            continue
        n = int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        if n in numbers:
            s = numbers.index(n)
            out[k, :, :, s] = frame / max_frac if fractional else frame
    return out


def _check_frame_of_reference(ds, geometry, what: str):
    uid = str(ds.get("FrameOfReferenceUID", "") or "")
    if uid and geometry.frame_of_reference_uid and uid != geometry.frame_of_reference_uid:
        raise AnnotationError(f"{what} is in another frame of reference than the series "
                              "(FrameOfReferenceUID differs)")


def _shape(shape) -> str:
    return "x".join(str(int(s)) for s in shape) or "scalar"


def _short(e: Exception) -> str:
    """The first line of an exception, UID-like values scrubbed (they may identify a study)."""
    text = str(e).splitlines()[0][:160] if str(e) else ""
    text = re.sub(r"\d+(?:\.\d+){3,}", "<uid>", text)
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
