"""Segmentation quality on held-out phantom volumes: medzoo 3D U-Net vs MONAI BasicUNet.

Same volumes, same split (patients), same patch size, batch, patches per epoch, epochs,
learning rate, the same foreground-oversampling rule (every third patch centred on a random
voxel of a random foreground class) and no augmentation on either side; both predict the held-out
volumes with a Gaussian sliding window (overlap 0.5) and both are scored by the same code
(:func:`medzoo.evaluation.surface.volume_metrics`: Dice, HD95, ASD, NSD in mm).

Three stages, two venvs (TensorFlow and torch are never installed together):

    # 1. medzoo: phantom dataset, train, export, evaluate; volumes dumped for MONAI (/work/venv)
    PYTHONPATH=$PWD python bench/volumes_quality.py medzoo --out /tmp/vq --patients 20 --epochs 20
    # 2. MONAI: train BasicUNet on the same patches, predict the test volumes (/work/venv-bench)
    PYTHONPATH=$PWD /work/venv-bench/bin/python bench/volumes_quality.py monai --out /tmp/vq --epochs 20
    # 3. score MONAI's predictions with medzoo's metrics; print both (/work/venv)
    PYTHONPATH=$PWD python bench/volumes_quality.py score --out /tmp/vq

At full phantom size (192 × 192 × 40, the plan's patch overridden to 32 × 64 × 64 so that two
CPU cores get through 40 epochs in well under an hour):

    PYTHONPATH=$PWD python bench/volumes_quality.py medzoo --synth --out /tmp/vqf --patients 24 \
        --patch-size 32,64,64 --epochs 40
    PYTHONPATH=$PWD /work/venv-bench/bin/python bench/volumes_quality.py monai --out /tmp/vqf --epochs 40
    PYTHONPATH=$PWD python bench/volumes_quality.py score --out /tmp/vqf

medzoo's 3D loss computes Dice over the batch (nnU-Net's 3D default); MONAI's stage does the
same unless ``--no-batch-dice`` (MONAI's own default, Dice per patch).

By default the phantoms are ``tests/volume_data.py``'s (an "organ" ellipsoid and a small "lesion"
sphere, 2 × 1 × 1 mm). With ``--synth`` they are ``medzoo data synth --volumes`` chest CTs (lungs,
heart, 3–20 mm lesions in half of the patients, each patient at its own spacing), ingested with
``--spacing auto`` (``--size``/``--slices`` shrink them, ``--patch-size`` overrides the plan's
patch), and medzoo trains ``unet`` with the CLI's defaults (default builder options, the plan's
batch size); MONAI gets the same patch, batch, patches per epoch and epochs:

    PYTHONPATH=$PWD python bench/volumes_quality.py medzoo --synth --out /tmp/vqs --patients 20 \
        --size 48 --slices 16 --patch-size 16,32,32 --epochs 8
    PYTHONPATH=$PWD /work/venv-bench/bin/python bench/volumes_quality.py monai --out /tmp/vqs --epochs 8
    PYTHONPATH=$PWD python bench/volumes_quality.py score --out /tmp/vqs
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
for extra in (ROOT, ROOT / "tests"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

PATCH = (16, 32, 32)
BATCH = 2
PATCHES_PER_VOLUME = 8
LEARNING_RATE = 1e-3


def stage_medzoo(args) -> None:
    from medzoo.datasets import splits
    from medzoo.datasets.volume_records import read_volume_records
    from medzoo.evaluation.evaluate import evaluate
    from medzoo.export.exporter import export_run
    from medzoo.training.fit import train
    from volume_data import write_volume_dataset

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.synth:
        ds = _synth_dataset(args, out)
        started = time.perf_counter()
        config = train("unet", ds, out / "run", epochs=args.epochs, seed=args.seed, verbose=0,
                       learning_rate=LEARNING_RATE, patience=args.epochs)
    else:
        ds = write_volume_dataset(out / "ds", patients=args.patients, folds=5, seed=args.seed,
                                  patch_size=PATCH)
        started = time.perf_counter()
        config = train("unet", ds, out / "run", epochs=args.epochs, seed=args.seed, verbose=0,
                       learning_rate=LEARNING_RATE, batch_size=BATCH, patience=args.epochs,
                       model_options={"base_width": 8})
    seconds = time.perf_counter() - started
    export = export_run(out / "run", out / "models", evaluator=evaluate)
    result = evaluate(export, ds, out / "eval", split="test", n_boot=200)
    fold_of = splits.fold_assignment(ds, 5, args.seed)
    npz = out / "npz"
    npz.mkdir(exist_ok=True)
    for rec in read_volume_records(ds):
        np.savez(npz / f"{rec['record_id']}.npz", image=rec["image"][..., 0], labels=rec["mask"],
                 spacing=np.array(rec["spacing"]), fold=fold_of[rec["record_id"]])
    card = json.loads((export / "model_card.json").read_text())
    plan = json.loads((ds / "plan.json").read_text()) if (ds / "plan.json").exists() else {}
    meta = {"patch_size": list(plan.get("patch_size") or PATCH), "batch_size": config["batch_size"],
            "label_classes": result["label_classes"], "synth": bool(args.synth)}
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    summary = {"medzoo": {"train_seconds": round(seconds, 1), "epochs": config["epochs_run"],
                          "parameters": card["model"]["parameters"], "test": result["metrics"],
                          "n_test": result["n"]},
               "split": {"test_fold": 0, "val_fold": 1}}
    (out / "medzoo.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary["medzoo"], indent=2))


def _synth_dataset(args, out: Path) -> Path:
    """``medzoo data synth --volumes`` → ``ingest --spacing auto`` (5 patient-grouped folds)."""
    def medzoo(*argv):
        subprocess.run([sys.executable, "-m", "medzoo", *map(str, argv)], check=True, cwd=out)

    if not (out / "phantoms" / "labels.csv").exists():
        medzoo("data", "synth", "phantoms", "--volumes", "--patients", args.patients, "--size", args.size,
               "--slices", args.slices, "--seed", args.seed)
    if not (out / "ds" / "dataset.json").exists():
        extra = ["--patch-size", args.patch_size] if args.patch_size else []
        medzoo("data", "ingest", "phantoms", "--labels", "phantoms/labels.csv", "--out", "ds",
               "--spacing", "auto", "--folds", 5, "--seed", args.seed, *extra)
    return out / "ds"


def _sample(rng, volumes, locations, index, patch=PATCH):
    """medzoo's rule (datasets/patches.py): every third patch on a random voxel of a random
    foreground class present; the others anywhere."""
    v = int(rng.integers(len(volumes)))
    image, labels = volumes[v]
    centre = None
    if math.floor((index + 1) / 3 + 1e-9) > math.floor(index / 3 + 1e-9) and locations[v]:
        cls = int(rng.choice(sorted(locations[v])))
        flat = locations[v][cls][int(rng.integers(locations[v][cls].size))]
        centre = np.unravel_index(int(flat), labels.shape)
    if centre is None:
        start = [int(rng.integers(0, s - p + 1)) for s, p in zip(labels.shape, patch)]
    else:
        start = [int(np.clip(c - p // 2, 0, s - p)) for c, s, p in zip(centre, labels.shape, patch)]
    window = tuple(slice(a, a + p) for a, p in zip(start, patch))
    return image[window], labels[window]


def stage_monai(args) -> None:
    import torch
    from monai.inferers import sliding_window_inference
    from monai.losses import DiceCELoss
    from monai.networks.nets import BasicUNet

    out = Path(args.out)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    data = {p.stem: np.load(p) for p in sorted((out / "npz").glob("*.npz"))}
    meta = (json.loads((out / "meta.json").read_text()) if (out / "meta.json").exists()
            else {"patch_size": PATCH, "batch_size": BATCH, "label_classes": [0, 1, 2]})
    patch, batch, n_classes = tuple(meta["patch_size"]), int(meta["batch_size"]), len(meta["label_classes"])
    train_ids = [k for k, d in data.items() if int(d["fold"]) not in (0, 1)]
    test_ids = [k for k, d in data.items() if int(d["fold"]) == 0]
    volumes = []
    for k in train_ids:
        image, labels = data[k]["image"].astype(np.float32), data[k]["labels"].astype(np.int64)
        pads = [(0, max(p - s, 0)) for s, p in zip(labels.shape, patch)]
        volumes.append((np.pad(image, pads), np.pad(labels, pads)))
    locations = [{c: np.flatnonzero(lab == c) for c in range(1, n_classes) if (lab == c).any()}
                 for _, lab in volumes]
    net = BasicUNet(spatial_dims=3, in_channels=1, out_channels=n_classes,
                    features=(8, 8, 16, 32, 64, 8))
    # batch=True: Dice over the whole batch, as medzoo's 3D training (and nnU-Net) computes it
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, include_background=False,
                         batch=args.batch_dice)
    optimizer = torch.optim.Adam(net.parameters(), lr=LEARNING_RATE)
    rng = np.random.default_rng(args.seed)
    steps = math.ceil(PATCHES_PER_VOLUME * len(train_ids) / batch)
    started = time.perf_counter()
    drawn = 0
    net.train()
    for _ in range(args.epochs):
        for _ in range(steps):
            pairs = [_sample(rng, volumes, locations, drawn + i, patch) for i in range(batch)]
            drawn += batch
            x = torch.from_numpy(np.stack([p[0] for p in pairs])[:, None].copy())
            y = torch.from_numpy(np.stack([p[1] for p in pairs])[:, None].copy())
            optimizer.zero_grad()
            loss = loss_fn(net(x), y)
            loss.backward()
            optimizer.step()
    seconds = time.perf_counter() - started
    net.eval()
    predictions = {}
    with torch.inference_mode():
        for k in test_ids:
            x = torch.from_numpy(data[k]["image"].astype(np.float32)[None, None])
            probs = sliding_window_inference(x, patch, batch, lambda b: torch.softmax(net(b), 1),
                                             overlap=0.5, mode="gaussian", sigma_scale=0.125)
            predictions[k] = probs[0].argmax(0).numpy().astype(np.uint8)
    np.savez(out / "monai_predictions.npz", **predictions)
    info = {"train_seconds": round(seconds, 1), "epochs": args.epochs, "batch_dice": args.batch_dice,
            "parameters": int(sum(p.numel() for p in net.parameters())), "n_test": len(test_ids)}
    (out / "monai.json").write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info, indent=2))


def stage_score(args) -> None:
    from medzoo.evaluation.surface import summarize, volume_metrics
    out = Path(args.out)
    if (out / "meta.json").exists():
        classes = json.loads((out / "meta.json").read_text())["label_classes"]
    else:
        from volume_data import LABEL_CLASSES as classes
    predictions = np.load(out / "monai_predictions.npz")
    per_volume = []
    for k in predictions.files:
        ref = np.load(out / "npz" / f"{k}.npz")
        per_volume.append(volume_metrics(predictions[k], ref["labels"], tuple(ref["spacing"]),
                                         classes, tolerance_mm=2.0))
    s = summarize(per_volume)
    monai = json.loads((out / "monai.json").read_text())
    medzoo = json.loads((out / "medzoo.json").read_text())["medzoo"]
    keys = ("dice", *(f"dice_{c}" for c in classes[1:]), "hd95", "asd", "nsd")
    monai_row = {"dice": s["mean"]["dice"], "hd95": s["mean"]["hd95"], "asd": s["mean"]["asd"],
                 "nsd": s["mean"]["nsd"]}
    monai_row.update({f"dice_{c}": s["per_class"][c]["dice"] for c in classes[1:]})
    rows = {"medzoo unet (Keras, ONNX)": {k: medzoo["test"].get(k) for k in keys},
            "MONAI BasicUNet (torch)": {k: monai_row[k] for k in keys}}
    rows["medzoo unet (Keras, ONNX)"]["train_seconds"] = medzoo["train_seconds"]
    rows["MONAI BasicUNet (torch)"]["train_seconds"] = monai["train_seconds"]
    result = {"n_test_volumes": monai["n_test"], "epochs": monai["epochs"], "results": rows}
    (out / "quality.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", choices=("medzoo", "monai", "score"))
    parser.add_argument("--out", required=True)
    parser.add_argument("--patients", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--synth", action="store_true",
                        help="medzoo data synth --volumes phantoms, ingest --spacing auto")
    parser.add_argument("--size", type=int, default=192, help="--synth: in-plane pixels")
    parser.add_argument("--slices", type=int, default=40, help="--synth: slices per series")
    parser.add_argument("--patch-size", default=None, help="--synth: D,H,W overriding the plan's")
    parser.add_argument("--batch-dice", action=argparse.BooleanOptionalAction, default=True,
                        help="monai: Dice over the batch (medzoo's 3D loss) or per patch "
                             "(MONAI's DiceCELoss default)")
    args = parser.parse_args()
    {"medzoo": stage_medzoo, "monai": stage_monai, "score": stage_score}[args.stage](args)


if __name__ == "__main__":
    main()
