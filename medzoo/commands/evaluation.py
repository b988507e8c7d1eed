"""``medzoo evaluate``, ``cv``, ``explain`` and ``report``: scores, statistics, overlays."""

from __future__ import annotations

import json

from medzoo.commands.arguments import add_command, segment_map_type
from medzoo.errors import MedzooError


def add_evaluate(sub) -> None:
    """``medzoo evaluate``: exports on datasets, or predictions against references."""
    p = add_command(sub, "evaluate", "score exports (or model.onnx files) on datasets with onnxruntime",
                    "medzoo evaluate models/cnn/1 models/unet/1 --data ds --data ds-site2 --out eval")
    p.add_argument("models", nargs="*", metavar="MODEL", help="export version dir or .onnx file")
    p.add_argument("--data", action="append", metavar="DS",
                   help="dataset dir (repeatable: every model is scored on every dataset)")
    p.add_argument("--predictions", metavar="DIR",
                   help="instead of MODEL/--data: predicted SEGs scored against --reference "
                        "(Dice, HD95 per structure; see docs/annotations.md)")
    p.add_argument("--reference", metavar="DIR", help="reference SEG / RTSTRUCT / NIfTI files")
    p.add_argument("--images", metavar="DICOM_DIR", help="the series the predictions segment")
    p.add_argument("--segment-map", type=segment_map_type, metavar="NAME=CLASS,...",
                   help="segment / ROI names → classes, for predictions and references alike")
    p.add_argument("--label-classes", metavar="NAMES",
                   help="reference classes, e.g. background,lung,heart,lesion (NIfTI values "
                        "0, 1, 2, … are these; SEG/RTSTRUCT segments must map into them)")
    p.add_argument("--out", required=True,
                   help="eval dir; with several models or datasets, one subfolder per pair + table.csv")
    p.add_argument("--split", default="test", help="test (default), fold:I or all")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, help="onnxruntime intra-op threads (default: its choice)")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                   help="bootstrap resamples of patients for the 95%% CIs (0: none)")
    p.add_argument("--strict", action="store_true", help="exit 1 when any model/dataset pair failed")
    p.add_argument("--json", action="store_true",
                   help="print metrics.json (one pair) or the table rows (several) as JSON")
    p.add_argument("--engine", default="local", choices=["local", "ray"],
                   help="where onnxruntime runs: this process, or Ray Data over the shards "
                        "(pip install 'medzoo[ray]')")
    p.add_argument("--address", help="Ray cluster address for --engine ray (default: a local Ray)")


def cmd_evaluate(args) -> int:
    """``medzoo evaluate``; returns 1 with ``--strict`` when a pair failed, else 0."""
    if args.predictions or args.reference:
        return _evaluate_reference(args)
    if not args.models or not args.data:
        raise MedzooError("medzoo evaluate needs MODEL ... --data DS, or --predictions DIR "
                          "--reference DIR --images DICOM_DIR. Received: neither")
    from medzoo.evaluation.evaluate import evaluate_many

    if args.threads is not None and args.threads < 1:
        raise MedzooError(f"--threads must be a positive integer. Received: {args.threads}")
    if args.address and args.engine != "ray":
        raise MedzooError(f"--address is for --engine ray. Received: --engine {args.engine}")
    many = evaluate_many(args.models, args.data, args.out, split=args.split, batch_size=args.batch_size,
                         threads=args.threads, n_boot=args.bootstrap, engine=args.engine,
                         address=args.address)
    single = len(many["rows"]) == 1
    if args.json:
        print(json.dumps(many["results"][0] if single else many["rows"], indent=2, default=str))
    elif single:
        print(_headline(many["results"][0]) + f"  → {args.out}")
    else:
        for row, result in zip(many["rows"], many["results"]):
            shown = _headline(result) if result else f"FAILED: {row['reason']}"
            print(f"{row['model']} on {row['dataset']}: {shown}")
        print(f"evaluated {many['evaluated']} of {len(many['rows'])} model/dataset pairs, "
              f"failed {many['failed']} → {many['table']}")
    return 1 if args.strict and many["failed"] else 0


