"""A tiny CT series with a known label map, written by hand with pydicom, for annotation tests.

Structures are analytic shapes in patient coordinates (LPS mm), so an annotation writer in a
test (highdicom SEG, pydicom RTSTRUCT, nibabel NIfTI) can describe them independently of the
reader: a voxel belongs to a structure when its centre lies inside the shape.

Writers (independent of medzoo's readers): :func:`write_series` (pydicom CT slices),
:func:`write_seg` (highdicom), :func:`write_rtstruct` (pydicom by hand, contours from
:func:`phantom_contours`). Shared by tests/datasets and tests/pacs.

Label map (z, y, x) = (slice ascending along the normal, row, column), values:
0 background, 1 lung (two ellipsoids, "Left Lung" and "Right Lung"), 2 heart (an ellipsoidal
shell: the inner ellipsoid is a hole), 3 lesion (a sphere inside the left lung; it wins over
lung where they overlap).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, RTStructureSetStorage, generate_uid

CLASSES = ["background", "lung", "heart", "lesion"]
SLICES, ROWS, COLS = 8, 32, 32
PIXEL_SPACING = (0.7, 0.8)  # (row spacing, column spacing) mm
SLICE_SPACING = 2.5
ORIGIN = (-12.4, -10.85, -8.75)  # LPS of the first slice's first pixel
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


@dataclasses.dataclass(frozen=True)
class Ellipsoid:
    """Points p with sum(((p - centre) / radii)²) ≤ 1 (LPS mm, axis-aligned)."""

    centre: tuple
    radii: tuple

    def contains(self, points: np.ndarray) -> np.ndarray:
        d = (np.asarray(points, float) - self.centre) / self.radii
        return (d ** 2).sum(-1) <= 1.0

    def section(self, z: float, n: int = 128):
        """The closed polygon (n, 3) where the plane LPS z = ``z`` cuts it; None if it misses."""
        f = 1.0 - ((z - self.centre[2]) / self.radii[2]) ** 2
        if f <= 0.0:
            return None
        t = np.linspace(0, 2 * np.pi, n, endpoint=False)
        a, b = self.radii[0] * np.sqrt(f), self.radii[1] * np.sqrt(f)
        return np.stack([self.centre[0] + a * np.cos(t), self.centre[1] + b * np.sin(t),
                         np.full(n, z)], axis=1)


#: Structure name → (class index, outer shapes, holes). Painted in this order.
STRUCTURES = {
    "Right Lung": (1, [Ellipsoid((-6.5, 0.5, 0.5), (4.5, 6.5, 9.0))], []),
    "Left Lung": (1, [Ellipsoid((5.5, 0.5, 0.5), (4.5, 6.5, 9.0))], []),
    "Heart": (2, [Ellipsoid((0.0, 7.5, 1.0), (4.0, 2.6, 6.0))],
              [Ellipsoid((0.0, 7.5, 1.0), (2.0, 1.3, 4.0))]),
    "Nodule": (3, [Ellipsoid((5.5, -1.0, 0.5), (2.2, 2.2, 3.5))], []),
}


def affine() -> np.ndarray:
    """(k, i, j, 1) → LPS mm for the axial phantom."""
    a = np.eye(4)
    a[:3, 0] = (0, 0, SLICE_SPACING)
    a[:3, 1] = (0, PIXEL_SPACING[0], 0)
    a[:3, 2] = (PIXEL_SPACING[1], 0, 0)
    a[:3, 3] = ORIGIN
    return a


def voxel_centres() -> np.ndarray:
    """(D, H, W, 3) LPS mm of every voxel centre."""
    k, i, j = np.meshgrid(np.arange(SLICES), np.arange(ROWS), np.arange(COLS), indexing="ij")
    idx = np.stack([k, i, j, np.ones_like(k)], -1).astype(float)
    return (idx @ affine().T)[..., :3]


def structure_mask(name: str) -> np.ndarray:
    """Boolean (D, H, W) mask of one structure (outer shapes minus holes)."""
    pts = voxel_centres()
    _, outer, holes = STRUCTURES[name]
    m = np.zeros(pts.shape[:3], bool)
    for e in outer:
        m |= e.contains(pts)
    for e in holes:
        m &= ~e.contains(pts)
    return m


def label_map() -> np.ndarray:
    """uint8 (D, H, W): the phantom's own label map (later structures win)."""
    out = np.zeros((SLICES, ROWS, COLS), np.uint8)
    for name, (value, _, _) in STRUCTURES.items():
        out[structure_mask(name)] = value
    return out


def write_series(folder, *, seed: int = 0) -> list[Path]:
    """Write the CT slices (file names against slice order) and return their paths."""
    from pydicom.uid import CTImageStorage

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    study, series, frame = (generate_uid(entropy_srcs=[str(seed), s]) for s in "abc")
    labels = label_map()
    paths = []
    for k in range(SLICES):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[str(seed), "sop", str(k)])
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Phantom^Vol", "PV1", "", "O"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20260101", "120000", "1", ""
        ds.ReferringPhysicianName = ""
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "CT", 1, k + 1
        ds.Manufacturer, ds.PositionReferenceIndicator = "medzoo-test", ""
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImagePositionPatient = [float(v) for v in affine()[:3] @ (k, 0, 0, 1)]
        ds.ImageOrientationPatient = list(AXIAL)
        ds.PixelSpacing = list(PIXEL_SPACING)
        ds.SliceThickness = SLICE_SPACING
        ds.Rows, ds.Columns = ROWS, COLS
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
        ds.KVP, ds.AcquisitionNumber = 120, 1
        hu = np.choose(labels[k], [0, -800, 40, 20]).astype(np.int16)
        ds.PixelData = (hu + 1024).astype(np.int16).tobytes()
        path = folder / f"slice_{(SLICES - k) * 7 % 11:02d}.dcm"  # names unrelated to order
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
        paths.append(path)
    return paths


