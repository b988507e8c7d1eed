"""The ``medzoo`` command: one sub-command per step of the chain (DESIGN.md).

Thin by design: parse, call one function, print. Nothing heavy is imported at module level, so
``medzoo --help`` answers without loading TensorFlow. Bad usage or bad input → one line on stderr
and exit status 2; a batch that finished with rejections exits 0 (1 with ``--strict``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from medzoo import __version__
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


def _formatter(prog):
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def _add(sub, name: str, help_text: str, example: str):
    return sub.add_parser(name, help=help_text, description=help_text,
                          epilog=f"example:\n  {example}", formatter_class=_formatter)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medzoo", description="A TensorFlow/Keras model zoo for medical imaging.",
        epilog=EXAMPLES, formatter_class=_formatter)
    parser.add_argument("--version", action="version", version=f"medzoo {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = _add(sub, "models", "list the zoo: name, task, inputs, outputs, parameters; "
             "with NAME: its options, their defaults and types, and presets",
             "medzoo models unet")
    p.add_argument("name", nargs="?", metavar="NAME", help="one model: its options and presets")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--size", type=int, default=64, help="input size for parameter counts")

    data = _add(sub, "data", "make, ingest and inspect datasets", "medzoo data synth phantoms")
    data_sub = data.add_subparsers(dest="data_command", metavar="STEP", required=True)
    p = _add(data_sub, "synth", "write synthetic phantom DICOM studies and labels.csv",
             "medzoo data synth phantoms --patients 60 --modality ct --size 64 --seed 0")
    p.add_argument("out")
    p.add_argument("--patients", type=int, default=60)
    p.add_argument("--modality", default="ct", choices=["ct", "mr", "cr", "us", "mixed"])
    p.add_argument("--size", type=int, default=None,
                   help="rows and columns of each image (default: 64 easy and medium, 192 hard; "
                        "192 with --volumes)")
    p.add_argument("--slices", type=int, help="slices per patient (default 4; 40 with --volumes)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--volumes", action="store_true",
                   help="chest-CT volumes at per-patient spacing with label maps "
                        "(lung, heart, lesion); see docs/volumes-data.md")
    p.add_argument("--compress", choices=["rle", "jpeg-ls", "j2k"],
                   help="lossless compressed transfer syntax (default: uncompressed)")
    p.add_argument("--paired", action="store_true",
                   help="co-registered CT + MR per patient; labels.csv path,path_mr,label,mask")
    p.add_argument("--classes", type=int, default=2,
                   help="2 (normal, lesion) or 3 (normal, nodule, ground_glass: by density)")
    p.add_argument("--multi-label", action="store_true",
                   help="findings nodule and ground_glass independently (label nodule|ground_glass)")
    p.add_argument("--positive-fraction", type=float, metavar="F",
                   help="fraction of patients with a finding, e.g. 0.1 for 1:9 (default: balanced)")
    _add_difficulty_arguments(p)
    p = _add(data_sub, "ingest", "DICOM folder + labels.csv → dataset dir (TFRecord shards); "
             "a killed ingest resumes when the same command is run again",
             "medzoo data ingest phantoms --labels phantoms/labels.csv --out ds")
    p.add_argument("dicom_dir")
    p.add_argument("--labels",
                   help="labels.csv: path,label[,mask]; more inputs as path_<name> columns "
                        "(required unless --layout msd)")
    p.add_argument("--out", required=True)
    p.add_argument("--size", type=_size_or_auto, default="auto",
                   help="image size in px, or auto (default): chosen from the native size, the "
                        "smallest findings in the masks and a time budget (dataset.json `plan`)")
    p.add_argument("--window", action="append", metavar="WINDOW",
                   help="auto (default), lung, mediastinum, brain, bone, abdomen, or "
                        "CENTER,WIDTH (write --window=-600,1500); once, or once per input column")
    p.add_argument("--color", default="grey", choices=["grey", "rgb"],
                   help="colour images as luma (default) or 3 channels")
    p.add_argument("--volumes", metavar="D,H,W",
                   help="write one resampled D x H x W volume per series instead of slices")
    p.add_argument("--spacing", metavar="auto|Z,Y,X",
                   help="native-spacing volumes: one record per series resampled to the plan's "
                        "target spacing (auto) or Z,Y,X mm; label maps as masks")
    p.add_argument("--label-classes", metavar="NAMES",
                   help="voxel classes of .npy label maps, e.g. background,lung,heart,lesion "
                        "(default: label_classes.json beside labels.csv)")
    _plan_options(p)
    p.add_argument("--series-issues", default="warn", choices=["warn", "reject"],
                   help="2D: keep series with gaps/duplicates/mixed geometry (warnings.csv) "
                        "or reject their files")
    p.add_argument("--denoise", metavar="MODE[:SIZE]", help="median[:3] or gaussian[:3]")
    p.add_argument("--enhance", metavar="MODE", help="histeq or clahe[:TILES[:CLIP]]")
    p.add_argument("--standardize", choices=["zscore", "minmax"])
    p.add_argument("--workers", type=int, default=1,
                   help="up to N decoding processes, started only when worthwhile")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--key-file", help="pseudonymisation key (kept by the data owner)")
    p.add_argument("--layout", choices=["dicom", "msd"], default="dicom",
                   help="msd: DICOM_DIR is a Decathlon / nnU-Net raw folder (imagesTr, labelsTr, "
                        "dataset.json) ingested as native volumes; see docs/annotations.md")
    p.add_argument("--segment-map", type=_segment_map, metavar="NAME=CLASS,...",
                   help="SEG segment / RTSTRUCT ROI names (or coded properties) → label classes "
                        "for series masks, e.g. 'Left Lung=lung,Right Lung=lung,Couch=-'")
    p.add_argument("--strict", action="store_true", help="exit 1 when any input is rejected")
    p.add_argument("--records-per-shard", type=int, default=1024, metavar="N",
                   help="records per TFRecord shard (multi-worker training shards by file: "
                        "keep at least one shard per worker)")
    p = _add(data_sub, "plan", "print a volume dataset's plan: target spacing, normalisation, "
             "patch and batch size (from DS, or from DICOM_DIR --labels before ingesting)",
             "medzoo data plan ds --memory-gb 16")
    p.add_argument("ds", help="a dataset dir made with --spacing, or a DICOM dir with --labels")
    p.add_argument("--labels", help="labels.csv: plan a DICOM dir without ingesting it")
    p.add_argument("--spacing", default="auto", metavar="auto|Z,Y,X",
                   help="target spacing (DICOM dir only; a dataset's is fixed by its ingest)")
    p.add_argument("--label-classes", metavar="NAMES")
    _plan_options(p)
    p.add_argument("--write", action="store_true",
                   help="store the re-planned patch/batch size in DS/plan.json and dataset.json")
    p.add_argument("--json", action="store_true", help="print plan.json")
    p = _add(data_sub, "pull", "copy studies from a PACS (DICOMweb or DIMSE) into a DICOM folder",
             "medzoo data pull --dicomweb https://pacs/dicom-web --auth-file ~/.pacs.json "
             "--query ModalitiesInStudy=CT --out studies")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--dicomweb", metavar="URL", help="DICOMweb root (QIDO-RS + WADO-RS)")
    where.add_argument("--dimse", metavar="AET@HOST:PORT", help="DICOM node (C-FIND + C-GET)")
    p.add_argument("--query", action="append", default=[], metavar="KEY=VALUE",
                   help="study matching key by DICOM keyword, e.g. StudyDate=20240101-20240131")
    p.add_argument("--study", action="append", default=[], metavar="UID",
                   help="only this StudyInstanceUID (repeatable)")
    p.add_argument("--out", required=True,
                   help="DICOM folder to create or resume (exit 1 when some instances failed: "
                        "run the same command again)")
    p.add_argument("--auth-file", help="JSON/INI with user+password or token (default: "
                                       "MEDZOO_PACS_USER/_PASSWORD or MEDZOO_PACS_TOKEN)")
    p.add_argument("--insecure", action="store_true", help="skip TLS certificate verification")
    p.add_argument("--calling-aet", default="MEDZOO", help="our AE title (DIMSE)")
    p.add_argument("--called-aet", help="the PACS AE title (DIMSE; default: from --dimse)")
    p.add_argument("--workers", type=int, default=4, help="concurrent fetches")
    p.add_argument("--retries", type=int, default=4, help="retries per instance (backoff 1, 2, 4 s…)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    p.add_argument("--key-file", help="name folders by keyed pseudonyms instead of counters")
    p.add_argument("--annotations", action="store_true",
                   help="also fetch SEG/RTSTRUCT objects referencing the pulled series, store "
                        "them beside them and fill series.csv's mask column")
    p = _add(data_sub, "info", "counts per class, fold, modality; rejects by reason",
             "medzoo data info ds")
    p.add_argument("ds")

    p = _add(sub, "train", "train a zoo model with Keras fit → run dir",
             "medzoo train cnn --data ds --out runs/cnn --epochs 12 --test-fold 0")
    p.add_argument("model")
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--test-fold", type=int, default=0)
    p.add_argument("--learning-rate", type=float,
                   help="default 1e-3; 3e-3 for 2D segmenters")
    p.add_argument("--schedule", default="cosine", choices=["cosine", "constant"],
                   help="cosine (default): 1-epoch warm-up then cosine decay; constant: the seed's")
    p.add_argument("--augment", action="store_true")
    p.add_argument("--init-from", help="earlier run dir to start matching layers from")
    p.add_argument("--freeze-encoder", action="store_true",
                   help="keep the encoder's weights fixed (fine-tune the rest)")
    p.add_argument("--gan", help="GAN run whose samples join the training folds only")
    p.add_argument("--gan-ratio", type=float, default=1.0,
                   help="generated images per real training image (default 1.0)")
    p.add_argument("--balance", choices=["weights", "sample"],
                   help="class imbalance: loss weights from the training part, or balanced sampling")
    p.add_argument("--loss", default="ce", choices=["ce", "focal"],
                   help="cross-entropy (default) or focal loss")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="builder option (repeatable; `medzoo models MODEL` lists them), e.g. "
                        "widths=16,32,64 or preset=large")
    p.add_argument("--threshold", metavar="RULE",
                   help="decision threshold chosen on validation: youden, sens:0.95 or spec:0.95 "
                        "(stored in config.json and the model card)")
    p.add_argument("--target-sensitivity", type=float, metavar="X",
                   help="same as --threshold sens:X: the highest threshold reaching sensitivity X")
    p.add_argument("--strategy", default="default", choices=["default", "mirrored", "multiworker"],
                   help="tf.distribute strategy; multiworker reads TF_CONFIG (one process per "
                        "worker; --batch-size is the global batch; the chief writes --out)")
    p.add_argument("--seed", type=int, default=0)

    gan = _add(sub, "gan", "train a conditional GAN augmenter, or sample from one",
               "medzoo gan train --data ds --out runs/gan")
    gan_sub = gan.add_subparsers(dest="gan_command", metavar="STEP", required=True)
    p = _add(gan_sub, "train", "train the class-conditional GAN on the training folds",
             "medzoo gan train --data ds --out runs/gan --epochs 40 --test-fold 0")
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--steps-per-epoch", type=int, default=100)
    p.add_argument("--classifier", help="run dir of a classifier trained on the real images: "
                                        "logs the Fréchet distance per epoch")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--test-fold", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p = _add(gan_sub, "quality", "judge samples with a classifier trained on real images",
             "medzoo gan quality runs/gan --classifier runs/cnn")
    p.add_argument("gan_run")
    p.add_argument("--classifier", required=True)
    p.add_argument("--n", type=int, default=64, help="samples per class")
    p.add_argument("--seed", type=int, default=0)
    p = _add(gan_sub, "sample", "write N generated images as a (synthetic) dataset dir",
             "medzoo gan sample runs/gan --n 100 --out generated")
    p.add_argument("gan_run")
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)

    p = _add(sub, "export", "run dir → BASE/NAME/VERSION (SavedModel, ONNX, card, blessing)",
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

    p = _add(sub, "push", "copy a BLESSED export version into a TF Serving model dir",
             "medzoo push models/cnn/1 --to serving")
    p.add_argument("version_dir")
    p.add_argument("--to", required=True)

    p = _add(sub, "evaluate", "score exports (or model.onnx files) on datasets with onnxruntime",
             "medzoo evaluate models/cnn/1 models/unet/1 --data ds --data ds-site2 --out eval")
    p.add_argument("models", nargs="*", metavar="MODEL", help="export version dir or .onnx file")
    p.add_argument("--data", action="append", metavar="DS",
                   help="dataset dir (repeatable: every model is scored on every dataset)")
    p.add_argument("--predictions", metavar="DIR",
                   help="instead of MODEL/--data: predicted SEGs scored against --reference "
                        "(Dice, HD95 per structure; see docs/annotations.md)")
    p.add_argument("--reference", metavar="DIR", help="reference SEG / RTSTRUCT / NIfTI files")
    p.add_argument("--images", metavar="DICOM_DIR", help="the series the predictions segment")
    p.add_argument("--segment-map", type=_segment_map, metavar="NAME=CLASS,...",
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

    p = _add(sub, "cv", "k-fold cross-validation of one or more zoo models, with statistics",
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

    p = _add(sub, "predict", "run an export on new, unlabelled DICOM studies: findings, SEG",
             "medzoo predict models/cnn/1 new_studies --out predictions")
    p.add_argument("export")
    p.add_argument("dicom_dir")
    p.add_argument("--out", required=True)
    p.add_argument("--runtime", default="onnx", choices=["onnx", "savedmodel"])
    p.add_argument("--threshold", type=float, help="decision threshold (default: model card's)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--key-file", help="ingest's pseudonym key: adds study/series pseudonyms")
    p.add_argument("--strict", action="store_true", help="exit 1 when any input is rejected")
    p.add_argument("--explain", action="store_true",
                   help="classifiers: occlusion map of each study's top image in its findings report")
    p.add_argument("--allow-out-of-domain", action="store_true",
                   help="also score series outside the training domain (another modality, "
                        "colour, RT Dose, spacing/size/intensity far off), marked as such; by "
                        "default they are listed in not_analysed.csv (docs/domain.md)")
    p.add_argument("--send", metavar="URL",
                   help="store SEG + SR on a PACS: DICOMweb URL (STOW-RS) or dimse://AET@HOST:PORT "
                        "(C-STORE); credentials from MEDZOO_PACS_USER/_PASSWORD or _TOKEN")
    p.add_argument("--auth-file", help="with --send: JSON/INI with user+password or token")
    p.add_argument("--insecure", action="store_true",
                   help="with --send: skip TLS certificate verification (test servers only)")
    p.add_argument("--calling-aet", default="MEDZOO", help="with --send dimse://…: our AE title")

    p = _add(sub, "explain", "Grad-CAM overlays for a trained classifier on a dataset split",
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

    p = _add(sub, "report", "write report.html for a CV or eval dir", "medzoo report cv")
    p.add_argument("dir")

    p = _add(sub, "demo", "the whole chain on generated data, in a few minutes",
             "medzoo demo --out demo-out")
    p.add_argument("--out", default="medzoo-demo")
    p.add_argument("--difficulty", default="medium", choices=["easy", "medium", "hard"],
                   help="phantom difficulty (default medium: the models differ, the tests are defined)")
    p.add_argument("--patients", type=int, default=60)
    p.add_argument("--seed", type=int, default=0)
    return parser


def _segment_map(text: str) -> dict:
    """argparse type of --segment-map: ``"A=x,B=y"`` → ``{"A": "x", "B": "y"}``."""
    from medzoo.datasets.annotations import parse_segment_map

    try:
        return parse_segment_map(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _ingest_msd(args) -> int:
    from medzoo.datasets.msd import ingest_msd

    if args.records_per_shard < 1:
        raise MedzooError(f"--records-per-shard must be a positive integer. "
                          f"Received: {args.records_per_shard}")
    summary = ingest_msd(args.dicom_dir, args.out, spacing=args.spacing or "auto",
                         memory_gb=args.memory_gb, patch_size=args.patch_size,
                         batch_size=args.plan_batch_size, normalization=args.normalization,
                         folds=args.folds, seed=args.seed,
                         key_file=args.key_file, strict=args.strict,
                         records_per_shard=args.records_per_shard)
    print(f"ingested {summary['loaded']} of {summary['inputs']} cases ({summary['layout']}, "
          f"{summary['channels']} channel(s)), rejected {summary['rejected']} → {args.out}")
    return 1 if summary["strict_failed"] else 0


def _cmd_models(args) -> int:
    from medzoo.zoo import describe, options

    if args.name:
        try:
            info = options.describe_options(args.name)
        except KeyError as exc:
            raise MedzooError(str(exc.args[0])) from None
        print(json.dumps(info, indent=2) if args.json else options.render_options(info))
        return 0
    rows = describe.describe_all(size=args.size)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            print(f"{row['name']:<18} {row['task']:<15} {row['parameters']:>10,}  {row['description']}")
    return 0


def _read_plan(ds_dir) -> dict | None:
    try:
        with open(os.path.join(ds_dir, "dataset.json"), encoding="utf-8") as handle:
            return json.load(handle).get("plan")
    except (OSError, ValueError):
        return None


def _size_or_auto(text: str):
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a size in pixels or auto. Received: {text!r}") from None


def _add_difficulty_arguments(p) -> None:
    g = p.add_argument_group("difficulty (docs/difficulty.md); explicit knobs override the level")
    g.add_argument("--difficulty", default="easy", choices=["easy", "medium", "hard"],
                   help="easy: the seed's phantom; medium/hard: small low-contrast lesions "
                        "among vessel-like dots, blur, noise, anatomy and scanner variation")
    g.add_argument("--lesion-contrast", type=float, metavar="HU", help="lesion minus lung, HU")
    g.add_argument("--lesion-radius", metavar="LOW,HIGH", help="lesion radius range, mm")
    g.add_argument("--distractors", type=int, metavar="N", help="vessel-like dots per patient")
    g.add_argument("--distractor-radius", metavar="LOW,HIGH", help="dot radius range, mm")
    g.add_argument("--blur", type=float, metavar="MM", help="Gaussian blur sigma, mm")
    g.add_argument("--noise", type=float, metavar="HU", help="noise sigma, HU")
    g.add_argument("--anatomy", type=float, metavar="F", help="body/lung shape jitter (0-0.3)")
    g.add_argument("--scanner", type=float, metavar="F",
                   help="per-patient gain/noise variation and offset F*100 HU (0-0.5)")
    g.add_argument("--label-noise", type=float, metavar="F",
                   help="fraction of patients whose label is flipped (masks keep the truth)")


def _difficulty_knobs(args) -> dict:
    def pair(text, flag):
        if text is None:
            return None
        try:
            low, high = (float(v) for v in text.split(","))
        except ValueError:
            raise MedzooError(f"{flag} expects LOW,HIGH in mm, e.g. 5,9. Received: {text!r}") from None
        return low, high

    return {"lesion_contrast_hu": args.lesion_contrast,
            "lesion_radius_mm": pair(args.lesion_radius, "--lesion-radius"),
            "distractors": args.distractors,
            "distractor_radius_mm": pair(args.distractor_radius, "--distractor-radius"),
            "blur_mm": args.blur, "noise_hu": args.noise, "anatomy": args.anatomy,
            "scanner": args.scanner, "label_noise": args.label_noise}


def _cmd_data(args) -> int:
    if args.data_command == "synth" and args.volumes:
        return _synth_volumes(args)
    if args.data_command == "synth":
        from medzoo.datasets.difficulty import DEFAULT_SIZE
        from medzoo.datasets.synth import write_synthetic

        try:
            summary = write_synthetic(args.out, patients=args.patients, modality=args.modality,
                                      size=args.size or DEFAULT_SIZE[args.difficulty],
                                      slices=args.slices or 4, seed=args.seed,
                                      compress=args.compress, paired=args.paired,
                                      classes=args.classes, multi_label=args.multi_label,
                                      positive_fraction=args.positive_fraction,
                                      difficulty=args.difficulty, knobs=_difficulty_knobs(args))
        except ValueError as exc:  # out-of-range sizes, classes or fractions: bad usage
            raise MedzooError(str(exc)) from None
        print(f"wrote {summary['files']} DICOM files for {summary['patients']} patients "
              f"to {args.out} (labels: {os.path.join(args.out, 'labels.csv')})")
        return 0
    if args.data_command == "ingest" and args.layout == "msd":
        return _ingest_msd(args)
    if args.data_command == "ingest" and not args.labels:
        raise MedzooError("medzoo data ingest needs --labels labels.csv (or --layout msd for a "
                          "Decathlon / nnU-Net raw folder). Received: neither")
    if args.data_command == "ingest":
        from medzoo.datasets.ingest import ingest

        volume_options = None
        if args.spacing is not None:
            volume_options = dict(label_classes=args.label_classes, memory_gb=args.memory_gb,
                                  patch_size=args.patch_size, batch_size=args.plan_batch_size,
                                  normalization=args.normalization,
                                  segment_map=getattr(args, "segment_map", None))
        windows = [_window(w) for w in (args.window or ["auto"])]
        if args.records_per_shard < 1:
            raise MedzooError(f"--records-per-shard must be a positive integer. "
                              f"Received: {args.records_per_shard}")
        summary = ingest(args.dicom_dir, args.labels, args.out, size=args.size,
                         window=windows[0] if len(windows) == 1 else windows,
                         workers=args.workers, folds=args.folds, seed=args.seed,
                         key_file=args.key_file, strict=args.strict, color=args.color,
                         volumes=args.volumes, denoise=args.denoise, enhance=args.enhance,
                         standardize=args.standardize, series_issues=args.series_issues,
                         records_per_shard=args.records_per_shard, spacing=args.spacing,
                         volume_options=volume_options)
        what = "volumes" if args.volumes or args.spacing else "images"
        warned = f", {summary['warnings']} series warnings" if summary.get("warnings") else ""
        print(f"ingested {summary['loaded']} of {summary['inputs']} inputs "
              f"({summary['records']} {what}), rejected {summary['rejected']}{warned} → {args.out}")
        plan = _read_plan(args.out)
        if plan and plan.get("kind") == "2d":
            print(f"--size auto chose {plan['image_size']} px: {plan['reason']}")
        return 1 if args.strict and summary["rejected"] else 0
    if args.data_command == "pull":
        return _data_pull(args)
    if args.data_command == "plan":
        return _data_plan(args)
    from medzoo.datasets.info import describe

    print(describe(args.ds))
    return 0


def _plan_options(p) -> None:
    p.add_argument("--memory-gb", type=float, default=8.0,
                   help="volumes: training memory budget the patch and batch size fit (GiB)")
    p.add_argument("--patch-size", metavar="D,H,W", help="volumes: override the planned patch")
    p.add_argument("--batch-size", dest="plan_batch_size", type=int, metavar="B",
                   help="volumes: override the planned batch size")
    p.add_argument("--normalization", choices=["ct", "zscore"],
                   help="volumes: override the modality's normalisation")


def _data_plan(args) -> int:
    from medzoo.datasets import plan as planning
    from medzoo.datasets import volumes

    options = dict(memory_gb=args.memory_gb,
                   patch_size=volumes.parse_triple(args.patch_size, "--patch-size"),
                   batch_size=args.plan_batch_size, normalization=args.normalization)
    if args.labels:
        plan = volumes.preview_plan(args.ds, args.labels, spacing=args.spacing,
                                    label_classes=args.label_classes,
                                    segment_map=getattr(args, "segment_map", None), **options)
    elif not os.path.isfile(os.path.join(args.ds, "dataset.json")):
        raise MedzooError(f"{args.ds}: expected a dataset dir made by `medzoo data ingest "
                          "--spacing`, or a DICOM dir with --labels labels.csv. Received: no "
                          "dataset.json and no --labels")
    else:
        plan = volumes.replan_dataset(args.ds, write=args.write, **options)
    print(json.dumps(plan, indent=2) if args.json else planning.describe(plan))
    return 0


def _synth_volumes(args) -> int:
    from medzoo.datasets.synth_volumes import write_synthetic_volumes

    if args.modality != "ct" or args.paired or args.compress or args.classes != 2 \
            or args.multi_label:
        raise MedzooError("--volumes writes CT series only (no --modality other than ct, "
                          "--paired, --compress, --classes or --multi-label)")
    try:
        summary = write_synthetic_volumes(
            args.out, patients=args.patients, size=args.size or 192, slices=args.slices or 40,
            seed=args.seed, lesion_fraction=args.positive_fraction or 0.5)
    except ValueError as exc:
        raise MedzooError(str(exc)) from None
    print(f"wrote {summary['files']} DICOM files in {summary['patients']} CT series with label "
          f"maps ({', '.join(summary['label_classes'])}) to {args.out} "
          f"(labels: {os.path.join(args.out, 'labels.csv')})")
    return 0


def _data_pull(args) -> int:
    from medzoo.pacs import client as pacs
    from medzoo.pacs.pull import describe, pull

    if not args.timeout > 0:
        raise MedzooError(f"Argument `--timeout` must be a positive number of seconds. "
                          f"Received: --timeout={args.timeout:g}")
    target = args.dicomweb or pacs.parse_dimse_address(args.dimse)
    query = pacs.parse_query(args.query)
    client = pacs.connect(target, credentials=pacs.load_credentials(args.auth_file),
                          insecure=args.insecure, calling_aet=args.calling_aet,
                          called_aet=args.called_aet, timeout=args.timeout)
    summary = pull(client, args.out, query=query, study_uids=args.study, workers=args.workers,
                   retries=args.retries, key_file=args.key_file,
                   annotations=args.annotations)
    print(describe(summary))
    if summary["failed"]:
        print(f"medzoo data pull: {summary['failed']} instances failed "
              f"({', '.join(f'{n} {r}' for r, n in summary['failed_by_reason'].items())}); "
              "run the same command again to resume", file=sys.stderr)
    return 1 if summary["failed"] else 0


def _window(text: str):
    if text == "auto" or "," not in text:
        return text
    try:
        center, width = (float(v) for v in text.split(","))
    except ValueError:
        raise MedzooError(f"--window expects auto or CENTER,WIDTH. Received: {text!r}") from None
    if width < 1:
        raise MedzooError(f"--window width must be >= 1. Received: {width:g}")
    return (center, width)


def _threshold_rule(args) -> str | None:
    if args.target_sensitivity is None:
        return args.threshold
    if args.threshold:
        raise MedzooError("give --threshold or --target-sensitivity, not both. "
                          f"Received: --threshold {args.threshold} --target-sensitivity "
                          f"{args.target_sensitivity}")
    return f"sens:{args.target_sensitivity}"


def _auto_model(ds_dir) -> str:
    """``train auto``: the model the plan's data calls for (see docs/difficulty.md)."""
    try:
        with open(os.path.join(ds_dir, "dataset.json"), encoding="utf-8") as handle:
            info = json.load(handle)
    except (OSError, ValueError):
        raise MedzooError(f"{ds_dir}: expected a dataset dir with dataset.json") from None
    size = info.get("image_size", ["?"])[0]
    if info.get("has_mask") and not info.get("multi_label") and len(info.get("classes", [])) == 2:
        choice = "unet"
        why = ("finding masks exist: a U-Net learns from every lesion pixel and scores the image "
               "by its largest mask probability (medium phantoms: AUC 1.00 where cnn is near chance)")
    else:
        choice = "resnet"
        why = "no finding masks: a residual CNN with batch normalisation"
    print(f"train auto chose {choice} at {size} px (the dataset's plan): {why}")
    return choice


