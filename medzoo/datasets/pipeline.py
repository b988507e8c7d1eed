"""tf.data input pipeline over a dataset dir (the only module of medzoo.datasets importing TF)."""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf

from medzoo.datasets.manifest import read_dataset_info
from medzoo.datasets.records import shard_paths
from medzoo.errors import InputError


def _parser(shape, channels, has_mask, num_labels=0):
    """Parse one Example; ``shape`` is ``[H, W]`` (2D) or ``[D, H, W]`` (volume).

    ``num_labels`` > 0: the records of a multi-label dataset also hold ``labels``, a multi-hot
    int64 vector of that length.
    """
    spec = {
        "record_id": tf.io.FixedLenFeature([], tf.string),
        "image": tf.io.FixedLenFeature([], tf.string),
        "label": tf.io.FixedLenFeature([], tf.int64),
    }
    if num_labels:
        spec["labels"] = tf.io.FixedLenFeature([num_labels], tf.int64)
    if has_mask:
        spec["mask"] = tf.io.FixedLenFeature([], tf.string)

    def parse(serialized):
        ex = tf.io.parse_single_example(serialized, spec)
        image = tf.reshape(tf.io.decode_raw(ex["image"], tf.float32), [*shape, channels])
        if has_mask:
            mask = tf.reshape(tf.io.decode_raw(ex["mask"], tf.uint8), [*shape, 1])
        else:
            mask = tf.zeros([*shape, 1], tf.uint8)
        out = {"record_id": ex["record_id"], "image": image,
               "label": tf.cast(ex["label"], tf.int32), "mask": tf.cast(mask, tf.float32)}
        if num_labels:
            out["labels"] = tf.cast(ex["labels"], tf.float32)
        return out

    return parse


