"""Findings for people: per-series and per-study summaries of image scores, and the study report.

Pure functions of scores and counters (no I/O, no DICOM): what goes in is already free of PHI —
studies, series and images are numbered by medzoo's own counters — so what comes out is too.
"""

from __future__ import annotations

import numpy as np

DISCLAIMER = (
    "Research software, not a diagnosis. These findings were produced automatically by a "
    "machine-learning model and have not been reviewed by a clinician; they must not be used "
    "for clinical decisions. The model card lists the model's intended use and limitations."
)


def summarise(scores, threshold: float, positive=None) -> dict:
    """Max/mean score of a group of images and which of them reach ``threshold``.

    Parameters
    ----------
    scores : sequence of float
        One score per image, in image order.
    threshold : float
        An image is positive when ``score >= threshold``.
    positive : sequence of bool, optional
        Which images are positive, when a rule other than one threshold on ``scores`` decides
        (per-finding thresholds, argmax over classes).

    Returns
    -------
    dict
        ``images``, ``positive_images``, ``max_score``, ``mean_score``, ``max_index`` (0-based
        position of the highest score, first one on ties) and ``positive`` (bool).

    Raises
    ------
    ValueError
        When ``scores`` is empty.
    """
    values = np.asarray(scores, dtype=np.float64).reshape(-1)
    if values.size == 0:
        raise ValueError("Expected at least one score. Received: none")
    flags = values >= threshold if positive is None else np.asarray(positive, bool).reshape(-1)
    positive = int(np.count_nonzero(flags))
    return {"images": int(values.size), "positive_images": positive,
            "max_score": float(values.max()), "mean_score": float(values.mean()),
            "max_index": int(values.argmax()), "positive": positive > 0}


def model_label(name: str, version) -> str:
    """``"cnn v1"``: how reports name the model that produced a finding."""
    return f"{name} v{version}"


def finding_sentence(summary: dict, *, finding: str, model: str,
                     max_image: int | None = None) -> str:
    """One line saying what was found, e.g.
    ``"Lesion suspected (p = 0.93) on 3 of 4 images, max on image 2 — model cnn v1"``.

    Parameters
    ----------
    summary : dict from :func:`summarise`
    finding : str
        What a positive image shows, e.g. ``"lesion"``.
    model : str
        From :func:`model_label`.
    max_image : int, optional
        The number, as the reader knows it, of the image with the highest score.
    """
    p = _p(summary["max_score"])
    if summary["positive"]:
        where = f", max on image {max_image}" if max_image is not None else ""
        return (f"{finding.capitalize()} suspected (p = {p}) on {summary['positive_images']} of "
                f"{summary['images']} images{where} — model {model}")
    return f"No {finding.lower()} found (max p = {p}) — model {model}"


def _out_of_domain_lines(study: dict) -> list[str]:
    """Report lines on series scored although outside the training domain
    (``--allow-out-of-domain``) and on images the OOD score flags."""
    lines = []
    marked = [s for s in study.get("series") or [] if s.get("out_of_domain")]
    if marked:
        lines += ["", "## Outside the training domain — scored on request", "",
                  "**These series lie outside the data the model was trained on; they were "
                  "scored only because `--allow-out-of-domain` was given. Their scores are not "
                  "validated and must not be read as findings.**", ""]
        lines += [f"- series {s['series']}: {'; '.join(s['out_of_domain'])}" for s in marked]
    flagged = study.get("ood_flagged_images")
    if flagged:
        lines += ["", f"{flagged} image(s) lie far from the training images in the model's "
                  "feature space (OOD score above the export's threshold; column `ood_flag` of "
                  "predictions.csv): treat their scores with caution."]
    return lines