def _evaluate_reference(args) -> int:
    from medzoo.evaluation.reference import describe, evaluate_against_reference

    if not (args.predictions and args.reference and args.images) or args.models or args.data:
        raise MedzooError("--predictions needs --reference and --images, and no MODEL/--data. "
                          f"Received: predictions={args.predictions}, reference={args.reference}, "
                          f"images={args.images}, models={args.models}, data={args.data}")
    segment_map = args.segment_map
    classes = [c.strip() for c in args.label_classes.split(",")] if args.label_classes else None
    try:
        summary = evaluate_against_reference(args.predictions, args.reference, args.images,
                                             args.out, class_names=classes,
                                             segment_map=segment_map)
    except ValueError as e:  # a class list that is not usable
        raise MedzooError(f"--label-classes: {e}") from None
    print(json.dumps(summary, indent=2) if args.json else describe(summary) + f" → {args.out}")
    return 1 if args.strict and summary["rejected"] else 0


def _headline(result: dict) -> str:
    metrics = result.get("metrics", {})
    keys = ("accuracy", "sensitivity", "specificity", "auc", "dice")
    shown = ", ".join(f"{k}={metrics[k]:.3f}" for k in keys if isinstance(metrics.get(k), float))
    return f"n={result.get('n')} {shown}"


def add_cv(sub) -> None:
    """``medzoo cv MODEL ...``."""
    p = add_command(sub, "cv", "k-fold cross-validation of one or more zoo models, with statistics",
                    "medzoo cv cnn unet --data ds --folds 5 --repeats 2 --out cv")
    p.add_argument("models", nargs="+")
    p.add_argument("--data", required=True)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--repeats", type=int, default=1,
                   help="repeated CV: repeat r>0 re-splits the patients with split seed (dataset seed + r)")
    p.add_argument("--out", required=True, help="CV dir; a re-run skips folds already evaluated")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seed", type=int, default=0, help="weight initialisation and shuffling")
    p.add_argument("--option", action="append", default=[], metavar="[MODEL.]KEY=VALUE",
                   help="builder option for every model, or for MODEL only (repeatable)")


def cmd_cv(args) -> int:
    """``medzoo cv MODEL ...``: cross-validation with statistics; returns 0."""
    from medzoo.evaluation.crossval import run_cv
    from medzoo.zoo.options import parse_pairs

    summary = run_cv(args.models, args.data, args.out, folds=args.folds, epochs=args.epochs,
                     seed=args.seed, repeats=args.repeats, batch_size=args.batch_size, verbose=0,
                     model_options=parse_pairs(args.option, args.models))
    for line in summary["lines"]:
        print(line)
    return 0


def add_explain(sub) -> None:
    """``medzoo explain RUN DATA``."""
    p = add_command(sub, "explain", "Grad-CAM overlays for a trained classifier on a dataset split",
                    "medzoo explain runs/cnn ds --out evals/cnn/explain && medzoo report evals/cnn")
    p.add_argument("run", help="a finished classifier run dir")
    p.add_argument("data", help="its dataset dir")
    p.add_argument("--out", required=True,
                   help="folder for the overlays; an eval dir's explain/ puts them in its report")
    p.add_argument("--split", default="test", help="test (default), fold:I or all")
    p.add_argument("--limit", type=int, default=4,
                   help="overlays per kind: most confident correct and incorrect (default 4)")
    p.add_argument("--class-index", type=int, default=1,
                   help="class whose evidence is shown (default 1, the first finding)")


def cmd_explain(args) -> int:
    """``medzoo explain RUN DATA``: Grad-CAM overlays; returns 0."""
    from medzoo.evaluation.explain import explain_dataset

    summary = explain_dataset(args.run, args.data, args.out, split=args.split, limit=args.limit,
                              class_index=args.class_index)
    games = summary.get("pointing_game") or {}
    extra = "; ".join(f"{name.replace('_', ' ')} {g['hit_rate']:.0%}" for name, g in games.items())
    if extra:
        n = next(iter(games.values()))["n"]
        extra = f"; pointing game on {n} correct positives: {extra}"
    print(f"wrote {len(summary['cases'])} overlays → {args.out}{extra}")
    return 0


def add_report(sub) -> None:
    """``medzoo report DIR``."""
    p = add_command(sub, "report", "write report.html for a CV or eval dir", "medzoo report cv")
    p.add_argument("dir")


def cmd_report(args) -> int:
    """``medzoo report DIR``: write report.html; returns 0."""
    from medzoo.evaluation.report import write_report

    print(f"wrote {write_report(args.dir)}")
    return 0
