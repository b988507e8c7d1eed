"""The ``medzoo`` command: one sub-command per step of the chain (DESIGN.md).

Thin by design: parse, call one function, print. Nothing heavy is imported at module level, so
``medzoo --help`` answers without loading TensorFlow. Bad usage or bad input → one line on stderr
and exit status 2; a batch that finished with rejections exits 0 (1 with ``--strict``).

The commands themselves live in :mod:`medzoo.commands`, one module per command group; this
module puts their parsers together, imports TensorFlow (quietly) for the commands that need it,
and turns errors into exit statuses.
"""

from __future__ import annotations

import argparse
import os
import sys

from medzoo import __version__
from medzoo.commands import data, demo, evaluation, export, predict, training
from medzoo.commands.arguments import formatter
from medzoo.errors import MedzooError

EXAMPLES = """examples:
  medzoo demo --out demo-out
  medzoo data synth phantoms --patients 60 --seed 0
  medzoo data ingest phantoms --labels phantoms/labels.csv --out ds
  medzoo train auto --data ds --out runs/auto
  medzoo train cnn --data ds --out runs/cnn --epochs 12
  medzoo export runs/cnn --out models --bless-if "auc>=0.85"
  medzoo evaluate models/cnn/1 --data ds --out eval
  medzoo cv cnn unet --data ds --folds 5 --out cv
"""



def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medzoo", description="A TensorFlow/Keras model zoo for medical imaging.",
        epilog=EXAMPLES, formatter_class=formatter)
    parser.add_argument("--version", action="version", version=f"medzoo {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    # in the order `medzoo --help` lists them
    training.add_models(sub)
    data.add_data(sub)
    training.add_train(sub)
    training.add_gan(sub)
    export.add_export(sub)
    export.add_push(sub)
    evaluation.add_evaluate(sub)
    evaluation.add_cv(sub)
    predict.add_predict(sub)
    evaluation.add_explain(sub)
    evaluation.add_report(sub)
    demo.add_demo(sub)
    return parser


COMMANDS = {"models": training.cmd_models, "data": data.cmd_data, "train": training.cmd_train,
            "gan": training.cmd_gan, "export": export.cmd_export, "push": export.cmd_push,
            "evaluate": evaluation.cmd_evaluate, "cv": evaluation.cmd_cv,
            "report": evaluation.cmd_report, "explain": evaluation.cmd_explain,
            "predict": predict.cmd_predict, "demo": demo.cmd_demo}


# Commands whose work imports TensorFlow (evaluate, report, push and data stay without it).
TENSORFLOW_COMMANDS = {"models", "train", "gan", "export", "cv", "explain", "demo"}


def _import_tensorflow_quietly() -> None:
    """Import TensorFlow with file descriptor 2 muted.

    Its C++ start-up logging (absl, CUDA probing) writes to stderr whatever
    ``TF_CPP_MIN_LOG_LEVEL`` says, which would bury medzoo's one-line errors.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def main(argv=None) -> int:
    """Entry point of the ``medzoo`` console script; returns the exit status."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    args = build_parser().parse_args(argv)
    try:
        if args.command in TENSORFLOW_COMMANDS or getattr(args, "runtime", "") == "savedmodel":
            _import_tensorflow_quietly()
        return COMMANDS[args.command](args)
    except MedzooError as exc:
        print(f"medzoo {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # disk full, permission denied: the environment, not the input
        where = f" {exc.filename}" if exc.filename else ""
        print(f"medzoo {args.command}: error: cannot write or read{where}: "
              f"{exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"medzoo {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