def _cmd_train(args) -> int:
    from medzoo.training.fit import train
    from medzoo.zoo.options import parse_pairs

    if args.model == "auto":
        args.model = _auto_model(args.data)
    config = train(args.model, args.data, args.out, epochs=args.epochs,
                   model_options=parse_pairs(args.option, [args.model])[args.model],
                   batch_size=args.batch_size, test_fold=args.test_fold, seed=args.seed,
                   augment=args.augment, learning_rate=args.learning_rate,
                   schedule=args.schedule,
                   init_from=args.init_from, freeze=args.freeze_encoder, gan=args.gan,
                   gan_ratio=args.gan_ratio, balance=args.balance, loss=args.loss,
                   threshold=_threshold_rule(args), strategy=args.strategy)
    last = {k: round(v, 4) for k, v in config.get("history", {}).items() if k != "epoch"}
    print(f"trained {args.model} for {config['epochs_run']} epochs → {args.out}  {last}")
    return 0


def _cmd_gan(args) -> int:
    from medzoo.training import gan

    if args.gan_command == "train":
        config = gan.train_gan(args.data, args.out, epochs=args.epochs,
                               batch_size=args.batch_size, test_fold=args.test_fold,
                               steps_per_epoch=args.steps_per_epoch, seed=args.seed,
                               classifier_run=args.classifier)
        print(f"trained the GAN for {config['epochs_run']} epochs on {config['n_train']} "
              f"training images → {args.out} (samples/, curves.png)")
        return 0
    if args.gan_command == "quality":
        q = gan.gan_quality(args.gan_run, args.classifier, n_per_class=args.n, seed=args.seed)
        for name, row in q["per_class"].items():
            print(f"{name}: classified as {name} {row['classified_as_intended']:.0%}, "
                  f"Fréchet distance {row['frechet_distance']:.3f}")
        t = q["two_sample_test"]
        print(f"real vs synthetic: accuracy {t['accuracy']:.2f} on {t['n_test']}, "
              f"p={t['p_value']:.3g} → {args.gan_run}/quality.json")
        return 0
    info = gan.sample_to_dataset(args.gan_run, args.n, args.out, seed=args.seed)
    print(f"wrote {info['counts']['records']} generated images (synthetic) → {args.out}")
    return 0


