"""Per-modality header attributes that make a synthetic image conformant to its IOD.

A CT, MR, CR or US image needs more than pixels, geometry and identifiers to pass a DICOM IOD
validator (dicom3tools' ``dciodvfy``): the modality's image module asks for acquisition
attributes (CT ``KVP``, MR ``EchoTime``, CR ``ViewPosition``, …), some of them Type 2 (present,
possibly empty), some Type 1 (present with a value). :func:`modality_attributes` returns them
for one modality, with plausible values of a routine acquisition, so that every writer of
synthetic images (``synth.py`` for slices, ``synth_volumes.py`` for volumes) writes the same
ones. The values are constants: they do not depend on a seed and carry nothing identifying.

What is checked and how is described in ``docs/conformance.md``.
"""

from __future__ import annotations

__all__ = ["modality_attributes", "FRAME_OF_REFERENCE_MODALITIES"]

# IODs that hold a Frame of Reference module. The CR IOD has none: a CR image carries neither
# FrameOfReferenceUID nor patient-based geometry (it is a projection, oriented by
# PatientOrientation instead).
FRAME_OF_REFERENCE_MODALITIES = ("ct", "mr", "us")

# Keyword → value, per modality. Lists are multi-valued attributes; "" is a Type 2 attribute
# present without a value (allowed, and truthful where the acquisition has none).
_ATTRIBUTES = {
    "ct": {
        # General Series (Type 2C for CT and MR: head first, supine)
        "PatientPosition": "HFS",
        # Frame of Reference (Type 2): no anatomical landmark was set
        "PositionReferenceIndicator": "",
        # CT Image (PS3.3 C.8.2.1)
        "ImageType": ["ORIGINAL", "PRIMARY", "AXIAL"],
        "KVP": 120,
        "AcquisitionNumber": 1,
        "ConvolutionKernel": "STANDARD",
        "XRayTubeCurrent": 200,
        "ExposureTime": 1000,
    },
    "mr": {
        "PatientPosition": "HFS",
        "PositionReferenceIndicator": "",
        # MR Image (PS3.3 C.8.3.1): a 2D T1-weighted spin echo at 1.5 T
        "ImageType": ["ORIGINAL", "PRIMARY", "OTHER"],
        "ScanningSequence": "SE",
        "SequenceVariant": "NONE",
        "ScanOptions": "",
        "MRAcquisitionType": "2D",
        "RepetitionTime": 500,
        "EchoTime": 15,
        "EchoTrainLength": 1,
        "AcquisitionNumber": 1,
        "MagneticFieldStrength": 1.5,
        "ImagedNucleus": "1H",
        "ImagingFrequency": 63.87,
        "FlipAngle": 90,
        "SequenceName": "se2d1",
    },
    "cr": {
        # CR Series (Type 2): a posteroanterior chest view
        "ViewPosition": "PA",
        # General Image (Type 2C where the IOD has no Image Plane module): rows run to the
        # patient's left, columns to the feet — a PA chest as it is read
        "PatientOrientation": ["L", "F"],
        # Modality LUT (Type 1C with RescaleSlope/Intercept): US = unspecified units
        "RescaleType": "US",
        "ImageType": ["ORIGINAL", "PRIMARY"],
        "AcquisitionNumber": 1,
    },
    "us": {
        "PositionReferenceIndicator": "",
        # General Image (Type 2C): a hand-held probe has no patient-based orientation
        "PatientOrientation": "",
        # US Image (PS3.3 C.8.5.6): value 3 = anatomy, value 4 = mode (0001 = 2D imaging)
        "ImageType": ["ORIGINAL", "PRIMARY", "ABDOMINAL", "0001"],
        "AcquisitionNumber": 1,
    },
}


def modality_attributes(modality: str) -> dict:
    """The acquisition attributes a conformant image of ``modality`` carries.

    Parameters
    ----------
    modality : {"ct", "mr", "cr", "us"}
        Case-insensitive.

    Returns
    -------
    dict
        pydicom keyword → value (a new dict; lists for multi-valued attributes, "" for a Type 2
        attribute without a value). Set them with ``setattr(ds, keyword, value)``. They cover
        the modality's image module, General Series ``PatientPosition`` (CT, MR) and the Frame
        of Reference's ``PositionReferenceIndicator`` (CT, MR, US); pixel module, geometry,
        UIDs and patient/study attributes are the writer's. A CR image must not carry a
        FrameOfReferenceUID (see :data:`FRAME_OF_REFERENCE_MODALITIES`).

    Raises
    ------
    ValueError
        On an unknown modality.
    """
    key = str(modality).lower()
    if key not in _ATTRIBUTES:
        raise ValueError(f"Unknown modality. Expected one of {tuple(_ATTRIBUTES)}. "
                         f"Received: modality={modality!r}")
    return {k: (list(v) if isinstance(v, list) else v) for k, v in _ATTRIBUTES[key].items()}
