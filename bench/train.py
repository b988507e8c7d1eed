"""Training throughput benchmark: prints ratios against a baseline measured in the same run.

The 2D U-Net trained from TFRecord shards through ``medzoo.datasets.pipeline.make_dataset`` vs the
same tensors already in memory (``tf.data.Dataset.from_tensor_slices(...).batch(...)``): same
model, same weights at the start, same batch size, same number of steps. Shards are timed as
training sees them (make_dataset's cache filled by the warm-up epoch) and with ``cache=False``
(parsed from disk every epoch). A ratio near 1 means the input pipeline keeps up with training.
Never asserts a time.

    python bench/train.py [--patients 32] [--slices 4] [--size 64] [--batch-size 16] [--epochs 3]
                         [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_dataset_dir(work: Path, patients: int, slices: int, size: int) -> Path:
    from medzoo.datasets.ingest import ingest
    from medzoo.datasets.synth import write_synthetic

    dicom = work / "dicom"
    write_synthetic(dicom, patients=patients, size=size, slices=slices, seed=0)
    ds = work / "ds"
    ingest(dicom, dicom / "labels.csv", ds, size=size, folds=2, seed=0,
           key_file=work / "pseudonym.key", progress=False)
    return ds


def images_per_second(model, initial_weights, dataset, epochs: int, images: int) -> float:
    """Images/s over ``epochs`` epochs after one untimed warm-up epoch (tracing, caching)."""
    model.set_weights(initial_weights)
    model.fit(dataset, epochs=1, verbose=0, shuffle=False)
    started = time.perf_counter()
    model.fit(dataset, epochs=epochs, verbose=0, shuffle=False)
    return epochs * images / (time.perf_counter() - started)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=32)
    parser.add_argument("--slices", type=int, default=4)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    import keras
    import numpy as np
    import tensorflow as tf

    from medzoo.datasets.pipeline import make_dataset
    from medzoo.zoo import losses, registry

    with tempfile.TemporaryDirectory() as tmp:
        ds_dir = make_dataset_dir(Path(tmp), args.patients, args.slices, args.size)
        def shards(cache):
            return make_dataset(ds_dir, None, target="mask", batch_size=args.batch_size,
                                shuffle=False, seed=0, cache=cache)

        from_shards = shards(cache=True)
        images, masks = (np.concatenate(parts) for parts in
                         zip(*((x.numpy(), y.numpy()) for x, y in from_shards)))
        in_memory = tf.data.Dataset.from_tensor_slices((images, masks)).batch(args.batch_size)
        n = len(images)

        model = registry.build("unet", (args.size, args.size, 1), 2)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=losses.DiceBCELoss())
        initial = model.get_weights()
        uncached = shards(cache=False)
        rates = {"memory": [], "shards": [], "uncached": []}
        for _ in range(args.repeats):  # interleaved, best of each: robust to a busy machine
            for key, dataset in (("memory", in_memory), ("shards", from_shards),
                                 ("uncached", uncached)):
                rates[key].append(images_per_second(model, initial, dataset, args.epochs, n))
        memory_rate, shard_rate, uncached_rate = (max(rates[k]) for k in rates)

    print(f"records: {n} images of {args.size}x{args.size}, batch {args.batch_size}, "
          f"{args.epochs} timed epochs after a warm-up epoch, best of {args.repeats} interleaved runs")
    print(f"in memory (from_tensor_slices): {memory_rate:8.1f} images/s")
    print(f"TFRecord shards (make_dataset): {shard_rate:8.1f} images/s")
    print(f"TFRecord shards, no cache:      {uncached_rate:8.1f} images/s")
    print(f"ratio shards / in memory:       {shard_rate / memory_rate:8.2f}")
    print(f"ratio uncached / in memory:     {uncached_rate / memory_rate:8.2f}")


if __name__ == "__main__":
    main()
