"""A TensorFlow Datasets builder for a DICOM folder with labels.csv (the ingest inputs).

It yields the records ingest writes, by the same code (:func:`medzoo.datasets.ingest.plan_rows`,
:func:`~medzoo.datasets.ingest.iter_plan_records`): the same images, labels, masks and record
ids, in the same order. Pseudonyms are not part of the features, so an ephemeral key is used.

    import tensorflow_datasets as tfds
    from medzoo.datasets.tfds_builder import MedzooDicom

    builder = MedzooDicom(manual_dir="phantoms", size=64, data_dir="~/tensorflow_datasets")
    builder.download_and_prepare()
    ds = builder.as_dataset(split="train")   # {"image", "label", "mask", "record_id"}

``manual_dir`` holds labels.csv (``path,label[,mask]`` or with ``path_<name>`` columns) and the
files it names. Rejected inputs are skipped, as in ingest (the builder logs how many).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from medzoo.datasets import ingest, manifest

_LOG = logging.getLogger(__name__)


class MedzooDicom(tfds.core.GeneratorBasedBuilder):
    """DICOM folder + labels.csv → ``train`` split of ``{image, label, mask, record_id}``."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Records as `medzoo data ingest` writes them."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Put labels.csv (path,label[,mask]) and the DICOM files it names in manual_dir.")

    def __init__(self, *, manual_dir=None, size=64, window="auto", color="grey", **kwargs):
        self._source = Path(manual_dir).expanduser() if manual_dir else None
        self._size = int(size)
        self._window = window
        self._color = color
        super().__init__(**kwargs)

    def _labels(self, manual_dir=None) -> Path:
        root = Path(manual_dir) if manual_dir else self._source
        if root is None:
            raise ValueError("MedzooDicom needs `manual_dir` (a folder holding labels.csv). "
                             "Received: none")
        return root / "labels.csv"

    def _info(self) -> tfds.core.DatasetInfo:
        labels = self._labels()
        rows = manifest.read_labels(labels)
        classes = manifest.order_classes(r.label for r in rows if r.label)
        channels = (3 if self._color == "rgb" else 1) * len(rows[0].columns)
        s = self._size
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Tensor(shape=(s, s, channels), dtype=np.float32),
                "label": tfds.features.ClassLabel(names=classes),
                "mask": tfds.features.Tensor(shape=(s, s), dtype=np.uint8),
                "record_id": tfds.features.Text(),
            }),
            supervised_keys=("image", "label"),
            disable_shuffling=True,  # keep ingest's record order
        )

    def _split_generators(self, dl_manager):
        manual = getattr(dl_manager, "_manual_dir", None)
        labels = self._labels(manual if manual and Path(manual).is_dir() else None)
        return {"train": self._generate_examples(labels)}

    def _generate_examples(self, labels_csv):
        rows = manifest.read_labels(labels_csv)
        classes = manifest.order_classes(r.label for r in rows if r.label)
        class_index = {c: i for i, c in enumerate(classes)}
        windows = [ingest.parse_window(w) for w in ingest._windows(self._window,
                                                                   len(rows[0].columns))]
        options = ingest.Options(key=os.urandom(32), size=(self._size, self._size),
                                 windows=tuple(windows), color=self._color)
        plan = ingest.plan_rows(rows, labels_csv)
        stream = ingest.RecordStream(Path(labels_csv).parent, class_index, has_mask=True,
                                     echo=False)
        for record_id, row, payload in ingest.iter_plan_records(plan, stream, options):
            yield record_id, {"image": payload["image"], "label": class_index[row.label],
                              "mask": payload["mask"], "record_id": record_id}
        if stream.rejected:
            _LOG.warning("medzoo_dicom: %d inputs rejected (as ingest would)", len(stream.rejected))


__all__ = ["MedzooDicom"]
