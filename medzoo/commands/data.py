"""``medzoo data``: synth, ingest, plan, pull and info (datasets and PACS)."""

from __future__ import annotations

import argparse
import json
import os
import sys

from medzoo.commands.arguments import add_command, segment_map_type
from medzoo.errors import MedzooError


def add_data(sub) -> None:
    """``medzoo data``: synth, ingest, plan, pull, info."""
    data = add_command(sub, "data", "make, ingest and inspect datasets", "medzoo data synth phantoms")
    data_sub = data.add_subparsers(dest="data_command", metavar="STEP", required=True)
    p = add_command(data_sub, "synth", "write synthetic phantom DICOM studies and labels.csv",
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
    p = add_command(data_sub, "ingest", "DICOM folder + labels.csv → dataset dir (TFRecord shards); "
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
    p.add_argument("--segment-map", type=segment_map_type, metavar="NAME=CLASS,...",
                   help="SEG segment / RTSTRUCT ROI names (or coded properties) → label classes "
                        "for series masks, e.g. 'Left Lung=lung,Right Lung=lung,Couch=-'; 2D "
                        "masks are binary: NAME=- leaves a segment out of them")
    p.add_argument("--strict", action="store_true", help="exit 1 when any input is rejected")
    p.add_argument("--records-per-shard", type=int, default=1024, metavar="N",
                   help="records per TFRecord shard (multi-worker training shards by file: "
                        "keep at least one shard per worker)")
    p = add_command(data_sub, "plan", "print a volume dataset's plan: target spacing, normalisation, "
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
    p = add_command(data_sub, "pull", "copy studies from a PACS (DICOMweb or DIMSE) into a DICOM folder",
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
    p = add_command(data_sub, "info", "counts per class, fold, modality; rejects by reason",
                    "medzoo data info ds")
    p.add_argument("ds")


def cmd_data(args) -> int:
    """``medzoo data STEP``: synth, ingest, plan, pull or info; returns the exit status."""
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
                         volume_options=volume_options, segment_map=args.segment_map)
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
