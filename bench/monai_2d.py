"""MONAI DenseNet121 (classification) and BasicUNet (segmentation) on a medzoo dataset, for a
fixed wall time: the other side of the issue-19 comparison.

    /work/venv-monai/bin/python bench/monai_2d.py DATA.npz --seconds 120 --task cls
    /work/venv-monai/bin/python bench/monai_2d.py DATA.npz --seconds 120 --task seg

DATA.npz comes from bench/dataset_npz.py (the same stored images and patient folds medzoo
trains on). Trains on every fold except test fold 0 and validation fold 1 (medzoo's split),
keeps the weights with the best validation loss, and prints one JSON line with the held-out
AUC (classification: softmax score of class 1) or Dice (segmentation: mean over records, 1.0
where truth and prediction are both empty — medzoo's rule) and the epochs it managed.
"""

from __future__ import annotations

import argparse
import copy
import json
import time

import numpy as np


def auc(y, s) -> float:
    y, s = np.asarray(y), np.asarray(s)
    pos, neg = s[y == 1], s[y == 0]
    if not len(pos) or not len(neg):
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def dice(pred, truth) -> float:
    scores = []
    for p, t in zip(pred, truth):
        denom = p.sum() + t.sum()
        scores.append(1.0 if denom == 0 else 2.0 * (p & t).sum() / denom)
    return float(np.mean(scores))


def main(argv=None) -> int:
    import torch
    from monai.networks.nets import BasicUNet, DenseNet121

    parser = argparse.ArgumentParser()
    parser.add_argument("data")
    parser.add_argument("--task", choices=["cls", "seg"], default="cls")
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    data = np.load(args.data)
    x = torch.from_numpy(np.moveaxis(data["images"], -1, 1).copy())
    y, m, folds = data["labels"], data["masks"], data["folds"]
    test, val = folds == 0, folds == 1
    train = ~(test | val)
    if args.task == "cls":
        net = DenseNet121(spatial_dims=2, in_channels=x.shape[1], out_channels=2)
        target = torch.from_numpy(y).long()
        loss_fn = torch.nn.CrossEntropyLoss()
    else:
        net = BasicUNet(spatial_dims=2, in_channels=x.shape[1], out_channels=1)
        target = torch.from_numpy(m[:, None].astype(np.float32))
        bce = torch.nn.BCEWithLogitsLoss()

        def loss_fn(logits, t):  # Dice + BCE, as medzoo's DiceBCELoss
            p = torch.sigmoid(logits)
            inter = (p * t).sum((1, 2, 3))
            soft = 1 - (2 * inter + 1) / (p.sum((1, 2, 3)) + t.sum((1, 2, 3)) + 1)
            return soft.mean() + bce(logits, t)
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    idx = np.flatnonzero(train)
    rng = np.random.default_rng(args.seed)
    started, epochs, best, best_state = time.monotonic(), 0, float("inf"), None
    while time.monotonic() - started < args.seconds:
        net.train()
        for b in np.array_split(rng.permutation(idx), max(1, len(idx) // args.batch_size)):
            opt.zero_grad()
            loss = loss_fn(net(x[b]), target[b])
            loss.backward()
            opt.step()
            if time.monotonic() - started >= args.seconds:
                break
        epochs += 1
        net.eval()
        with torch.no_grad():
            v = np.flatnonzero(val)
            vloss = float(loss_fn(net(x[v]), target[v]))
        if vloss < best:
            best, best_state = vloss, copy.deepcopy(net.state_dict())
    net.load_state_dict(best_state or net.state_dict())
    net.eval()
    with torch.no_grad():
        out = net(x[np.flatnonzero(test)])
    if args.task == "cls":
        score = torch.softmax(out, 1)[:, 1].numpy()
        result = {"model": "monai DenseNet121", "auc": round(auc(y[test], score), 4)}
    else:
        pred = (torch.sigmoid(out)[:, 0].numpy() >= 0.5)
        result = {"model": "monai BasicUNet", "dice": round(dice(pred, m[test] > 0), 4),
                  "auc_max_prob": round(auc(y[test], torch.sigmoid(out).amax((1, 2, 3)).numpy()), 4)}
    result.update(epochs=epochs, seconds=round(time.monotonic() - started, 1),
                  n_test=int(test.sum()), size=int(x.shape[-1]))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
