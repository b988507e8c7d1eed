"""Volume predict's DICOM SEG: one multi-frame BINARY segmentation per series, a segment per
foreground class, coded with SNOMED CT where the class name is known."""

from __future__ import annotations

import numpy as np

from medzoo import __version__
from medzoo.deploy.volume_findings import is_lesion_class

__all__ = ["segment_codes", "build_multiclass_segmentation"]


def segment_codes(name: str):
    """SNOMED category and type of a structure class (a generic tissue code when unknown)."""
    from pydicom.sr.codedict import codes

    known = {"lung": codes.SCT.Lung, "lungs": codes.SCT.Lung, "heart": codes.SCT.Heart,
             "mediastinum": codes.SCT.Mediastinum, "liver": codes.SCT.Liver,
             "kidney": codes.SCT.Kidney, "organ": codes.SCT.Organ}
    key = name.lower().replace("_", " ").strip()
    if is_lesion_class(key):
        kind = codes.SCT.Nodule if "nodule" in key else codes.SCT.Lesion
        return codes.SCT.MorphologicallyAbnormalStructure, kind
    if key in known:
        return codes.SCT.AnatomicalStructure, known[key]
    return codes.SCT.Tissue, codes.SCT.Tissue


def build_multiclass_segmentation(source_datasets, labels: np.ndarray, classes, *,
                                  model_name: str, model_version, series_number: int = 1):
    """A BINARY ``highdicom.seg.Segmentation`` with one segment per foreground class.

    ``source_datasets`` are the series' slices in the order of ``labels``' first axis;
    ``labels`` holds class indices (0 background); every frame is kept, so each segment has
    one frame per source slice.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    algorithm = hd.AlgorithmIdentificationSequence(
        name=f"medzoo {model_name}", version=str(model_version),
        family=codes.DCM.ArtificialIntelligence, source="medzoo")
    segments = []
    for number, name in enumerate(classes[1:], start=1):
        category, kind = segment_codes(name)
        segments.append(hd.seg.SegmentDescription(
            segment_number=number, segment_label=str(name)[:64],
            segmented_property_category=category, segmented_property_type=kind,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm))
    stacked = np.stack([labels == number for number in range(1, len(classes))], axis=-1)
    return hd.seg.Segmentation(
        source_images=list(source_datasets), pixel_array=stacked.astype(np.uint8),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=segments, series_instance_uid=hd.UID(),
        series_number=int(series_number), sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer="medzoo", manufacturer_model_name=f"medzoo {model_name}"[:64],
        software_versions=f"medzoo {__version__}; model {model_name} v{model_version}"[:64],
        device_serial_number="0", omit_empty_frames=False, content_label="STRUCTURES",
        content_description=f"Automatic segmentation, medzoo {model_name} v{model_version}"[:64],
        series_description=f"medzoo {model_name} v{model_version} (research use)"[:64])
