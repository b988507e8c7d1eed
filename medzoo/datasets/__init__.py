"""medzoo.datasets: DICOM → dataset dir → tf.data.

Importing this package imports no TensorFlow (ingest workers import it); the tf.data pipeline
lives in :mod:`medzoo.datasets.pipeline`, imported explicitly by its users. ``ingest`` is reached
as ``medzoo.datasets.ingest.ingest`` (a re-export would shadow the module of the same name).
"""

from medzoo.datasets.deid import load_or_create_key, pseudonym
from medzoo.datasets.dicom import read_dicom, resize_bilinear, window_linear
from medzoo.datasets.info import describe
from medzoo.datasets.manifest import order_classes, read_dataset_info, read_index, read_labels
from medzoo.datasets.records import read_records
from medzoo.datasets.splits import fold_assignment, patient_folds
from medzoo.datasets.synth import write_synthetic

__all__ = [
    "describe",
    "fold_assignment",
    "load_or_create_key",
    "order_classes",
    "patient_folds",
    "pseudonym",
    "read_dataset_info",
    "read_dicom",
    "read_index",
    "read_labels",
    "read_records",
    "resize_bilinear",
    "window_linear",
    "write_synthetic",
]
