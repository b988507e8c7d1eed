"""``medzoo predict``: an export on new DICOM studies, with findings, SEG and sending."""

from __future__ import annotations

import os
import sys

from medzoo.commands.arguments import add_command
from medzoo.errors import MedzooError


def add_predict(sub) -> None:
    """``medzoo predict EXPORT DICOM_DIR``."""
    p = add_command(sub, "predict", "run an export on new, unlabelled DICOM studies: findings, SEG",
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


def cmd_predict(args) -> int:
    """``medzoo predict EXPORT DICOM_DIR``; returns 1 when sending failed or, with ``--strict``,
    when an input was rejected; else 0."""
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
