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
#: ImageOrientationPatient (row cosines, column cosines) of the phantom series orientations.
ORIENTATIONS = {"axial": (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
                "sagittal": (0.0, 1.0, 0.0, 0.0, 0.0, -1.0),
                "coronal": (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)}


@dataclasses.dataclass(frozen=True)
class Ellipsoid:
    """Points p with sum(((p - centre) / radii)²) ≤ 1 (LPS mm, axis-aligned)."""

    centre: tuple
    radii: tuple

    def contains(self, points: np.ndarray) -> np.ndarray:
        d = (np.asarray(points, float) - self.centre) / self.radii
        return (d ** 2).sum(-1) <= 1.0

    def section(self, value: float, axis: int = 2, n: int = 128):
        """The closed polygon (n, 3) where the plane LPS[axis] = ``value`` cuts it (None if it
        misses)."""
        f = 1.0 - ((value - self.centre[axis]) / self.radii[axis]) ** 2
        if f <= 0.0:
            return None
        u, v = [a for a in range(3) if a != axis]
        t = np.linspace(0, 2 * np.pi, n, endpoint=False)
        pts = np.empty((n, 3))
        pts[:, axis] = value
        pts[:, u] = self.centre[u] + self.radii[u] * np.sqrt(f) * np.cos(t)
        pts[:, v] = self.centre[v] + self.radii[v] * np.sqrt(f) * np.sin(t)
        return pts


#: Structure name → (class index, outer shapes, holes). Painted in this order.
STRUCTURES = {
    "Right Lung": (1, [Ellipsoid((-6.5, 0.5, 0.5), (4.5, 6.5, 9.0))], []),
    "Left Lung": (1, [Ellipsoid((5.5, 0.5, 0.5), (4.5, 6.5, 9.0))], []),
    "Heart": (2, [Ellipsoid((0.0, 7.5, 1.0), (4.0, 2.6, 6.0))],
              [Ellipsoid((0.0, 7.5, 1.0), (2.0, 1.3, 4.0))]),
    "Nodule": (3, [Ellipsoid((5.5, -1.0, 0.5), (2.2, 2.2, 3.5))], []),
}


def affine(orientation: str = "axial") -> np.ndarray:
    """(k, i, j, 1) → LPS mm of the phantom series in ``orientation`` (grid centred on 0)."""
    iop = np.asarray(ORIENTATIONS[orientation], float)
    row, col = iop[:3], iop[3:]
    normal = np.cross(row, col)
    a = np.eye(4)
    a[:3, 0] = normal * SLICE_SPACING
    a[:3, 1] = col * PIXEL_SPACING[0]
    a[:3, 2] = row * PIXEL_SPACING[1]
    a[:3, 3] = -(a[:3, 0] * (SLICES - 1) / 2 + a[:3, 1] * (ROWS - 1) / 2
                 + a[:3, 2] * (COLS - 1) / 2)
    return a


def voxel_centres(orientation: str = "axial") -> np.ndarray:
    """(D, H, W, 3) LPS mm of every voxel centre."""
    k, i, j = np.meshgrid(np.arange(SLICES), np.arange(ROWS), np.arange(COLS), indexing="ij")
    idx = np.stack([k, i, j, np.ones_like(k)], -1).astype(float)
    return (idx @ affine(orientation).T)[..., :3]


def structure_mask(name: str, orientation: str = "axial") -> np.ndarray:
    """Boolean (D, H, W) mask of one structure (outer shapes minus holes)."""
    pts = voxel_centres(orientation)
    _, outer, holes = STRUCTURES[name]
    m = np.zeros(pts.shape[:3], bool)
    for e in outer:
        m |= e.contains(pts)
    for e in holes:
        m &= ~e.contains(pts)
    return m


def label_map(orientation: str = "axial") -> np.ndarray:
    """uint8 (D, H, W): the phantom's own label map (later structures win)."""
    out = np.zeros((SLICES, ROWS, COLS), np.uint8)
    for name, (value, _, _) in STRUCTURES.items():
        out[structure_mask(name, orientation)] = value
    return out


def write_series(folder, *, seed: int = 0, orientation: str = "axial") -> list[Path]:
    """Write the CT slices (file names against slice order) and return their paths."""
    from pydicom.uid import CTImageStorage

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    study, series, frame = (generate_uid(entropy_srcs=[str(seed), s]) for s in "abc")
    labels = label_map(orientation)
    a = affine(orientation)
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
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL" if orientation == "axial" else "OTHER"]
        ds.ImagePositionPatient = [float(v) for v in a[:3] @ (k, 0, 0, 1)]
        ds.ImageOrientationPatient = list(ORIENTATIONS[orientation])
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
    """Index along the normal of a phantom slice (any orientation), from its header."""
    iop = np.asarray(ds.ImageOrientationPatient, float)
    normal = np.cross(iop[:3], iop[3:])
    orientation = next(k for k, v in ORIENTATIONS.items() if np.allclose(v, iop))
    origin = affine(orientation)[:3, 3]
    along = (np.asarray(ds.ImagePositionPatient, float) - origin) @ normal
    return int(round(along / SLICE_SPACING))


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
        mask = structure_mask(name, _orientation_of(datasets[0]))[order]
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


def _orientation_of(ds) -> str:
    iop = np.asarray(ds.ImageOrientationPatient, float)
    return next(k for k, v in ORIENTATIONS.items() if np.allclose(v, iop))


def phantom_contours(datasets):
    """ROI name → [(points (n, 3) LPS mm, referenced slice dataset)], from the analytic shapes
    cut by each slice's plane (the planes are normal to one LPS axis in every orientation)."""
    iop = np.asarray(datasets[0].ImageOrientationPatient, float)
    axis = int(np.argmax(np.abs(np.cross(iop[:3], iop[3:]))))
    rois = {}
    for name, (_, outer, holes) in STRUCTURES.items():
        items = []
        for ds in datasets:
            value = float(ds.ImagePositionPatient[axis])
            for shape in outer + holes:
                pts = shape.section(value, axis)
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