def render_study_report(study: dict, images: list[dict], *, model: dict, threshold: float,
                        finding: str, medzoo_version: str) -> str:
    """The readable findings report of one study (``findings/study-NNN.md``).

    Parameters
    ----------
    study : dict
        A ``studies.json`` study entry: ``study`` (counter), the :func:`summarise` fields,
        ``finding`` (from :func:`finding_sentence`) and ``series`` (entries with ``series`` and
        the :func:`summarise` fields, optional ``seg``).
    images : list of dict
        The study's ``predictions.csv`` rows (``study_image``, ``series``, ``slice``, ``frame``,
        ``score``).
    model : dict
        ``name``, ``version``, ``architecture``, ``task``.
    threshold : float
    finding : str
        What a positive image shows (``"lesion"``).
    medzoo_version : str
    """
    label = model_label(model["name"], model["version"])
    rule = (f"decision threshold p ≥ {threshold:.2f}" if not study.get("findings")
            else "each finding decided by its own rule (see Findings)")
    lines = [
        f"# Findings — study {study['study']:03d}",
        "",
        f"**{study['finding']}**",
        "",
        f"- Model: {label} (architecture `{model['architecture']}`, task {model['task']}), "
        f"{rule}",
        f"- Images analysed: {study['images']} in {len(study['series'])} series; "
        f"highest p = {_p(study['max_score'])}, mean p = {_p(study['mean_score'])}",
        "",
        "## Series",
        "",
        "| series | images | "
        + ("images with a finding" if study.get("findings") else "images with p ≥ threshold")
        + " | max p | mean p | finding |",
        "|---:|---:|---:|---:|---:|---|",
    ]
    for s in study["series"]:
        verdict = f"{finding} suspected" if s["positive"] else f"no {finding}"
        if s.get("findings"):
            present = [_readable(f["finding"]) for f in s["findings"] if f["present"]]
            verdict = f"{', '.join(present)} suspected" if present else "no finding"
        seg = s.get("seg")
        seg = f" (segmentation: `{seg if isinstance(seg, str) else ', '.join(seg)}`)" if seg else ""
        lines.append(f"| {s['series']} | {s['images']} | {s['positive_images']} | "
                     f"{_p(s['max_score'])} | {_p(s['mean_score'])} | {verdict}{seg} |")
    per_finding = study.get("findings")
    if per_finding:  # multi-class / multi-label: every finding, present or absent
        lines += ["", *render_findings_table(
            per_finding, image_numbers=[row["study_image"] for row in images])]
        names = [f["finding"] for f in per_finding]
        lines += ["", "## Images", "",
                  "| image | series | slice | frame | " + " | ".join(
                      f"p({_readable(n)})" for n in names) + " | findings |",
                  "|---:|---:|---:|---:|" + "---:|" * len(names) + "---|"]
        for row in images:
            shown = str(row.get("findings") or "—").replace("|", ", ")
            lines.append(f"| {row['study_image']} | {row['series']} | {row['slice']} | "
                         f"{row['frame']} | " + " | ".join(
                             _p(row[score_column(n)]) for n in names)
                         + f" | {_readable(shown)} |")
    else:
        lines += ["", "## Images", "",
                  "| image | series | slice | frame | p | finding |",
                  "|---:|---:|---:|---:|---:|---|"]
    for row in images if not per_finding else ():
        verdict = f"{finding} suspected" if float(row["score"]) >= threshold else "—"
        if row.get("out_of_domain"):
            verdict += " (outside the training domain)"
        elif str(row.get("ood_flag")) == "1":
            verdict += " (unlike the training images: OOD score above threshold)"
        lines.append(f"| {row['study_image']} | {row['series']} | {row['slice']} | {row['frame']} "
                     f"| {_p(row['score'])} | {verdict} |")
    if study.get("not_analysed"):
        lines += ["", *not_analysed_lines(study["not_analysed"])]
    lines += _out_of_domain_lines(study)
    if study.get("explanation"):
        lines += ["", "## Where the model looked", "",
                  f"![occlusion sensitivity of image {study['max_image']}](../{study['explanation']})",
                  "", f"Occlusion sensitivity of image {study['max_image']} (the highest p): how "
                  "much p drops when each patch is greyed out. Red marks the patches the score "
                  "depends on most; it shows what the model used, not that the finding is there."]
    lines += ["", "Images are numbered within this study in acquisition order (sorted along the "
              "slice normal); p is the model's score for the finding.", "",
              "---", "", f"*{DISCLAIMER}*", "",
              f"Generated by medzoo {medzoo_version} with model {label}."]
    return "\n".join(lines) + "\n"


def _p(value) -> str:
    return f"{float(value):.2f}"


# --------------------------------------------------------------------------- one score per finding


def score_column(name: str) -> str:
    """The predictions.csv column of one class: ``"ground glass"`` → ``score_ground_glass``."""
    import re

    return "score_" + (re.sub(r"[^0-9A-Za-z_]+", "_", str(name)).strip("_") or "class")


def decide_findings(probabilities, rules: list[dict]) -> np.ndarray:
    """Which findings each image shows, by each finding's own rule.

    Parameters
    ----------
    probabilities : (n, K) array
        The model's per-class probabilities (softmax or independent sigmoids).
    rules : list of dict
        The export's ``findings`` (:func:`medzoo.export.inputs.declared_findings`): ``index``,
        ``rule`` (``"threshold"`` with ``threshold``, or ``"argmax"``).

    Returns
    -------
    (n, len(rules)) bool array
        ``threshold``: ``p[index] >= threshold``; ``argmax``: ``index`` is the most probable class.
    """
    p = np.asarray(probabilities, np.float64)
    if p.ndim != 2 or any(int(r["index"]) >= p.shape[1] for r in rules):
        raise ValueError(f"Expected (n, K) probabilities with K > every finding index "
                         f"{[r['index'] for r in rules]}. Received: shape {p.shape}")
    top = p.argmax(axis=1)
    columns = [(p[:, int(r["index"])] >= float(r["threshold"])) if r["rule"] == "threshold"
               else (top == int(r["index"])) for r in rules]
    return np.stack(columns, axis=1) if columns else np.zeros((len(p), 0), bool)


