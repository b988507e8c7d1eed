"""``medzoo export`` and ``push``: run dir → export version → TF Serving model dir."""

from __future__ import annotations

from medzoo.commands.arguments import add_command


def add_export(sub) -> None:
    """``medzoo export RUN``."""
    p = add_command(sub, "export", "run dir → BASE/NAME/VERSION (SavedModel, ONNX, card, blessing)",
                    'medzoo export runs/cnn --out models --bless-if "auc>=0.85"')
    p.add_argument("run")
    p.add_argument("--out", required=True, help="model base folder")
    p.add_argument("--name")
    p.add_argument("--version", type=int)
    p.add_argument("--bless-if", action="append", default=[], metavar="RULE",
                   help="e.g. auc>=0.85 (repeatable)")
    p.add_argument("--baseline", help="blessed version the candidate must not be worse than")
    p.add_argument("--margin", type=float, default=0.0)
    p.add_argument("--tolerance", type=float, default=1e-4, help="parity tolerance")
    p.add_argument("--data", help="dataset dir for parity/validation (default: the run's)")
    p.add_argument("--onnx-opset", type=int)
    p.add_argument("--quantize", action="append", default=[], choices=["int8", "fp16"],
                   help="also write model.int8.onnx (static QDQ, calibrated on training images) "
                        "or model.fp16.onnx (repeatable)")
    p.add_argument("--max-drop", type=float, default=0.01,
                   help="refuse a quantised model whose validation AUC drops by more (default 0.01)")


def cmd_export(args) -> int:
    """``medzoo export RUN``: write and verify an export version; returns 0."""
    from medzoo.evaluation.evaluate import evaluate
    from medzoo.export.exporter import export_run

    version_dir = export_run(args.run, args.out, name=args.name, version=args.version,
                             bless_if=args.bless_if, baseline=args.baseline, margin=args.margin,
                             tolerance=args.tolerance, data_dir=args.data, opset=args.onnx_opset,
                             quantize=args.quantize, max_drop=args.max_drop, evaluator=evaluate)
    status = "BLESSED" if (version_dir / "BLESSED").exists() else "NOT_BLESSED"
    print(f"exported {version_dir} ({status})")
    return 0


def add_push(sub) -> None:
    """``medzoo push VERSION_DIR``."""
    p = add_command(sub, "push", "copy a BLESSED export version into a TF Serving model dir",
                    "medzoo push models/cnn/1 --to serving")
    p.add_argument("version_dir")
    p.add_argument("--to", required=True)


def cmd_push(args) -> int:
    """``medzoo push VERSION_DIR``: copy a blessed version for TF Serving; returns 0."""
    from medzoo.export.push import push

    print(f"pushed → {push(args.version_dir, args.to)}")
    return 0
