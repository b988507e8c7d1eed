"""``medzoo gan train`` / ``gan sample`` and the mixing of generated images into training folds.

A GAN run trains on the training folds of one split only (never on its validation or test
fold), records that split, and ``medzoo train --gan`` refuses a GAN run made for another split:
a generated image can never carry information from a test patient into training.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from medzoo import __version__, fsio
from medzoo.datasets import manifest, splits
from medzoo.errors import InputError

SYNTHETIC_PREFIX = "g"


def train_gan(ds_dir, out, *, epochs: int = 30, batch_size: int = 32, test_fold: int = 0,
              folds: int | None = None, seed: int = 0, base_width: int = 16,
              steps_per_epoch: int = 100, classifier_run=None, verbose: int = 1) -> dict:
    """Train the conditional GAN on the training folds of ``test_fold``; write the GAN run dir.

    The GAN run dir holds ``config.json``, ``generator.keras``, ``history.csv`` (d_loss, g_loss),
    ``curves.png``, ``samples/epoch-NNN.png`` (one grid per epoch, a row per class) and
    ``backup/`` (re-running the same command after a crash resumes). A GAN needs far more
    steps than a classifier on the same few images, so an "epoch" here is ``steps_per_epoch``
    batches drawn from the repeated training part.
    """
    import keras

    from medzoo.datasets import pipeline
    from medzoo.training import curves
    from medzoo.training.backup import make_backup_callback
    from medzoo.training.fit import dataset_fingerprint, split_record_ids
    from medzoo.zoo.gan import build_gan

    ds_dir, out = Path(ds_dir), Path(out)
    info = manifest.read_dataset_info(ds_dir)
    folds = int(folds or info["folds"])
    parts = split_record_ids(splits.fold_assignment(ds_dir, folds, int(info["seed"])),
                             test_fold, folds)
    if (out / "generator.keras").exists():
        raise InputError(f"{out}: holds a finished GAN run already; choose a new --out")
    height, width = info["image_size"]
    input_shape = (height, width, int(info["channels"]))
    config = {"medzoo_version": __version__, "kind": "conditional_gan",
              "input_shape": list(input_shape), "classes": info["classes"],
              "data": {"dir": str(ds_dir.resolve()), "fingerprint": dataset_fingerprint(ds_dir)},
              "folds": folds, "split_seed": int(info["seed"]), "test_fold": test_fold,
              "val_fold": (test_fold + 1) % folds, "trained_on": "training folds only",
              "n_train": len(parts["train"]), "epochs": epochs, "batch_size": batch_size,
              "steps_per_epoch": steps_per_epoch,
              "seed": seed, "base_width": base_width}
    out.mkdir(parents=True, exist_ok=True)
    fsio.write_json(out / "config.json", config)
    keras.utils.set_random_seed(seed)
    data = pipeline.make_dataset(ds_dir, parts["train"], target="label", batch_size=batch_size,
                                 shuffle=True, seed=seed).repeat()
    gan = build_gan(input_shape, len(info["classes"]), base_width=base_width)
    gan.compile()
    started = time.monotonic()
    tracking = []
    if classifier_run:
        from medzoo.datasets import records
        from medzoo.zoo import saving

        classifier = saving.load_model(Path(classifier_run) / "model.keras")
        real = np.stack([r["image"] for r in records.read_records(ds_dir, parts["train"])])
        tracking = [FrechetTracker(feature_extractor(classifier), real, len(info["classes"]),
                                   seed=seed)]
        config["classifier_run"] = "given (features for the Fréchet distance per epoch)"
    # The tracker writes into the epoch's logs, so it must run before the CSV logger.
    gan.fit(data, epochs=epochs, steps_per_epoch=steps_per_epoch, verbose=verbose,
            shuffle=False, callbacks=[
        *tracking,
        keras.callbacks.CSVLogger(str(out / "history.csv"), append=True),
        SampleGrid(out / "samples", len(info["classes"]), seed=seed),
        make_backup_callback(out / "backup", out / "history.csv"),  # last: after the log
    ])
    config["train_seconds"] = round(time.monotonic() - started, 2)
    with fsio.atomic_path(out / "generator.keras", suffix=".keras") as tmp:
        gan.generator.save(tmp)
    history = curves.read_history(out / "history.csv")
    plot_gan_losses(history, out / "curves.png")
    config["epochs_run"] = len(history)
    fsio.write_json(out / "config.json", config)
    return config


def plot_gan_losses(history: list[dict], path: Path) -> Path:
    """Discriminator and generator hinge losses per epoch (PNG + SVG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from medzoo.figures import save_figure

    fig, ax = plt.subplots(figsize=(6, 3.5))
    epochs = [row["epoch"] + 1 for row in history]
    for key, label in (("d_loss", "discriminator"), ("g_loss", "generator")):
        ax.plot(epochs, [row.get(key, np.nan) for row in history], "-o", markersize=3,
                label=label)
    ax.set_xlabel("Epoch")
    ax.set_ylabel("Hinge loss")
    ax.set_title(f"GAN losses per epoch ({len(history)} epochs)")
    ax.legend()
    return save_figure(fig, path)


class FrechetTracker:  # a keras.callbacks.Callback, built lazily so importing stays TF-free
    """Adds ``frechet`` (generated vs real training features) to every epoch's logs."""

    def __new__(cls, extractor, real_images: np.ndarray, num_classes: int, seed: int = 0):
        import keras

        real_features = _features(extractor, real_images)

        class _FrechetTracker(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                labels = np.arange(len(real_images)) % num_classes
                images = generate(self.model.generator, labels, seed=seed)
                if logs is not None:
                    logs["frechet"] = frechet_distance(real_features,
                                                       _features(extractor, images))

        return _FrechetTracker()


class SampleGrid:  # a keras.callbacks.Callback, built lazily so importing stays TF-free
    def __new__(cls, folder: Path, num_classes: int, seed: int = 0, per_class: int = 6):
        import keras

        class _SampleGrid(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                latent = np.random.default_rng(seed).standard_normal(
                    (num_classes * per_class, self.model.latent_dim)).astype("float32")
                labels = np.repeat(np.arange(num_classes), per_class).astype("int32")
                images = np.asarray(self.model.generator([latent, labels], training=False))
                save_grid(images, Path(folder) / f"epoch-{epoch + 1:03d}.png", per_class)

        return _SampleGrid()


def save_grid(images: np.ndarray, path: Path, columns: int) -> Path:
    """Tile images (N, H, W, C) in [0, 1] into one grey PNG, ``columns`` per row."""
    from PIL import Image

    n, h, w = images.shape[:3]
    rows = int(np.ceil(n / columns))
    canvas = np.zeros((rows * (h + 2), columns * (w + 2)), np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        canvas[r * (h + 2):r * (h + 2) + h, c * (w + 2):c * (w + 2) + w] = np.clip(
            image[..., 0] * 255, 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with fsio.atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(canvas).save(tmp, format="PNG")
    return path


def load_generator(gan_run) -> tuple:
    """The generator of a finished GAN run and the run's config."""
    from medzoo.zoo import saving

    gan_run = Path(gan_run)
    if not (gan_run / "generator.keras").is_file():
        raise InputError(f"{gan_run}: expected a finished GAN run (generator.keras)")
    config = fsio.read_json(gan_run / "config.json")
    return saving.load_model(gan_run / "generator.keras"), config


def generate(generator, labels: np.ndarray, *, seed: int = 0, batch_size: int = 64) -> np.ndarray:
    """Images for the given class ``labels`` (N,), float32 (N, H, W, C) in [0, 1]."""
    latent_dim = int(generator.inputs[0].shape[-1])
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((len(labels), latent_dim)).astype("float32")
    labels = np.asarray(labels, "int32")
    chunks = [np.asarray(generator([latent[i:i + batch_size], labels[i:i + batch_size]],
                                   training=False)) for i in range(0, len(labels), batch_size)]
    return np.concatenate(chunks) if chunks else np.zeros((0,), "float32")


def check_gan_matches(gan_config: dict, config: dict) -> None:
    """Refuse a GAN run made for another split or dataset (it may have seen test patients)."""
    same = (gan_config["data"]["fingerprint"] == config["data"]["fingerprint"]
            and gan_config["folds"] == config["folds"]
            and gan_config["test_fold"] == config["test_fold"]
            and gan_config["split_seed"] == config["split_seed"])
    if not same:
        raise InputError(
            "--gan: the GAN run was trained for another dataset or split (data fingerprint, "
            f"folds {gan_config['folds']}, test fold {gan_config['test_fold']}); expected the "
            f"same as this run (folds {config['folds']}, test fold {config['test_fold']}) — "
            "otherwise generated images could carry test patients into training")


def synthetic_training_set(gan_run, config: dict, train_labels: np.ndarray, ratio: float,
                           seed: int):
    """``(images, labels)`` of ``round(ratio × n_train)`` generated images, class-balanced like
    the training labels, for the training part only."""
    if ratio <= 0:
        raise InputError(f"--gan-ratio must be > 0. Received: {ratio}")
    generator, gan_config = load_generator(gan_run)
    check_gan_matches(gan_config, config)
    n = int(round(ratio * len(train_labels)))
    rng = np.random.default_rng(seed)
    labels = rng.choice(np.asarray(train_labels, "int32"), size=n, replace=True)
    return generate(generator, labels, seed=seed), labels


def sample_to_dataset(gan_run, n: int, out, *, seed: int = 0) -> dict:
    """``medzoo gan sample``: ``n`` generated images (balanced over classes) as a dataset dir.

    Every record id starts with ``g``, every patient key is ``synthetic`` and ``dataset.json``
    says ``"synthetic": true``, so the samples can never pass for patient images.
    """
    from medzoo.datasets import records

    generator, gan_config = load_generator(gan_run)
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise InputError(f"{out}: exists and is not empty; choose a new --out")
    classes = gan_config["classes"]
    labels = np.arange(n) % len(classes)
    images = generate(generator, labels, seed=seed)
    height, width, channels = gan_config["input_shape"]
    (out / "shards").mkdir(parents=True, exist_ok=True)
    index = []
    writer = records.ShardWriter(out / "shards")
    for i, (image, label) in enumerate(zip(images, labels)):
        record_id = f"{SYNTHETIC_PREFIX}{i + 1:06d}"
        writer.write(records.record_features(record_id, image.astype("float32"), int(label)))
        index.append({"record_id": record_id, "row": 0, "frame": 1, "patient": "synthetic",
                      "study": "synthetic", "series": "synthetic", "label": int(label),
                      "fold": -1, "modality": "SYNTHETIC", "window_center": "nan",
                      "window_width": "nan", "photometric": "MONOCHROME2", "has_mask": 0})
    writer.close()
    fsio.write_csv(out / "index.csv", index, list(index[0]) if index else ["record_id"])
    fsio.write_csv(out / "rejected.csv", [], ["row", "path", "reason"])
    info = {"schema_version": 1, "task": "classification", "synthetic": True,
            "generator": {"gan_run_fingerprint": gan_config["data"]["fingerprint"],
                          "test_fold": gan_config["test_fold"]},
            "image_size": [height, width], "channels": channels, "classes": classes,
            "has_mask": False, "window": "n/a (generated)", "folds": 1, "seed": seed,
            "counts": {"inputs": n, "loaded": n, "rejected": 0, "records": n,
                       "per_class": {c: int((labels == i).sum()) for i, c in enumerate(classes)}},
            "pixel_stats": {"mean": float(images.mean()), "std": float(images.std())}}
    fsio.write_json(out / "dataset.json", info)
    return info


def feature_extractor(classifier):
    """The classifier's penultimate features (the input of its ``probabilities`` layer)."""
    import keras

    return keras.Model(classifier.inputs, classifier.get_layer("probabilities").input)


def _features(extractor, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    return np.concatenate([np.asarray(extractor(images[i:i + batch_size], training=False))
                           for i in range(0, len(images), batch_size)])


def two_sample_test(real: np.ndarray, synthetic: np.ndarray, seed: int = 0) -> dict:
    """Classifier two-sample test (Lopez-Paz & Oquab 2017) with a linear discriminant.

    Half of each set fits a regularised Fisher discriminant; its accuracy on the other half is
    tested against 0.5 (one-sided exact binomial). Accuracy near 0.5 means the features cannot
    tell generated from real images.
    """
    from scipy import stats

    rng = np.random.default_rng(seed)
    x = np.concatenate([real, synthetic]).astype(np.float64)
    y = np.concatenate([np.zeros(len(real)), np.ones(len(synthetic))])
    order = rng.permutation(len(x))
    x, y = x[order], y[order]
    half = len(x) // 2
    fit_x, fit_y, test_x, test_y = x[:half], y[:half], x[half:], y[half:]
    mu0, mu1 = fit_x[fit_y == 0].mean(0), fit_x[fit_y == 1].mean(0)
    pooled = np.cov(fit_x.T) + 1e-3 * np.eye(x.shape[1])
    w = np.linalg.solve(np.atleast_2d(pooled), mu1 - mu0)
    predicted = (test_x - (mu0 + mu1) / 2) @ w > 0
    correct = int((predicted == test_y.astype(bool)).sum())
    result = stats.binomtest(correct, len(test_y), 0.5, alternative="greater")
    return {"test": "classifier two-sample test (linear discriminant, exact binomial)",
            "accuracy": correct / len(test_y), "n_test": int(len(test_y)),
            "p_value": float(result.pvalue)}


def gan_quality(gan_run, classifier_run, *, n_per_class: int = 64, seed: int = 0) -> dict:
    """How good are the samples, judged by a classifier trained on the real images.

    Per class: the fraction of generated images the classifier assigns to the intended class,
    and the Fréchet distance between real and generated features; overall, a real-vs-synthetic
    two-sample test. Writes ``quality.json`` into the GAN run.
    """
    from medzoo.datasets import records
    from medzoo.training.fit import read_config, split_record_ids
    from medzoo.zoo import saving

    generator, gan_config = load_generator(gan_run)
    classifier = saving.load_model(Path(classifier_run) / "model.keras")
    if read_config(classifier_run)["classes"] != gan_config["classes"]:
        raise InputError(f"{classifier_run}: its classes differ from the GAN run's")
    ds_dir = Path(gan_config["data"]["dir"])
    parts = split_record_ids(
        splits.fold_assignment(ds_dir, gan_config["folds"], gan_config["split_seed"]),
        gan_config["test_fold"], gan_config["folds"])
    real = list(records.read_records(ds_dir, parts["train"]))
    extractor = feature_extractor(classifier)
    result = {"classifier": "trained on real images", "n_per_class": n_per_class,
              "per_class": {}}
    all_real, all_fake = [], []
    for index, name in enumerate(gan_config["classes"]):
        images = generate(generator, np.full(n_per_class, index), seed=seed + index)
        assigned = np.asarray(classifier(images, training=False)).argmax(1)
        real_images = np.stack([r["image"] for r in real if r["label"] == index])
        real_features, fake_features = _features(extractor, real_images), _features(extractor,
                                                                                     images)
        all_real.append(real_features)
        all_fake.append(fake_features)
        result["per_class"][name] = {
            "classified_as_intended": float((assigned == index).mean()),
            "frechet_distance": frechet_distance(real_features, fake_features)}
    result["two_sample_test"] = two_sample_test(np.concatenate(all_real),
                                                np.concatenate(all_fake), seed)
    fsio.write_json(Path(gan_run) / "quality.json", result)
    return result


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (the FID formula).

    ``‖μa − μb‖² + Tr(Σa + Σb − 2 (Σa Σb)^½)``; features are (N, D) arrays.
    """
    from scipy import linalg

    a, b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(f"expected two (N>=2, D) feature arrays of equal D. Received: "
                         f"{a.shape} and {b.shape}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a = np.atleast_2d(np.cov(a, rowvar=False))
    cov_b = np.atleast_2d(np.cov(b, rowvar=False))
    root = np.real(linalg.sqrtm(cov_a @ cov_b))
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a + cov_b - 2.0 * root))