def _cmd_export(args) -> int:
    from medzoo.evaluation.evaluate import evaluate
    from medzoo.export.exporter import export_run

    version_dir = export_run(args.run, args.out, name=args.name, version=args.version,
                             bless_if=args.bless_if, baseline=args.baseline, margin=args.margin,
                             tolerance=args.tolerance, data_dir=args.data, opset=args.onnx_opset,
                             quantize=args.quantize, max_drop=args.max_drop, evaluator=evaluate)
    status = "BLESSED" if (version_dir / "BLESSED").exists() else "NOT_BLESSED"
    print(f"exported {version_dir} ({status})")
    return 0


def _cmd_push(args) -> int:
    from medzoo.export.push import push

    print(f"pushed → {push(args.version_dir, args.to)}")
    return 0


def _cmd_evaluate(args) -> int:
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


def _cmd_cv(args) -> int:
    from medzoo.evaluation.crossval import run_cv
    from medzoo.zoo.options import parse_pairs

    summary = run_cv(args.models, args.data, args.out, folds=args.folds, epochs=args.epochs,
                     seed=args.seed, repeats=args.repeats, batch_size=args.batch_size, verbose=0,
                     model_options=parse_pairs(args.option, args.models))
    for line in summary["lines"]:
        print(line)
    return 0


