"""Sliding-window inference of one whole volume: medzoo's ONNX path vs MONAI, same CPU.

Both sides run the *same network*: MONAI's ``BasicUNet`` (3D, random weights, seeded) in
PyTorch for MONAI, and the same weights exported to ONNX for medzoo. So the ratio measures what
medzoo adds on top of the model — onnxruntime instead of PyTorch eager, and
``medzoo.evaluation.sliding_window.sliding_window_inference`` (numpy) instead of
``monai.inferers.sliding_window_inference`` — with the same patch, overlap, window batch and
Gaussian blending (sigma = patch/8), the same thread count, alternating runs, median of the
repeats. A third path, MONAI's window logic around the same onnxruntime session, separates what
the runtime gives from what the window/blending code costs. It also reports how far the two blended outputs are apart (MONAI integrates its
Gaussian over each voxel, ``approx="erf"``, and centres it at ``patch // 2``; medzoo samples it
at the patch centre), and the share of voxels whose argmax class agrees.

Optionally (``--medzoo-onnx``) it also times a medzoo export (``medzoo export`` of a 3D
``unet`` run, its ``model.onnx``) through the same medzoo path, on its own patch size.

Runs in a separate venv holding torch, monai, numpy, onnx and onnxruntime only
(``bench/requirements-volumes.txt``), with medzoo's pure-numpy module on ``PYTHONPATH``:

    python3.11 -m venv /work/venv-bench
    /work/venv-bench/bin/pip install -r bench/requirements-volumes.txt
    PYTHONPATH=$PWD /work/venv-bench/bin/python bench/volumes.py --threads 2

No wall time is asserted; the figures are printed (and written as JSON with ``--json``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(","))


def build_basic_unet(classes: int, features, seed: int):
    import torch
    from monai.networks.nets import BasicUNet

    torch.manual_seed(seed)
    net = BasicUNet(spatial_dims=3, in_channels=1, out_channels=classes, features=features)
    return net.eval()


def export_onnx(net, patch, path: Path) -> None:
    """The torch network with a softmax head, exported channels-last (N, D, H, W, C) in and out,
    as medzoo's Keras exports are."""
    import torch

    class ChannelsLast(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, image):
            logits = self.inner(image.permute(0, 4, 1, 2, 3))
            return torch.softmax(logits, dim=1).permute(0, 2, 3, 4, 1)

    example = torch.zeros((1, *patch, 1))
    torch.onnx.export(ChannelsLast(net), (example,), str(path), input_names=["image"],
                      output_names=["mask"], dynamic_axes={"image": {0: "n"}, "mask": {0: "n"}},
                      opset_version=17, dynamo=False)


def monai_path(net, volume, patch, overlap, batch, mirror=False):
    import torch
    from monai.inferers import sliding_window_inference

    x = torch.from_numpy(volume[None, None])  # (1, 1, D, H, W)

    def predictor(batch_in):
        return torch.softmax(net(batch_in), dim=1)

    with torch.inference_mode():
        out = sliding_window_inference(x, patch, batch, predictor, overlap=overlap,
                                       mode="gaussian", sigma_scale=0.125)
    return out[0].permute(1, 2, 3, 0).numpy()


def monai_window_onnx_path(session, volume, patch, overlap, batch):
    """MONAI's window logic around the ONNX session: separates runtime from blending cost."""
    import torch
    from monai.inferers import sliding_window_inference

    def predictor(batch_in):
        probs = session.run(["mask"], {"image": batch_in.permute(0, 2, 3, 4, 1).numpy()})[0]
        return torch.from_numpy(probs).permute(0, 4, 1, 2, 3)

    with torch.inference_mode():
        out = sliding_window_inference(torch.from_numpy(volume[None, None]), patch, batch,
                                       predictor, overlap=overlap, mode="gaussian",
                                       sigma_scale=0.125)
    return out[0].permute(1, 2, 3, 0).numpy()


def medzoo_path(session, volume, patch, overlap, batch):
    from medzoo.evaluation.sliding_window import sliding_window_inference

    def predictor(batch_in):
        return session.run(["mask"], {"image": batch_in})[0]

    return sliding_window_inference(volume[..., None], patch, predictor, overlap=overlap,
                                    batch_size=batch, mode="gaussian", sigma_scale=0.125)