def summarise_findings(probabilities, rules: list[dict]) -> list[dict]:
    """Per finding over a group of images (a series, a study): present or absent, its highest
    probability and where.

    Returns
    -------
    list of dict
        Per rule, in order: ``finding``, ``present`` (bool: on at least one image),
        ``probability`` (the highest over the images), ``max_index`` (0-based image of it),
        ``positive_images``, ``rule`` and ``threshold`` (None for argmax).
    """
    p = np.asarray(probabilities, np.float64)
    if p.size == 0:
        raise ValueError("Expected at least one image's probabilities. Received: none")
    decided = decide_findings(p, rules)
    out = []
    for k, rule in enumerate(rules):
        column = p[:, int(rule["index"])]
        out.append({"finding": rule["name"], "present": bool(decided[:, k].any()),
                    "probability": float(column.max()), "max_index": int(column.argmax()),
                    "positive_images": int(decided[:, k].sum()), "rule": rule["rule"],
                    "threshold": (float(rule["threshold"]) if rule["rule"] == "threshold"
                                  else None)})
    return out


def findings_sentence(per_finding: list[dict], *, model: str) -> str:
    """One line naming every finding, present ones first, e.g. ``"Nodule suspected (p = 0.91);
    ground glass absent (max p = 0.12) — model cnn v1"``."""
    present = [f for f in per_finding if f["present"]]
    absent = [f for f in per_finding if not f["present"]]
    parts = [f"{_readable(f['finding'])} suspected (p = {_p(f['probability'])})" for f in present]
    parts += [f"{_readable(f['finding'])} absent (max p = {_p(f['probability'])})"
              for f in absent]
    text = "; ".join(parts) if parts else "No findings scored"
    return f"{text[:1].upper()}{text[1:]} — model {model}"


def render_findings_table(per_finding: list[dict], *, image_numbers=None) -> list[str]:
    """Markdown lines of the report's "Findings" section: one row per finding, present or absent,
    with its probability and the rule that decided it."""
    lines = ["## Findings", "",
             "| finding | result | max p | decision rule | images with finding | max on image |",
             "|---|---|---:|---|---:|---:|"]
    for f in per_finding:
        rule = (f"p ≥ {f['threshold']:.2f}" if f["rule"] == "threshold"
                else "most probable class")
        if "max_image" in f:
            image = f["max_image"]
        else:
            image = (image_numbers[f["max_index"]] if image_numbers is not None
                     else f["max_index"] + 1)
        lines.append(f"| {_readable(f['finding'])} | {'present' if f['present'] else 'absent'} | "
                     f"{_p(f['probability'])} | {rule} | {f['positive_images']} | {image} |")
    return lines


def _readable(name: str) -> str:
    return str(name).replace("_", " ")


def image_findings(probabilities, rules: list[dict], classes, *, multi_label: bool) -> list[dict]:
    """Per image: a score column per class, the findings shown and the predicted class(es).

    Returns
    -------
    list of dict
        ``score_<class>`` per class (6 decimals), ``findings`` (present findings joined by ``|``,
        empty when none), ``predicted`` (multi-class: the most probable class; multi-label: the
        present findings, or the first class name when none is) and ``positive`` (bool).
    """
    p = np.asarray(probabilities, np.float64)
    decided = decide_findings(p, rules)
    names = [str(c) for c in classes][:p.shape[1]]
    names += [f"class_{k}" for k in range(len(names), p.shape[1])]
    out = []
    for i in range(len(p)):
        present = [r["name"] for r, on in zip(rules, decided[i]) if on]
        predicted = ("|".join(present) or names[0]) if multi_label else names[int(p[i].argmax())]
        out.append({**{score_column(n): f"{v:.6f}" for n, v in zip(names, p[i])},
                    "findings": "|".join(present), "predicted": predicted,
                    "positive": bool(present)})
    return out


# --------------------------------------------------------------------------- not analysed


def render_not_analysed_report(study_no: int, items: list[dict], *, model: dict,
                               medzoo_version: str) -> str:
    """The findings report of a study none of whose images could be analysed (e.g. a fusion
    model given a study without one of its modalities): what was not analysed and why."""
    label = model_label(model["name"], model["version"])
    lines = [f"# Findings — study {study_no:03d}", "",
             f"**Not analysed — model {label}: {items[0]['reason']}**", "",
             *not_analysed_lines(items), "", "---", "", f"*{DISCLAIMER}*", "",
             f"Generated by medzoo {medzoo_version} with model {label}."]
    return "\n".join(lines) + "\n"


def not_analysed_lines(items: list[dict]) -> list[str]:
    """The report's "Not analysed" section: one table row per series left out, with its reason."""
    lines = ["## Not analysed", "", "| series | modality | slice | images | reason |",
             "|---:|---|---:|---:|---|"]
    for item in items:
        lines.append(f"| {item['series']} | {item.get('modality') or '—'} | "
                     f"{item.get('slice') or 'all'} | {item['images']} | {item['reason']} |")
    return lines
