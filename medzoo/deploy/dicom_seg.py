"""DICOM Segmentation objects (BINARY, one "Lesion" segment) for a segmentation model's masks.

A SEG is the one file ``medzoo predict`` writes that carries identifiers: to be attached to the
study it segments, it must repeat the source study's Patient and Study modules (name, ID, birth
date, Study Instance UID, …) and reference the source images by SOP Instance UID (DICOM PS3.3
A.51). That is the purpose of the object, so the exception is deliberate and confined to
``out/seg/``; nothing of it is copied into medzoo's CSV, JSON or Markdown outputs, and the SEG's
own file name is a counter (``series-NNN.dcm``).

Sources without a frame of reference, orientation, positions or pixel spacing (legacy exports,
secondary captures, projection and hand-held images) cannot have their frames placed in the
patient; they get one SEG per image without plane positions instead (``series-NNN-K.dcm``, see
:func:`build_segmentations`), and where no valid SEG can be made at all,
:class:`SegmentationNotWritable` names the missing attribute. Every SEG written passes dicom3tools'
``dciodvfy`` without errors (docs/conformance.md).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medzoo import __version__, fsio

SEGMENT_LABEL = "Lesion"

# What a SEG needs of its sources to reference them (PS3.3 C.7.6.16.2.6 Derivation Image):
# without one of these no SEG can be written at all.
REFERENCE_ATTRIBUTES = ("SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID")
# What one multi-frame SEG on the source grid needs of single-frame sources: a shared frame of
# reference, a position and orientation per frame (Plane Position / Orientation functional
# groups) and the pixel measures (spacing and thickness) that place its pixels in millimetres.
GEOMETRY_ATTRIBUTES = ("FrameOfReferenceUID", "ImageOrientationPatient", "ImagePositionPatient",
                       "PixelSpacing", "SliceThickness")
_SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


class SegmentationNotWritable(ValueError):
    """No valid SEG can be made of these sources; the message names the missing attribute."""


@dataclass(frozen=True)
class WrittenSegmentation:
    """What :func:`write_segmentation` wrote.

    Attributes
    ----------
    paths : list of Path
        One SEG on the source grid, or one per source image (see ``missing``).
    missing : tuple of str
        Geometry attributes some source image lacks (names from :data:`GEOMETRY_ATTRIBUTES`);
        empty when the SEG is one multi-frame object with plane positions.
    """

    paths: list
    missing: tuple


def _has_value(ds, keyword: str) -> bool:
    return keyword in ds and ds[keyword].value not in (None, "", b"")


def missing_references(source_datasets) -> list[str]:
    """Attributes of :data:`REFERENCE_ATTRIBUTES` that some source image lacks."""
    return [k for k in REFERENCE_ATTRIBUTES
            if not all(_has_value(ds, k) for ds in source_datasets)]


def missing_geometry(source_datasets) -> list[str]:
    """Attributes of :data:`GEOMETRY_ATTRIBUTES` that some single-frame source image lacks.

    Empty: the sources can have one multi-frame SEG with plane positions. A multi-frame source
    (an enhanced image) carries its geometry in functional groups; only its frame of reference
    is checked here, highdicom reads the rest.
    """
    if any(_frames(ds) > 1 for ds in source_datasets):
        return [k for k in ("FrameOfReferenceUID", "SharedFunctionalGroupsSequence")
                if not all(_has_value(ds, k) for ds in source_datasets)]
    missing = [k for k in GEOMETRY_ATTRIBUTES
               if not all(_has_value(ds, k) for ds in source_datasets)]
    if not missing:
        orientations = {tuple(float(v) for v in ds.ImageOrientationPatient)
                        for ds in source_datasets}
        frames = {str(ds.FrameOfReferenceUID) for ds in source_datasets}
        if len(orientations) > 1:
            missing.append("ImageOrientationPatient")  # not one shared orientation
        if len(frames) > 1:
            missing.append("FrameOfReferenceUID")  # not one shared frame of reference
    return missing


def _frames(ds) -> int:
    try:
        return int(ds.get("NumberOfFrames") or 1)
    except (TypeError, ValueError):
        return 1


def read_source_headers(paths) -> list:
    """Source datasets without pixel data (what highdicom needs to reference them)."""
    import pydicom

    from medzoo.datasets.dicom import pydicom_quiet

    with pydicom_quiet():
        return [pydicom.dcmread(str(p), stop_before_pixels=True) for p in paths]


def build_segmentation(source_datasets, masks: np.ndarray, *, model_name: str, model_version,
                       series_number: int = 1, series_instance_uid=None, instance_number: int = 1):
    """A ``highdicom.seg.Segmentation`` of ``masks`` over ``source_datasets``.

    Parameters
    ----------
    source_datasets : list of pydicom.Dataset
        Single-frame images of one series with equal rows × columns, in the order of ``masks``
        (or one multi-frame image whose frames are the masks' first axis).
    masks : ndarray of bool, (n, rows, cols)
        The thresholded lesion mask of every source frame at the source resolution.
    model_name, model_version :
        Recorded as the segment's algorithm identification and the SEG's series description.
    series_number : int
    series_instance_uid : str, optional
        The SEG's series (a new UID by default); SEGs of one source series written one per
        image share it.
    instance_number : int

    Returns
    -------
    highdicom.seg.Segmentation
        Every frame is kept (``omit_empty_frames=False``), so the SEG has one frame per source
        frame and says "looked, found nothing" where a frame is empty.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    algorithm = hd.AlgorithmIdentificationSequence(
        name=f"medzoo {model_name}", version=str(model_version),
        family=codes.DCM.ArtificialIntelligence, source="medzoo")
    segment = hd.seg.SegmentDescription(
        segment_number=1, segment_label=SEGMENT_LABEL,
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Lesion,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm)
    masks = np.asarray(masks, dtype=bool)
    return hd.seg.Segmentation(
        source_images=list(source_datasets),
        pixel_array=masks.astype(np.uint8),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[segment],
        series_instance_uid=series_instance_uid or hd.UID(),
        series_number=int(series_number),
        sop_instance_uid=hd.UID(),
        instance_number=int(instance_number),
        manufacturer="medzoo",
        manufacturer_model_name=f"medzoo {model_name}",
        software_versions=f"medzoo {__version__}; model {model_name} v{model_version}",
        device_serial_number="0",
        omit_empty_frames=False,
        content_label="LESION",
        content_description=f"Automatic lesion segmentation, medzoo {model_name} v{model_version}",
        series_description=f"medzoo {model_name} v{model_version} lesion (research use)",
    )


def build_segmentations(source_datasets, masks: np.ndarray, *, model_name: str, model_version,
                        series_number: int = 1) -> tuple[list, list[str]]:
    """The SEG objects of ``masks`` over ``source_datasets``, as the sources' geometry allows.

    Sources with a frame of reference, orientation, positions and pixel measures (see
    :func:`missing_geometry`) get one multi-frame SEG on their grid
    (:func:`build_segmentation`). Sources without them — legacy exports, secondary captures —
    cannot have their frames placed in a patient coordinate system, so each single-frame source
    image gets a SEG of its own, without plane positions, that references it through the
    Derivation Image functional group (PS3.3 A.51: a SEG needs a frame of reference only when
    it has plane positions). Those SEGs share one series; the frame of reference and pixel
    measures are kept where the sources have them.

    Returns
    -------
    (list of highdicom.seg.Segmentation, list of str)
        The SEGs and the geometry attributes the sources lack (empty for one SEG on the grid).

    Raises
    ------
    SegmentationNotWritable
        Sources that cannot be referenced (no SOP Instance UID, …), or a multi-frame source
        without a frame of reference, whose frames no SEG could tell apart.
    """
    import highdicom as hd

    sources = list(source_datasets)
    lacking = missing_references(sources)
    if lacking:
        raise SegmentationNotWritable(
            f"the source images lack {', '.join(lacking)} (a SEG references its source images "
            "by these)")
    missing = missing_geometry(sources)
    common = dict(model_name=model_name, model_version=model_version,
                  series_number=series_number)
    if not missing:
        return [build_segmentation(sources, masks, **common)], []
    if any(_frames(ds) > 1 for ds in sources):
        raise SegmentationNotWritable(
            f"the multi-frame source image lacks {', '.join(missing)} (required to place its "
            f"{_frames(sources[0])} frames in one SEG)")
    series_uid = hd.UID()
    segs = []
    for n, (ds, mask) in enumerate(zip(sources, np.asarray(masks)), start=1):
        source, original_class = _without_geometry(ds)
        seg = build_segmentation([source], mask[None], series_instance_uid=series_uid,
                                 instance_number=n, **common)
        if original_class != source.SOPClassUID:  # reference the source as what it is
            for element in seg.iterall():
                if element.keyword == "ReferencedSOPClassUID" \
                        and element.value == source.SOPClassUID:
                    element.value = original_class
        # General Image: Type 2C where there is no plane orientation (PS3.3 C.7.6.1)
        seg.PatientOrientation = ds.get("PatientOrientation", "")
        segs.append(seg)
    return segs, missing


def _without_geometry(ds):
    """A copy of a source header that highdicom segments without a coordinate system.

    Positions and orientation are dropped (a frame cannot be placed without all of them); pixel
    spacing without a slice thickness is dropped too (incomplete pixel measures do not read
    back). A source without a frame of reference whose IOD demands one (a legacy CT) is
    presented as a secondary capture, whose IOD has none; the caller restores its SOP Class in
    the SEG's references. Returns ``(header copy, the source's SOP Class UID)``.
    """
    source = copy.deepcopy(ds)
    for keyword in ("ImagePositionPatient", "ImageOrientationPatient"):
        if keyword in source:
            del source[keyword]
    if not (_has_value(source, "PixelSpacing") and _has_value(source, "SliceThickness")):
        for keyword in ("PixelSpacing", "SliceThickness", "SpacingBetweenSlices"):
            if keyword in source:
                del source[keyword]
    if not _has_value(source, "FrameOfReferenceUID"):
        for keyword in ("FrameOfReferenceUID", "PositionReferenceIndicator"):
            if keyword in source:
                del source[keyword]
        source.SOPClassUID = _SECONDARY_CAPTURE
    return source, str(ds.SOPClassUID)


def write_segmentation(path, source_paths, masks: np.ndarray, *, model_name: str, model_version,
                       series_number: int = 1) -> WrittenSegmentation:
    """Build the SEG(s) (see :func:`build_segmentations`) and write them atomically.

    One SEG goes to ``path``; SEGs written one per source image go to ``STEM-K.dcm`` beside it
    (K = the image's position in ``source_paths``, from 1).

    Raises
    ------
    SegmentationNotWritable
        When no valid SEG can be made; the message names the missing attribute.
    """
    path = Path(path)
    segs, missing = build_segmentations(read_source_headers(source_paths), masks,
                                        model_name=model_name, model_version=model_version,
                                        series_number=series_number)
    paths = ([path] if len(segs) == 1 and not missing else
             [path.with_name(f"{path.stem}-{k}{path.suffix}") for k in range(1, len(segs) + 1)])
    for seg, target in zip(segs, paths):
        with fsio.atomic_path(target, suffix=".dcm") as tmp:
            seg.save_as(str(tmp), enforce_file_format=True)
    return WrittenSegmentation(paths=paths, missing=tuple(missing))