def session_for(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=options,
                                providers=["CPUExecutionProvider"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volume", type=_ints, default=(64, 160, 160), help="D,H,W voxels")
    parser.add_argument("--patch", type=_ints, default=(32, 64, 64))
    parser.add_argument("--overlap", type=float, default=0.5)
    parser.add_argument("--batch", type=int, default=2, help="windows per model call")
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--features", type=_ints, default=(8, 8, 16, 32, 64, 8),
                        help="BasicUNet features (6 widths)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--medzoo-onnx", type=Path, default=None,
                        help="also time this medzoo volume export's model.onnx")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    import onnxruntime
    import monai
    import torch

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    volume = rng.normal(size=args.volume).astype(np.float32)
    voxels = int(np.prod(args.volume))
    net = build_basic_unet(args.classes, args.features, args.seed)
    params = int(sum(p.numel() for p in net.parameters()))
    with tempfile.TemporaryDirectory() as scratch:
        onnx_path = Path(scratch) / "basic_unet.onnx"
        export_onnx(net, args.patch, onnx_path)
        session = session_for(onnx_path, args.threads)
        # warm-up (first calls allocate)
        monai_path(net, volume[:args.patch[0], :args.patch[1], :args.patch[2]].copy(), args.patch,
                   args.overlap, args.batch)
        medzoo_path(session, volume[:args.patch[0], :args.patch[1], :args.patch[2]].copy(),
                    args.patch, args.overlap, args.batch)
        paths = {"monai": lambda: monai_path(net, volume, args.patch, args.overlap, args.batch),
                 "medzoo": lambda: medzoo_path(session, volume, args.patch, args.overlap,
                                               args.batch),
                 "monai_window_onnxruntime": lambda: monai_window_onnx_path(
                     session, volume, args.patch, args.overlap, args.batch)}
        times = {name: [] for name in paths}
        outputs = {}
        for _ in range(args.repeats):
            for name, run in paths.items():  # alternate: drifts in machine load hit all
                started = time.perf_counter()
                outputs[name] = run()
                times[name].append(time.perf_counter() - started)
        median = {k: statistics.median(v) for k, v in times.items()}
        difference = float(np.abs(outputs["monai"] - outputs["medzoo"]).max())
        agreement = float(np.mean(outputs["monai"].argmax(-1) == outputs["medzoo"].argmax(-1)))
        result = {
            "volume": list(args.volume), "patch": list(args.patch), "overlap": args.overlap,
            "window_batch": args.batch, "threads": args.threads, "repeats": args.repeats,
            "model": f"MONAI BasicUNet 3D features={list(args.features)}, {params:,} parameters, "
                     f"{args.classes} classes (same weights on both sides)",
            "seconds": {k: round(v, 3) for k, v in median.items()},
            "voxels_per_second": {k: round(voxels / v) for k, v in median.items()},
            "speed_ratio_medzoo_over_monai": round(median["monai"] / median["medzoo"], 3),
            "speed_ratio_medzoo_over_monai_window_with_onnxruntime": round(
                median["monai_window_onnxruntime"] / median["medzoo"], 3),
            "max_abs_probability_difference": round(difference, 6),
            "argmax_agreement": round(agreement, 6),
            "versions": {"torch": torch.__version__, "monai": monai.__version__,
                         "onnxruntime": onnxruntime.__version__, "numpy": np.__version__},
            "cpus": os.cpu_count(),
        }
    if args.medzoo_onnx is not None:
        session = session_for(args.medzoo_onnx, args.threads)
        shape = session.get_inputs()[0].shape
        patch = tuple(int(v) for v in shape[1:4])
        medzoo_path(session, volume[:patch[0], :patch[1], :patch[2]].copy(), patch, args.overlap,
                    args.batch)
        runs = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            medzoo_path(session, volume, patch, args.overlap, args.batch)
            runs.append(time.perf_counter() - started)
        result["medzoo_export"] = {"patch": list(patch), "seconds": round(statistics.median(runs), 3),
                                   "voxels_per_second": round(voxels / statistics.median(runs))}
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