def _cmd_predict(args) -> int:
    from medzoo.deploy.predict import predict

    client = None
    if args.send:  # checked before the model runs: a wrong URL or password fails at once
        from medzoo.deploy.send import open_target

        client = open_target(args.send, auth_file=args.auth_file, insecure=args.insecure,
                             calling_aet=args.calling_aet)
    r = predict(args.export, args.dicom_dir, args.out, runtime=args.runtime,
                batch_size=args.batch_size, threshold=args.threshold, key_file=args.key_file,
                explain=args.explain, allow_out_of_domain=args.allow_out_of_domain)
    decided = (f"with a finding (each finding's own rule: {r['decision']})" if r.get("decision")
               else f"positive at p >= {r['threshold']:g} ({r['threshold_source']})")
    print(f"predicted {r['predicted']} of {r['inputs']} files ({r['images']} images) in "
          f"{r['studies']} studies; {r['positive_studies']} {decided}; "
          f"rejected {r['rejected']}, ignored {r['ignored']}; "
          f"model {r['model']} v{r['version']} → {r['out']}")
    if r.get("not_analysed"):
        print(f"  not analysed: {r['not_analysed']} files, {r['not_analysed_studies']} whole "
              f"studies (reasons in not_analysed.csv)")
    for path in r.get("seg_files", []):
        print(f"  DICOM SEG: {path}")
    if client is not None:
        from medzoo.deploy.send import send_results

        try:
            sent = send_results(client, r["out"], args.dicom_dir)
        except MedzooError as exc:
            print(f"medzoo predict: error: predictions written, sending failed: {exc}",
                  file=sys.stderr)
            return 1
        print(f"  sent {sent['seg']} DICOM SEG and {sent['sr']} DICOM SR objects to "
              f"{client.where} (SR also in {os.path.join(r['out'], 'sr')})")
    return 1 if args.strict and r["rejected"] else 0


def _cmd_explain(args) -> int:
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


def _cmd_report(args) -> int:
    from medzoo.evaluation.report import write_report

    print(f"wrote {write_report(args.dir)}")
    return 0


def _cmd_demo(args) -> int:
    from medzoo.demo import run_demo

    run_demo(args.out, patients=args.patients, seed=args.seed, difficulty=args.difficulty)
    return 0


COMMANDS = {"models": _cmd_models, "data": _cmd_data, "train": _cmd_train, "gan": _cmd_gan,
            "export": _cmd_export, "push": _cmd_push, "evaluate": _cmd_evaluate, "cv": _cmd_cv,
            "report": _cmd_report, "explain": _cmd_explain,
            "predict": _cmd_predict, "demo": _cmd_demo}


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
