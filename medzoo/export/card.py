"""The model card: what the model is, what it was trained on (no PHI), how well it does, its limits."""

from __future__ import annotations

import hashlib
from pathlib import Path

from medzoo.datasets.domain import describe as describe_domain

INTENDED_USE = (
    "Research use: second-reader triage of images of the modality and acquisition it was trained "
    "on. Not a medical device; not validated for clinical decisions."
)


UNKNOWN_DOMAIN = "unknown"


def training_domain(config: dict):
    """The training dataset's ``domain`` (``dataset.json``, written by ingest), or ``"unknown"``
    for a dataset ingested before domains were recorded (or no longer on disk)."""
    import json

    path = Path(config["data"]["dir"]) / "dataset.json"
    try:
        domain = json.loads(path.read_text()).get("domain")
    except (OSError, ValueError, AttributeError):
        return UNKNOWN_DOMAIN
    return domain if isinstance(domain, dict) else UNKNOWN_DOMAIN


def domain_limit(domain) -> str:
    """One line for the card's limitations: what the model may be given."""
    if not isinstance(domain, dict):
        return ("The training data's domain was not recorded (dataset ingested by an older "
                "medzoo): `medzoo predict` cannot check that new images resemble it.")
    return (f"Valid only for images like the training data ({describe_domain(domain)}); "
            "`medzoo predict` does not analyse series outside this domain (docs/domain.md).")


def sha256_file(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build_card(*, config: dict, name: str, version: int, parameters: int, signatures: list[str],
               metrics: dict, parity: dict, blessed: bool, reasons: list[str], artefacts: dict,
               versions: dict, domain=None, ood: dict | None = None) -> dict:
    """The content of ``model_card.json``; every field comes from the run config or the export.

    ``domain`` is the training data's domain (:func:`training_domain`); ``ood`` the card's
    section on the model-based OOD score (:func:`medzoo.export.ood.export_ood`).
    """
    data = config["data"]
    limits = [
        f"Trained on {sum(data['counts'].values())} images from one data source; performance on "
        "other scanners, protocols or populations is unknown until measured.",
        f"Input contract: {config['input_shape'][0]}x{config['input_shape'][1]} images windowed as "
        f"{data.get('window')!r}; other preprocessing changes the scores.",
        "Metrics below come from the validation fold; the held-out test fold "
        f"({config['test_fold']}) is for `medzoo evaluate`.",
    ]
    return {
        "schema_version": 1,
        "model": {"name": name, "version": version, "architecture": config["model"],
                  "task": config["task"], "options": config.get("model_options", {}),
                  "parameters": parameters, "classes": config["classes"],
                  "signatures": signatures},
        "input": {"image_size": config["input_shape"][:2], "channels": config["input_shape"][-1],
                  "window": data.get("window"),
                  "serving_default": "raw stored pixels (int32 B×rows×cols) + rescale_slope, "
                                     "rescale_intercept, window_center, window_width, invert",
                  "serve_float": "float32 images in [0, 1], B×H×W×C"},
        "training": {"data_fingerprint": data["fingerprint"],
                     "pseudonym_key_fingerprint": data.get("key_fingerprint"),
                     "counts": data["counts"], "folds": config["folds"],
                     "test_fold": config["test_fold"], "val_fold": config["val_fold"],
                     "epochs_run": config.get("epochs_run"), "seed": config["seed"],
                     "init_from_run": bool(config.get("init_from")),
                     "multi_label": bool(config.get("multi_label")),
                     "balance": config.get("balance"), "loss": config.get("loss", "ce"),
                     "decision_threshold": config.get("threshold")},
        "metrics": metrics,
        "parity": parity,
        "blessing": {"blessed": blessed, "reasons": reasons},
        "intended_use": INTENDED_USE,
        "limitations": limits + [domain_limit(domain)],
        "domain": domain if domain is not None else UNKNOWN_DOMAIN,
        "ood": ood or {"available": False, "reason": "not computed"},
        "versions": versions,
        "artefacts": artefacts,
    }


def render_markdown(card: dict) -> str:
    """``model_card.md``: the card for people."""
    model, training = card["model"], card["training"]
    lines = [
        f"# Model card: {model['name']} v{model['version']}",
        "",
        f"- Architecture: `{model['architecture']}` ({model['task']}), "
        f"{model['parameters']:,} parameters",
        f"- Classes: {', '.join(model['classes'])}",
        f"- Input: {card['input']['image_size']} px, window {card['input']['window']}",
        f"- Training data fingerprint: `{training['data_fingerprint'][:16]}…`, "
        f"images per split {training['counts']}",
        f"- Held-out test fold: {training['test_fold']} of {training['folds']}",
        f"- Domain of validity (training images): {describe_domain(card.get('domain'))}",
        f"- Blessed: **{card['blessing']['blessed']}** — " + "; ".join(card["blessing"]["reasons"]),
        "",
        "## Validation metrics",
        "",
    ]
    metrics = card["metrics"].get("metrics", {})
    for key, value in sorted(metrics.items()):
        if isinstance(value, (int, float)):
            lines.append(f"- {key}: {value:.4f}")
    ood = card.get("ood") or {}
    if ood.get("available"):
        lines += ["", "## Out-of-distribution score", "",
                  f"{ood['method']}; images above {ood['threshold']:.3g} "
                  f"({ood['threshold_rule']}) are flagged by `medzoo predict`."]
    lines += ["", "## Intended use", "", card["intended_use"], "", "## Limitations", ""]
    lines += [f"- {item}" for item in card["limitations"]]
    return "\n".join(lines) + "\n"


def artefact_hashes(version_dir: Path) -> dict:
    names = ["saved_model.pb", "model.onnx", "model_raw.onnx", "model.int8.onnx",
             "model.fp16.onnx", "features_raw.onnx", "ood.json"]
    return {n: sha256_file(version_dir / n) for n in names if (version_dir / n).exists()}