# ----------------------------------------------------------- independent annotation writers
def slice_index(ds) -> int:
    return int(round((float(ds.ImagePositionPatient[2]) - ORIGIN[2]) / SLICE_SPACING))


def write_seg(path, datasets, *, names=tuple(STRUCTURES), fractional=False,
              omit_empty_frames=True, sources=None):
    """A highdicom SEG of the phantom's structures over ``datasets`` (in their given order)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    order = [slice_index(ds) for ds in datasets]
    props = {"Left Lung": codes.SCT.Lung, "Right Lung": codes.SCT.Lung,
             "Heart": codes.SCT.Heart, "Nodule": codes.SCT.Nodule}
    algorithm = hd.AlgorithmIdentificationSequence(
        name="test", version="1", family=codes.DCM.ArtificialIntelligence)
    descriptions, planes = [], []
    for n, name in enumerate(names, start=1):
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=n, segment_label=name,
            segmented_property_category=codes.SCT.Organ,
            segmented_property_type=props.get(name, codes.SCT.Tissue),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm))
        mask = structure_mask(name)[order]
        planes.append(mask.astype(np.float32) * (0.8 if fractional else 1.0))
    pixels = np.stack(planes, axis=-1)
    if not fractional:
        pixels = pixels.astype(np.uint8)
    seg = hd.seg.Segmentation(
        source_images=sources or datasets, pixel_array=pixels,
        segmentation_type=(hd.seg.SegmentationTypeValues.FRACTIONAL if fractional
                           else hd.seg.SegmentationTypeValues.BINARY),
        segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=5,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="test",
        manufacturer_model_name="test", software_versions="1", device_serial_number="1",
        omit_empty_frames=omit_empty_frames)
    seg.save_as(str(path))
    return path


def phantom_contours(datasets):
    """ROI name → [(points (n, 3) LPS mm, referenced slice dataset)], from the analytic shapes."""
    rois = {}
    for name, (_, outer, holes) in STRUCTURES.items():
        items = []
        for ds in datasets:
            z = float(ds.ImagePositionPatient[2])
            for shape in outer + holes:
                pts = shape.section(z)
                if pts is not None:
                    items.append((pts, ds))
        rois[name] = items
    return rois


def write_rtstruct(path, datasets, rois, *, kinds=None, frame_uid=None):
    """A minimal RT Structure Set with one ROI per entry of ``rois``."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = RTStructureSetStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = RTStructureSetStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality = "RTSTRUCT"
    src = datasets[0]
    for kw in ("PatientName", "PatientID", "StudyInstanceUID", "StudyDate", "StudyTime"):
        setattr(ds, kw, src.get(kw, ""))
    ds.SeriesInstanceUID = generate_uid()
    ds.StructureSetLabel = "test"
    frame = Dataset()
    frame.FrameOfReferenceUID = frame_uid or src.FrameOfReferenceUID
    ref_series = Dataset()
    ref_series.SeriesInstanceUID = src.SeriesInstanceUID
    ref_series.ContourImageSequence = Sequence([image_ref(d) for d in datasets])
    ref_study = Dataset()
    ref_study.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
    ref_study.ReferencedSOPInstanceUID = src.StudyInstanceUID
    ref_study.RTReferencedSeriesSequence = Sequence([ref_series])
    frame.RTReferencedStudySequence = Sequence([ref_study])
    ds.ReferencedFrameOfReferenceSequence = Sequence([frame])
    ds.StructureSetROISequence, ds.ROIContourSequence = Sequence(), Sequence()
    ds.RTROIObservationsSequence = Sequence()
    for number, (name, items) in enumerate(rois.items(), start=1):
        roi = Dataset()
        roi.ROINumber, roi.ROIName = number, name
        roi.ReferencedFrameOfReferenceUID = frame.FrameOfReferenceUID
        roi.ROIGenerationAlgorithm = "MANUAL"
        ds.StructureSetROISequence.append(roi)
        rc = Dataset()
        rc.ReferencedROINumber = number
        rc.ROIDisplayColor = [255, 0, 0]
        rc.ContourSequence = Sequence()
        for pts, ref in items:
            c = Dataset()
            c.ContourGeometricType = (kinds or {}).get(name, "CLOSED_PLANAR")
            c.NumberOfContourPoints = len(pts)
            c.ContourData = [f"{v:.4f}" for v in np.asarray(pts).ravel()]
            if ref is not None:
                c.ContourImageSequence = Sequence([image_ref(ref)])
            rc.ContourSequence.append(c)
        ds.ROIContourSequence.append(rc)
        obs = Dataset()
        obs.ObservationNumber, obs.ReferencedROINumber = number, number
        obs.RTROIInterpretedType, obs.ROIInterpreter = "ORGAN", ""
        ds.RTROIObservationsSequence.append(obs)
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


def image_ref(ds):
    ref = Dataset()
    ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    return ref
