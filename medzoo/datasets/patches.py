"""Random patches of native-spacing volumes for 3D segmentation training (nnU-Net's sampler).

:class:`PatchSampler` (numpy only) draws patches of the plan's patch size from volumes held in
memory: a fixed share (``foreground_oversample``, default 1/3) is centred on a random voxel of a
foreground class picked uniformly among the classes present — small structures (lesions) are
seen as often as large ones — the rest anywhere. Volumes smaller than the patch are padded
(image 0, label background). Augmentation (:meth:`PatchSampler.augment`): mirroring along each
axis, a small in-plane rotation and scaling (sampled directly from the volume, so no empty
corners), intensity scale and shift. :func:`make_patch_dataset` wraps it as a ``tf.data`` pipeline
of ``(image (B, *patch, C), one-hot labels (B, *patch, K))`` batches for Keras ``fit``;
TensorFlow is imported only there.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import ndimage

from medzoo.errors import InputError

__all__ = ["PatchSampler", "load_volumes", "make_patch_dataset"]

MAX_LOCATIONS = 20000  # foreground voxels remembered per class and volume (nnU-Net keeps 10k)


def load_volumes(ds_dir, record_ids) -> list[tuple[np.ndarray, np.ndarray]]:
    """``[(image D×H×W×C float32, labels D×H×W uint8)]`` of ``record_ids`` (stored order)."""
    from medzoo.datasets.volume_records import read_volume_records

    return [(rec["image"], rec["mask"] if rec["mask"] is not None
             else np.zeros(rec["image"].shape[:3], np.uint8))
            for rec in read_volume_records(ds_dir, record_ids)]


class PatchSampler:
    """Draw training patches from in-memory volumes.

    Parameters
    ----------
    volumes : sequence of (image, labels)
        ``image`` ``(D, H, W, C)`` float32 as the model sees it; ``labels`` ``(D, H, W)`` class
        indices in ``0..num_classes-1``.
    patch_size : sequence of 3 int
    num_classes : int
        Background + foreground classes (the one-hot depth).
    foreground_oversample : float
        Share of patches forced to contain foreground, in [0, 1].
    augment : bool
        Apply :meth:`augment` to every patch.
    seed : int

    Raises
    ------
    ValueError
        No volumes, a patch that is not 3 positive sizes, an oversampling share outside [0, 1],
        or a label value ≥ ``num_classes``.
    """

    def __init__(self, volumes: Sequence[tuple[np.ndarray, np.ndarray]], patch_size,
                 num_classes: int, *, foreground_oversample: float = 1 / 3,
                 augment: bool = False, seed: int = 0):
        self.patch_size = tuple(int(p) for p in patch_size)
        if len(self.patch_size) != 3 or min(self.patch_size) < 1:
            raise ValueError(f"Argument `patch_size` must be 3 positive sizes (D, H, W). "
                             f"Received: patch_size={tuple(patch_size)}")
        if not volumes:
            raise ValueError("Argument `volumes` must hold at least one (image, labels) pair. "
                             "Received: none")
        if not 0.0 <= foreground_oversample <= 1.0:
            raise ValueError("Argument `foreground_oversample` must be in [0, 1]. "
                             f"Received: foreground_oversample={foreground_oversample}")
        self.num_classes = int(num_classes)
        self.foreground_oversample = float(foreground_oversample)
        self.do_augment = bool(augment)
        self.rng = np.random.default_rng(seed)
        self.volumes, self.locations = [], []
        for image, labels in volumes:
            image, labels = self._pad(np.asarray(image, np.float32), np.asarray(labels, np.uint8))
            top = int(labels.max(initial=0))
            if top >= self.num_classes:
                raise ValueError(f"Label value {top} is outside the {self.num_classes} classes "
                                 f"(0..{self.num_classes - 1})")
            self.volumes.append((image, labels))
            self.locations.append(self._foreground_locations(labels))
        self.channels = int(self.volumes[0][0].shape[-1])
        self.drawn = 0

    def _pad(self, image, labels):
        pads = [(max(p - s, 0) // 2, max(p - s, 0) - max(p - s, 0) // 2)
                for s, p in zip(labels.shape, self.patch_size)]
        if any(sum(p) for p in pads):
            image = np.pad(image, pads + [(0, 0)])
            labels = np.pad(labels, pads)
        return image, labels

    def _foreground_locations(self, labels) -> dict[int, np.ndarray]:
        found = {}
        for cls in range(1, self.num_classes):
            flat = np.flatnonzero(labels == cls)
            if flat.size > MAX_LOCATIONS:
                flat = self.rng.choice(flat, MAX_LOCATIONS, replace=False)
            if flat.size:
                found[cls] = flat
        return found

    def forced(self, index: int) -> bool:
        """Whether patch number ``index`` must hold foreground: exactly a share
        ``foreground_oversample`` of every run of patches (not a coin flip per patch)."""
        p = self.foreground_oversample
        return math.floor((index + 1) * p + 1e-9) > math.floor(index * p + 1e-9)

    def _start(self, labels, centre=None) -> tuple[int, ...]:
        shape = labels.shape
        if centre is None:
            return tuple(int(self.rng.integers(0, s - p + 1)) for s, p in zip(shape, self.patch_size))
        # Centre the patch on the voxel where possible; at the borders it stays inside the volume.
        return tuple(int(np.clip(c - p // 2, 0, s - p))
                     for c, s, p in zip(centre, shape, self.patch_size))

    def sample(self) -> tuple[np.ndarray, np.ndarray]:
        """The next patch: ``(image (*patch, C) float32, labels (*patch) uint8)``."""
        index = self.drawn
        self.drawn += 1
        v = int(self.rng.integers(len(self.volumes)))
        image, labels = self.volumes[v]
        centre = None
        if self.forced(index):
            present = self.locations[v]
            if not present:  # this volume has no foreground: take one that has
                candidates = [i for i, loc in enumerate(self.locations) if loc]
                if candidates:
                    v = int(self.rng.choice(candidates))
                    image, labels = self.volumes[v]
                    present = self.locations[v]
            if present:
                cls = int(self.rng.choice(sorted(present)))
                flat = present[cls][int(self.rng.integers(present[cls].size))]
                centre = np.unravel_index(int(flat), labels.shape)
        if self.do_augment and self.rng.random() < 0.2:
            return self._rotated(image, labels, centre)
        start = self._start(labels, centre)
        window = tuple(slice(s, s + p) for s, p in zip(start, self.patch_size))
        out_image, out_labels = image[window].copy(), labels[window].copy()
        if self.do_augment:
            out_image, out_labels = self.augment(out_image, out_labels)
        return out_image, out_labels

    def _rotated(self, image, labels, centre):
        """A patch sampled through a random in-plane rotation (±15°) and scaling (0.85–1.15)
        around its centre, read straight from the volume (linear for the image, nearest for
        labels, zeros outside)."""
        if centre is None:
            centre = tuple(int(self.rng.integers(0, s)) for s in labels.shape)
        angle = math.radians(self.rng.uniform(-15, 15))
        scale = self.rng.uniform(0.85, 1.15)
        grid = np.indices(self.patch_size, dtype=np.float32)
        grid -= np.array([p // 2 for p in self.patch_size], np.float32)[:, None, None, None]
        y = (math.cos(angle) * grid[1] - math.sin(angle) * grid[2]) * scale
        x = (math.sin(angle) * grid[1] + math.cos(angle) * grid[2]) * scale
        coords = np.stack([grid[0] + centre[0], y + centre[1], x + centre[2]])
        out_labels = ndimage.map_coordinates(labels, coords, order=0, mode="constant", cval=0)
        out_image = np.stack([ndimage.map_coordinates(image[..., c], coords, order=1,
                                                      mode="constant", cval=0.0)
                              for c in range(image.shape[-1])], axis=-1)
        return self.augment(out_image.astype(np.float32), out_labels.astype(np.uint8))

    def augment(self, image, labels):
        """Mirror along each axis with probability 1/2; intensity × U(0.9, 1.1) + N(0, 0.1)."""
        for axis in range(3):
            if self.rng.random() < 0.5:
                image, labels = np.flip(image, axis), np.flip(labels, axis)
        image = image * np.float32(self.rng.uniform(0.9, 1.1)) + np.float32(self.rng.normal(0, 0.1))
        return np.ascontiguousarray(image, np.float32), np.ascontiguousarray(labels)

    def one_hot(self, labels) -> np.ndarray:
        return np.eye(self.num_classes, dtype=np.float32)[labels]


def make_patch_dataset(ds_dir, record_ids, *, patch_size, num_classes: int, batch_size: int,
                       patches_per_epoch: int, foreground_oversample: float = 1 / 3,
                       augment: bool = False, seed: int = 0, repeatable: bool = False):
    """A ``tf.data`` pipeline of random patch batches for Keras ``fit``.

    Parameters
    ----------
    ds_dir : path-like
        A native-volume dataset dir.
    record_ids : sequence of str
        The volumes to sample from (one part of the split).
    patch_size : sequence of 3 int
    num_classes : int
        Background + foreground classes.
    batch_size, patches_per_epoch : int
        One pass over the dataset is ``ceil(patches_per_epoch / batch_size)`` batches.
    foreground_oversample, augment, seed : see :class:`PatchSampler`.
    repeatable : bool
        Draw the same patches on every pass (validation); otherwise new ones each epoch.

    Returns
    -------
    tf.data.Dataset of ``(image float32 (B, *patch, C), labels float32 one-hot (B, *patch, K))``.
    """
    import tensorflow as tf

    volumes = load_volumes(ds_dir, record_ids)
    patch_size = tuple(int(p) for p in patch_size)
    channels = int(volumes[0][0].shape[-1]) if volumes else 1
    if not volumes:
        raise InputError(f"{ds_dir}: expected the {len(record_ids)} requested volume records. "
                         "Received: none of them")
    sampler = PatchSampler(volumes, patch_size, num_classes,
                           foreground_oversample=foreground_oversample, augment=augment,
                           seed=seed)
    del volumes  # the sampler holds the (padded) volumes
    epochs = [0]

    def generate():
        sampler.rng = np.random.default_rng([seed, 0 if repeatable else epochs[0]])
        sampler.drawn = 0
        epochs[0] += 1
        for _ in range(int(patches_per_epoch)):
            image, labels = sampler.sample()
            yield image, sampler.one_hot(labels)

    signature = (tf.TensorSpec((*patch_size, channels), tf.float32),
                 tf.TensorSpec((*patch_size, int(num_classes)), tf.float32))
    ds = tf.data.Dataset.from_generator(generate, output_signature=signature)
    ds = ds.apply(tf.data.experimental.assert_cardinality(int(patches_per_epoch)))
    return ds.batch(int(batch_size)).prefetch(2)