def _augment(example, seed_pair, shape):
    """Random left-right flip and in-plane shift (±1/8 of the size, zero fill), the same for
    image and mask (and for every slice of a volume)."""
    image, mask = example["image"], example["mask"]
    channels = image.shape[-1]
    height, width = shape[-2], shape[-1]
    both = tf.concat([image, mask], axis=-1)
    if len(shape) == 2:
        both = tf.image.stateless_random_flip_left_right(both, seed=seed_pair)
    else:
        flip = tf.random.stateless_uniform([], seed=seed_pair) < 0.5
        both = tf.cond(flip, lambda: tf.reverse(both, axis=[2]), lambda: both)
    pad_h, pad_w = max(1, height // 8), max(1, width // 8)
    both = tf.pad(both, [[0, 0]] * (len(shape) - 2) + [[pad_h, pad_h], [pad_w, pad_w], [0, 0]])
    both = tf.image.stateless_random_crop(both, [*shape, channels + 1],
                                          seed=seed_pair + tf.constant([0, 1], tf.int64))
    return dict(example, image=both[..., :channels], mask=both[..., channels:])


def make_dataset(ds_dir, record_ids, *, target="label", batch_size=16, shuffle=True, seed=0,
                 augment=False, cache=True) -> tf.data.Dataset:
    """Batches of ``(image, label)`` or ``(image, mask)`` from a dataset dir.

    Parameters
    ----------
    ds_dir : path-like
        Dataset dir written by :func:`medzoo.datasets.ingest.ingest`.
    record_ids : iterable of str or None
        Records to include (e.g. one fold's); None → all.
    target : {"label", "labels", "mask"}
        ``label``: int32 ``(B,)`` class index; ``labels``: float32 ``(B, K)`` multi-hot (datasets
        with ``"multi_label": true``); ``mask``: float32 ``(B, H, W, 1)`` in {0, 1}.
    batch_size : int
    shuffle : bool
        Reshuffled every epoch from ``seed``.
    seed : int
    augment : bool
        Random flips and small shifts applied identically to image and mask (seeded).
    cache : bool
        Cache parsed, filtered records in memory.

    Returns
    -------
    tf.data.Dataset
        Elements ``(image float32 (B, H, W, C), label int32 (B,))`` or ``(image, mask)``; for a
        volume dataset (``"kind": "volume"``, ``image_size`` [D, H, W]) images are
        ``(B, D, H, W, C)`` and masks ``(B, D, H, W, 1)``.

    Raises
    ------
    InputError
        Not a dataset dir, unknown target, mask target on a dataset without masks, or no shards.
    """
    info = read_dataset_info(ds_dir)
    if target not in ("label", "labels", "mask"):
        raise InputError("Argument `target` must be 'label', 'labels' or 'mask'. "
                         f"Received: target={target!r}")
    multi_label = bool(info.get("multi_label"))
    if target == "labels" and not multi_label:
        raise InputError(f"{ds_dir}: target='labels' needs a multi-label dataset. "
                         "Received: multi_label=false")
    if target == "mask" and not info.get("has_mask"):
        raise InputError(f"{ds_dir}: target='mask' needs a dataset with masks. "
                         "Received: has_mask=false")
    paths = [str(p) for p in shard_paths(ds_dir)]
    if not paths:
        raise InputError(f"{Path(ds_dir) / 'shards'}: expected shard-*.tfrecord files. Received: none")
    shape = [int(v) for v in info["image_size"]]
    if len(shape) != (3 if info.get("kind") == "volume" else 2):
        raise InputError(f"{ds_dir}: dataset.json image_size {shape} does not fit kind "
                         f"{info.get('kind', 'image')!r}")
    channels = int(info.get("channels", 1))
    ds = tf.data.TFRecordDataset(paths).map(
        _parser(shape, channels, bool(info.get("has_mask")),
                len(info["classes"]) if multi_label else 0),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    n = int(info["counts"]["records"])
    if record_ids is not None:
        keys = sorted(set(str(r) for r in record_ids))
        n = len(keys)
        if keys:
            table = tf.lookup.StaticHashTable(
                tf.lookup.KeyValueTensorInitializer(tf.constant(keys),
                                                    tf.ones([len(keys)], tf.int32)),
                default_value=0)
            ds = ds.filter(lambda ex: table.lookup(ex["record_id"]) > 0)
        else:
            ds = ds.take(0)
    # Filtering hides the size from Keras (it then warns "ran out of data" every first epoch).
    ds = ds.apply(tf.data.experimental.assert_cardinality(n))
    if cache:
        ds = ds.cache()
    if shuffle:
        ds = ds.shuffle(max(1, n), seed=int(seed), reshuffle_each_iteration=True)
    if augment:
        rand = tf.data.Dataset.random(seed=int(seed), rerandomize_each_iteration=True)
        ds = tf.data.Dataset.zip(ds, rand).map(
            lambda ex, r: _augment(ex, tf.stack([r, tf.constant(int(seed), tf.int64)]),
                                   shape),
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.map(lambda ex: (ex["image"], ex[target]))
    return ds.batch(int(batch_size)).prefetch(tf.data.AUTOTUNE)


def make_balanced_dataset(ds_dir, record_ids, labels, *, batch_size=16, seed=0,
                          augment=False) -> tf.data.Dataset:
    """Training batches of ``(image, label)`` that draw every class equally often.

    One endless, reshuffled stream per class present in ``labels`` (``labels[i]`` is the class
    of ``record_ids[i]``), mixed with equal weights by ``tf.data.Dataset.sample_from_datasets``
    (seeded). An epoch is ``ceil(len(record_ids) / batch_size)`` batches, as without balancing,
    so minority images repeat and majority images are subsampled within an epoch.

    Raises
    ------
    InputError
        ``record_ids`` and ``labels`` differ in length, or no record is given.
    """
    record_ids, labels = list(record_ids), [int(v) for v in labels]
    if len(record_ids) != len(labels) or not record_ids:
        raise InputError("make_balanced_dataset: expected one label per record id and at least "
                         f"one record. Received: {len(record_ids)} ids, {len(labels)} labels")
    streams = []
    for k in sorted(set(labels)):
        ids = [r for r, y in zip(record_ids, labels) if y == k]
        streams.append(make_dataset(ds_dir, ids, target="label", batch_size=1, shuffle=True,
                                    seed=int(seed) + k, augment=augment)
                       .unbatch().repeat())
    mixed = tf.data.Dataset.sample_from_datasets(streams, weights=[1.0 / len(streams)] * len(streams),
                                                 seed=int(seed))
    steps = -(-len(record_ids) // int(batch_size))
    return mixed.batch(int(batch_size)).take(steps).prefetch(tf.data.AUTOTUNE)
