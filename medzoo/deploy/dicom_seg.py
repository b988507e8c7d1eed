"""DICOM Segmentation objects (BINARY, one "Lesion" segment) for a segmentation model's masks.

A SEG is the one file ``medzoo predict`` writes that carries identifiers: to be attached to the
study it segments, it must repeat the source study's Patient and Study modules (name, ID, birth
date, Study Instance UID, …) and reference the source images by SOP Instance UID (DICOM PS3.3
A.51). That is the purpose of the object, so the exception is deliberate and confined to
``out/seg/``; nothing of it is copied into medzoo's CSV, JSON or Markdown outputs, and the SEG's
own file name is a counter (``series-NNN.dcm``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medzoo import __version__, fsio

SEGMENT_LABEL = "Lesion"


def read_source_headers(paths) -> list:
    """Source datasets without pixel data (what highdicom needs to reference them)."""
    import pydicom

    from medzoo.datasets.dicom import pydicom_quiet

    with pydicom_quiet():
        return [pydicom.dcmread(str(p), stop_before_pixels=True) for p in paths]


def build_segmentation(source_datasets, masks: np.ndarray, *, model_name: str, model_version,
                       series_number: int = 1):
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
        series_instance_uid=hd.UID(),
        series_number=int(series_number),
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="medzoo",
        manufacturer_model_name=f"medzoo {model_name}",
        software_versions=f"medzoo {__version__}; model {model_name} v{model_version}",
        device_serial_number="0",
        omit_empty_frames=False,
        content_label="LESION",
        content_description=f"Automatic lesion segmentation, medzoo {model_name} v{model_version}",
        series_description=f"medzoo {model_name} v{model_version} lesion (research use)",
    )


def write_segmentation(path, source_paths, masks: np.ndarray, *, model_name: str, model_version,
                       series_number: int = 1) -> Path:
    """Build the SEG (see :func:`build_segmentation`) and write it atomically to ``path``."""
    seg = build_segmentation(read_source_headers(source_paths), masks, model_name=model_name,
                             model_version=model_version, series_number=series_number)
    with fsio.atomic_path(path, suffix=".dcm") as tmp:
        seg.save_as(str(tmp), enforce_file_format=True)
    return Path(path)
