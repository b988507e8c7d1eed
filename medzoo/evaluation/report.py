"""``medzoo report``: one self-contained ``report.html`` from a CV dir or an eval dir.

Reads what is there — ``metrics.json`` (eval), ``cv.json``, ``summary.csv``, ``folds.csv``,
``stats.json`` (CV) — and embeds the dir's PNG charts as base64, so the file opens offline and can
be mailed alone. Tests are written out in words ("cnn accuracy beats chance (0.50): t(4)=5.21,
p=0.0065"). Nothing per record or per patient is copied: no record ids, no patient keys.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import math
from pathlib import Path

from medzoo import __version__, fsio
from medzoo.errors import InputError
from medzoo.evaluation.stats import describe

__all__ = ["write_report", "render_report", "stat_sentences", "verdict_sentences"]

CHART_ORDER = ("comparison", "folds_accuracy", "folds_auc", "roc", "pr", "calibration", "confusion", "curves")
CHART_CAPTIONS = {
    "comparison": "Accuracy, sensitivity and specificity per model: bars are the mean over folds with ± 1 SD "
                  "error bars, dots are single folds, dashed lines the chance levels.",
    "folds_accuracy": "Accuracy of each test fold, one column per model; lines join the same fold across "
                      "models; black diamond: mean with t-based 95% CI; dashed: chance from the class balance.",
    "folds_auc": "ROC AUC of each test fold, one column per model; black diamond: mean with 95% CI; dashed: 0.5.",
    "roc": "ROC curve; the shaded band is a pointwise 95% bootstrap interval (whole patients resampled).",
    "pr": "Precision–recall curve with average precision (AP); shaded: pointwise 95% bootstrap interval "
          "(whole patients resampled); dashed: the prevalence, what a random score reaches.",
    "confusion": "Confusion matrix at the decision threshold (rows: true class).",
    "calibration": "Reliability diagram: observed fraction positive (95% Wilson interval) against the mean "
                   "predicted probability per bin; ECE = expected calibration error.",
    "curves": "Training and validation loss/accuracy per epoch.",
}
CV_CAPTIONS = {
    "roc": "ROC curves of the pooled out-of-fold predictions (every record scored once, by the model of the "
           "fold that held it out); shaded: pointwise 95% bootstrap band, whole patients resampled. Pooling "
           "puts the scores of different fold models on one axis; the per-fold AUCs are in the chart above.",
    "pr": "Precision–recall curves of the pooled out-of-fold predictions with average precision (AP); "
          "shaded: pointwise 95% bootstrap band (patients resampled); dashed: the prevalence.",
    "calibration": "Reliability diagram of the pooled out-of-fold predictions per model: observed fraction "
                   "positive (95% Wilson interval) against mean predicted probability; ECE = expected "
                   "calibration error.",
}
PRIVATE_COLUMNS = {"patient", "record_id", "study", "series", "path"}
CV_NOTE = ("Per-fold results are not independent: the training sets of different folds share most of "
           "their patients. The plain paired t-test on fold scores therefore understates the variance "
           "and is anti-conservative (too many false 'significant' differences); the Nadeau–Bengio "
           "corrected resampled t-test, which inflates the variance by (1/k + n_test/n_train), is the "
           "one to read (with R repeats of k folds, k is replaced by R·k: Bouckaert & Frank's corrected "
           "repeated cross-validation test). With 5 or fewer folds the Wilcoxon signed-rank test cannot reach "
           "p<0.05. McNemar's and DeLong's tests compare the models' pooled out-of-fold predictions (repeat 0: "
           "every record once, scored by the model that did not train on it); they are binary-only.")

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1150px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}th{background:#f3f3f3}
td:first-child,th:first-child,td.t{text-align:left}
.wide{overflow-x:auto;max-width:100%}th{font-size:.95em}details{margin:.8em 0}summary{cursor:pointer;color:#335}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #eee}
figcaption{color:#555;font-size:.9em}.note{background:#fff8e1;border-left:4px solid #f0b400;
padding:.5em .8em}.sig{font-weight:600}ul.tests li{margin:.25em 0}
"""


def _num(value, digits: int = 3) -> str:
    if value is None or value == "":
        return "–"
    if isinstance(value, bool):
        return str(value)
    try:
        f = float(value)
    except (TypeError, ValueError):
        return html.escape(str(value))
    if math.isnan(f):
        return "–"
    if f == int(f) and abs(f) < 1e9 and not isinstance(value, float) and not (isinstance(value, str) and "." in value):
        return str(int(f))
    return f"{f:.{digits}f}"


def _table(rows: list[dict], columns: list[str] | None = None) -> str:
    if not rows:
        return "<p>(none)</p>"
    columns = [c for c in (columns or list(rows[0])) if c not in PRIVATE_COLUMNS]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(_td(_num(r.get(c))) for c in columns) + "</tr>" for r in rows)
    return f"<div class='wide'><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"


def _td(cell: str) -> str:
    """A cell; words are left-aligned, numbers (and '–') right-aligned so digits line up."""
    numeric = cell.replace("&lt;", "").lstrip("+-−").replace(".", "", 1).isdigit() or cell in ("–", "")
    return f"<td>{cell}</td>" if numeric else f"<td class='t'>{cell}</td>"


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _p_text(result: dict) -> str:
    p = result.get("p_value")
    return describe(result) if isinstance(p, (int, float)) else html.escape(str(result.get("note", "not computed")))


def stat_sentences(stats: dict, alpha: float = 0.05) -> list[str]:
    """Plain-text sentences for the tests in a ``stats.json`` dict.

    Understands ``vs_chance`` ({model: {metric: one-sample t-test}}), ``between_models`` (list of
    {a, b, metric, <test name>: result}) and ``holm_*`` adjustments; any other dict holding
    ``test`` and ``p_value`` is reported under its key path.
    """
    lines: list[str] = []
    seen: set[int] = set()
    for key, how in (("vs_chance_corrected", " (Nadeau–Bengio corrected t)"), ("vs_chance", "")):
        for model, per_metric in (stats.get(key) or {}).items():
            for metric, r in per_metric.items():
                seen.add(id(r))
                p, mean, chance = r.get("p_value"), r.get("mean"), r.get("chance")
                if isinstance(p, (int, float)) and isinstance(mean, (int, float)) and isinstance(chance, (int, float)):
                    verdict = "beats chance" if p < alpha and mean > chance else (
                        "is below chance" if p < alpha else "does not differ significantly from chance")
                    lines.append(f"{model} {metric} {verdict}{how} (mean {mean:.3f} vs {chance:.3f}): {describe(r)}")
                else:
                    lines.append(f"{model} {metric} vs chance{how}: {_p_text(r)}")
    for entry in stats.get("between_models") or []:
        label = f"{entry.get('a')} vs {entry.get('b')}"
        metric = entry.get("metric")
        for key, r in entry.items():
            if isinstance(r, dict) and ("test" in r or "p_value" in r):
                seen.add(id(r))
                about = f" ({metric})" if key in ("paired_ttest", "corrected_resampled_ttest", "wilcoxon") and metric else ""
                about = " (AUC)" if key == "delong" else about
                name = r.get("test", key)
                diff = r.get("mean_difference", r.get("effect_size") if key == "delong" else None)
                extra = f", difference {diff:+.3f}" if isinstance(diff, (int, float)) and math.isfinite(diff) else ""
                lines.append(f"{label}{about}, {name}: {_p_text(r)}{extra}")
    for key, r in stats.items():
        if key.startswith("holm") and isinstance(r, dict) and "adjusted" in r:
            pairs = [f"{e.get('a')} vs {e.get('b')}" for e in stats.get("between_models") or []]
            if len(pairs) != len(r["adjusted"]):
                pairs = [f"#{i + 1}" for i in range(len(r["adjusted"]))]
            adj = ", ".join(f"{name} {p:.4f}" for name, p in zip(pairs, r["adjusted"]))
            lines.append(f"Holm adjustment ({key.removeprefix('holm_').replace('_', ' ')}): adjusted p = {adj}")

    def walk(node, path):
        if isinstance(node, dict):
            if "test" in node and "p_value" in node and id(node) not in seen:
                lines.append(f"{' / '.join(path)}, {node['test']}: {_p_text(node)}")
                return
            for k, v in node.items():
                if k not in ("vs_chance", "vs_chance_corrected", "between_models") or path:
                    walk(v, path + [str(k)])
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, path + [str(i)])

    walk(stats, [])
    return lines


def _p_only(result: dict | None) -> float | None:
    p = (result or {}).get("p_value")
    return float(p) if isinstance(p, (int, float)) and math.isfinite(p) else None


def _chance_verdict(model: str, stats: dict, alpha: float) -> str:
    """One sentence: is ``model`` better than chance, on which evidence, with p."""
    corrected = (stats.get("vs_chance_corrected") or {}).get(model) or {}
    # fold AUC first; when every fold gave the same AUC (t undefined), fold accuracy
    metric = next((m for m in ("auc", "accuracy") if _p_only(corrected.get(m)) is not None),
                  "auc" if "auc" in corrected else next(iter(corrected), None))
    r = corrected.get(metric) if metric else None
    patients = (stats.get("vs_chance_patients") or {}).get(model)
    if r is not None and _p_only(r) is not None:
        p, mean, chance = _p_only(r), r.get("mean"), r.get("chance")
        better = p < alpha and mean > chance
        return (f"{model} is {'better than chance' if better else 'not shown to be better than chance'}: "
                f"{metric.upper() if metric == 'auc' else metric} {mean:.3f} over {r.get('n')} folds vs "
                f"chance {chance:.3f} (Nadeau–Bengio corrected t, {describe(r)}).")
    if patients is not None and _p_only(patients) is not None:
        p = _p_only(patients)
        why = "every fold gave the same value, so the fold t-test is not defined; " if r else ""
        return (f"{model} is {'better than chance' if p < alpha else 'not shown to be better than chance'}: "
                f"{why}patient-level accuracy {patients.get('mean'):.3f} vs chance "
                f"{patients.get('chance'):.3f} (exact binomial, {describe(patients)}).")
    return f"{model}: no test against chance could be computed ({(r or {}).get('note', 'too few folds')})."


def _pair_verdict(entry: dict, alpha: float) -> str:
    """One sentence: which of two models is better (DeLong on pooled AUC first), with p."""
    a, b = entry.get("a"), entry.get("b")
    delong, t, mc = entry.get("delong") or {}, entry.get("corrected_resampled_ttest") or {}, entry.get("mcnemar") or {}
    evidence = []
    if _p_only(delong) is not None:
        evidence.append(f"DeLong on pooled AUC {delong['auc_a']:.3f} vs {delong['auc_b']:.3f}, {describe(delong)}")
    if _p_only(t) is not None:
        evidence.append(f"corrected t on fold {entry.get('metric')}, {describe(t)}")
    if _p_only(mc) is not None:
        evidence.append(f"McNemar on pooled calls, {describe(mc)}")
    if not evidence:
        return f"{a} vs {b}: no comparison could be computed ({t.get('note', 'not defined')})."
    decisive = next((r for r in (delong, t) if _p_only(r) is not None and _p_only(r) < alpha), None)
    if decisive is None:
        return f"{a} and {b} are not shown to differ ({'; '.join(evidence)})."
    diff = decisive.get("effect_size") if decisive is delong else decisive.get("mean_difference")
    if not isinstance(diff, (int, float)):
        diff = (delong.get("effect_size") or 0.0)
    better, worse = (a, b) if diff > 0 else (b, a)
    return f"{better} is better than {worse} ({'; '.join(evidence)})."


def verdict_sentences(stats: dict, alpha: float = 0.05) -> list[str]:
    """The answer first: one sentence per model against chance, one per pair of models.

    Against chance: the Nadeau–Bengio corrected t on fold AUC, or on fold accuracy when the AUC
    test is not defined (every fold gave the same AUC); when neither is, the patient-level exact
    binomial test.
    Between models: DeLong's test on the pooled out-of-fold AUCs, then the corrected t on fold
    scores; a model is called better when either is significant at ``alpha`` (the sign of that
    test's difference says which), and both are quoted with McNemar's test on pooled calls.
    """
    lines = [_chance_verdict(model, stats, alpha) for model in (stats.get("vs_chance_corrected") or {})]
    lines += [_pair_verdict(entry, alpha) for entry in stats.get("between_models") or []]
    return lines


def _lead_chart(folder: Path) -> tuple[str, str | None]:
    """The chart under the verdict: per-fold AUC per model (per-fold accuracy without AUC)."""
    for stem in ("folds_auc", "folds_accuracy"):
        png = folder / f"{stem}.png"
        if png.is_file():
            data = base64.b64encode(png.read_bytes()).decode("ascii")
            return (f'<figure><img alt="{stem}" src="data:image/png;base64,{data}">'
                    f"<figcaption>{html.escape(CHART_CAPTIONS[stem])}</figcaption></figure>", stem)
    return "", None


def _figures(folder: Path, is_cv: bool = False, skip: str | None = None) -> str:
    pngs = {p.stem: p for p in sorted(folder.glob("*.png")) if p.stem != skip}
    captions = {**CHART_CAPTIONS, **(CV_CAPTIONS if is_cv else {})}
    ordered = [pngs.pop(k) for k in CHART_ORDER if k in pngs] + list(pngs.values())
    parts = []
    for p in ordered:
        data = base64.b64encode(p.read_bytes()).decode("ascii")
        caption = captions.get(p.stem, p.stem.replace("_", " "))
        parts.append(f'<figure><img alt="{html.escape(p.stem)}" src="data:image/png;base64,{data}">'
                     f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    return "".join(parts)


def _explain_section(folder: Path) -> str:
    """Overlays written by ``medzoo explain --out <eval dir>/explain``: pointing games and cases."""
    summary_path = folder / "explain" / "explain.json"
    if not summary_path.is_file():
        return ""
    try:
        summary = json.loads(summary_path.read_text())
    except ValueError:
        return ""
    parts = [f"<h2>Explanations</h2><p>Heat maps of the evidence for "
             f"<b>{html.escape(str(summary.get('class', '?')))}</b> (Grad-CAM with HiResCAM "
             f"weighting at layer {html.escape(str(summary.get('layer', '?')))}; guided Grad-CAM: "
             f"the last convolution's map "
             f"({html.escape(str(summary.get('guided_layer', summary.get('layer', '?'))))}) "
             "sharpened to pixels). "
             "The most confident correct and incorrect cases of the split are shown.</p>"]
    games = summary.get("pointing_game") or {}
    if games:
        parts.append("<p>Pointing game (heat-map maximum inside the lesion mask, correctly "
                     "classified positive images):</p>"
                     + _table([{"method": k.replace("_", " "), "n": g.get("n"),
                                "hit rate": g.get("hit_rate")} for k, g in games.items()]))
    for case in summary.get("cases") or []:
        png = folder / "explain" / Path(str(case.get("file", ""))).name
        if not png.is_file():
            continue
        data = base64.b64encode(png.read_bytes()).decode("ascii")
        caption = (f"{case.get('kind')}: label {case.get('label')}, predicted {case.get('predicted')} "
                   f"(p = {_num(case.get('probability'), 2)})")
        parts.append(f'<figure><img alt="{html.escape(str(case.get("kind")))} case" '
                     f'src="data:image/png;base64,{data}"><figcaption>{html.escape(caption)}'
                     "</figcaption></figure>")
    return "".join(parts)


def _eval_section(m: dict) -> str:
    ci = m.get("ci95") or {}
    rows = [{"metric": k, "value": v, "95% CI low": (ci.get(k) or [None, None])[0],
             "95% CI high": (ci.get(k) or [None, None])[1]}
            for k, v in (m.get("metrics") or {}).items() if isinstance(v, (int, float)) or v is None]
    where = m.get("split", "?") + (f" (fold {m['fold']})" if m.get("fold") is not None else "")
    parts = [f"<h2>Evaluation</h2><p>Model <b>{html.escape(str(m.get('model') or 'model'))}</b>, task "
             f"{html.escape(str(m.get('task')))}, split {html.escape(where)}: n={m.get('n')} records from "
             f"{m.get('n_patients')} patients, decision threshold {_num(m.get('threshold'))}.</p>"]
    boot = m.get("bootstrap") or {}
    if boot:
        parts.append(f"<p>95% intervals: {html.escape(str(boot.get('method', 'percentile')))} bootstrap, "
                     f"{boot.get('n_boot')} resamples of whole {html.escape(str(boot.get('unit', 'record')))}s.</p>")
    parts.append(_table(rows))
    conf = m.get("confusion") or {}
    if "tp" in conf:
        parts.append("<h3>Confusion counts</h3>" + _table([conf], ["tn", "fp", "fn", "tp"]))
    pl = m.get("patient_level")
    if pl and pl.get("metrics"):
        keep = ("accuracy", "sensitivity", "specificity", "auc")
        parts.append(f"<h3>Per patient ({html.escape(str(pl.get('aggregation')))}; n={pl.get('n')})</h3>"
                     + _table([{k: pl["metrics"].get(k) for k in keep}], list(keep)))
    seg = m.get("segmentation")
    if seg:
        parts.append("<h3>Segmentation</h3>" + _table([{k: v for k, v in seg.items()
                                                         if isinstance(v, (int, float))}]))
    return "".join(parts)


def _p_cell(r: dict | None) -> str:
    p = (r or {}).get("p_value")
    if not isinstance(p, (int, float)):
        return "–"
    return "&lt;0.0001" if p < 0.0001 else f"{p:.4f}"


def _stat_cell(r: dict | None) -> str:
    r = r or {}
    if not isinstance(r.get("p_value"), (int, float)):
        return html.escape(str(r.get("note", "–")).removeprefix("not defined: "))
    return html.escape(describe(r).rsplit(", p", 1)[0])


def _html_table(head: list[str], rows: list[list[str]]) -> str:
    """A table of already-escaped cells."""
    if not rows:
        return "<p>(none)</p>"
    th = "".join(f"<th>{h}</th>" for h in head)
    body = "".join("<tr>" + "".join(_td(c) for c in row) + "</tr>" for row in rows)
    return f"<div class='wide'><table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table></div>"


def _chance_table(stats: dict, alpha: float = 0.05) -> str:
    rows = []
    corrected = stats.get("vs_chance_corrected") or {}
    for model, per_metric in (stats.get("vs_chance") or {}).items():
        for metric, plain in per_metric.items():
            nb = (corrected.get(model) or {}).get(metric)
            main = nb or plain
            p = main.get("p_value")
            if not isinstance(p, (int, float)):
                verdict = "no test (zero variance)" if "variance" in str(main.get("note")) else "no test"
            elif p < alpha:
                verdict = "above chance" if main.get("mean", 0) > main.get("chance", 0) else "below chance"
            else:
                verdict = "not shown to differ"
            ci = main.get("ci")
            ci_text = f"{_num(max(0.0, ci[0]))} – {_num(min(1.0, ci[1]))}" if ci else "–"
            rows.append([html.escape(model), html.escape(metric), _num(main.get("mean")), _num(main.get("chance")),
                         ci_text, _stat_cell(nb), _p_cell(nb), _stat_cell(plain),
                         _p_cell(plain), html.escape(verdict)])
    return _html_table(["model", "metric", "mean over folds", "chance", "95% CI (corrected, within 0–1)",
                        "corrected t", "p (corrected)", "plain t", "p (plain)", f"at α={alpha}"], rows)


def _patient_table(stats: dict, alpha: float = 0.05) -> str:
    """Patient-level exact binomial tests (``vs_chance_patients``), or nothing."""
    rows = []
    for model, r in (stats.get("vs_chance_patients") or {}).items():
        p = r.get("p_value")
        verdict = ("no test" if not isinstance(p, (int, float)) else
                   "above chance" if p < alpha else "not shown to differ")
        ci = r.get("ci")
        rows.append([html.escape(model), _num(r.get("mean")), _num(r.get("chance")),
                     f"{_num(ci[0])} – {_num(ci[1])}" if ci else "–", _stat_cell(r), _p_cell(r),
                     html.escape(verdict)])
    if not rows:
        return ""
    return ("<p>Patients, not folds: a patient is positive when any of its records is and called "
            "positive when any scores ≥ 0.5 (pooled out-of-fold calls); one-sided exact binomial "
            "test. It stays defined when every fold scores the same.</p>"
            + _html_table(["model", "patient-level accuracy", "chance", "95% CI (Clopper–Pearson)",
                           "correct", "p", f"at α={alpha}"], rows))


BETWEEN_TESTS = (("corrected_resampled_ttest", "Nadeau–Bengio corrected t"), ("paired_ttest", "paired t"),
                 ("wilcoxon", "Wilcoxon signed-rank"), ("mcnemar", "McNemar (pooled predictions)"),
                 ("delong", "DeLong, AUC (pooled predictions)"))


def _between_table(stats: dict) -> str:
    rows = []
    entries = stats.get("between_models") or []
    for i, entry in enumerate(entries):
        for key, name in BETWEEN_TESTS:
            r = entry.get(key)
            if r is None:
                continue
            holm = stats.get(f"holm_{key}")
            adjusted = f"{holm['adjusted'][i]:.4f}" if holm and len(holm.get("adjusted", [])) == len(entries) else "–"
            diff = r.get("mean_difference", r.get("effect_size") if key == "delong" else None)
            rows.append([html.escape(f"{entry.get('a')} vs {entry.get('b')}"), html.escape(name),
                         _num(diff) if isinstance(diff, (int, float)) else "–", _stat_cell(r), _p_cell(r), adjusted])
    return _html_table(["pair", "test", "difference (a − b)", "statistic", "p", "Holm-adjusted p"], rows)


def _cv_section(folder: Path) -> str:
    parts = []
    cv = folder / "cv.json"
    if cv.is_file():
        info = fsio.read_json(cv)
        repeats = info.get("repeats", 1)
        parts.append(f"<p>Models: <b>{html.escape(', '.join(map(str, info.get('models', []))))}</b>; "
                     f"{info.get('folds')} patient-grouped folds"
                     + (f" × {repeats} repeats (split seeds {html.escape(str(info.get('split_seeds')))})"
                        if repeats and repeats > 1 else "")
                     + f"; training seed {info.get('seed')}; epochs {info.get('epochs')}.</p>")
    if (folder / "summary.csv").is_file():
        parts.append("<h2>Summary over folds</h2><p>Mean, standard deviation and t-based 95% CI of the "
                     "mean over folds (metrics are fractions, 0–1).</p>" + _table(_read_csv(folder / "summary.csv")))
    if (folder / "stats.json").is_file():
        stats = fsio.read_json(folder / "stats.json")
        prevalence = stats.get("prevalence")
        if isinstance(prevalence, (int, float)):
            intro = (f"Chance levels use the positive-class prevalence p = {prevalence:.3f} of the "
                     f"{stats.get('n_records', '')} evaluated records: accuracy chance = max(p, 1−p); "
                     "balanced accuracy, sensitivity, specificity and AUC chance = 0.5.")
        else:
            shares = ", ".join(f"{s:.3f}" for s in stats.get("class_shares") or [])
            intro = (f"Class shares {shares}: accuracy chance = the largest share; balanced accuracy chance "
                     "= 1/k; macro AUC chance = 0.5.")
        items = "".join(f"<li>{html.escape(s)}</li>" for s in stat_sentences(stats))
        parts.append(f"<h2>Statistical tests</h2><p>{html.escape(intro)} Two-sided tests, α = 0.05.</p>"
                     f"<p class='note'>{html.escape(CV_NOTE)}</p>"
                     f"<h3>Against chance</h3>{_chance_table(stats)}{_patient_table(stats)}"
                     f"<h3>Between models</h3>{_between_table(stats)}"
                     f"<details><summary>Every test in words</summary><ul class='tests'>{items}</ul></details>")
    if (folder / "folds.csv").is_file():
        parts.append("<h2>Per fold</h2>" + _table(_read_csv(folder / "folds.csv")))
    return "".join(parts)


def _table_section(folder: Path) -> str:
    rows = _read_csv(folder / "table.csv")
    keep = ["model", "dataset", "status", "task", "split", "n", "n_patients", "accuracy", "sensitivity",
            "specificity", "auc", "dice", "reason"]
    shown = [c for c in keep if any(r.get(c) not in (None, "") for r in rows)]
    return ("<h2>Evaluations</h2><p>One row per model and dataset; 95% intervals are in table.csv and "
            "in each pair's folder.</p>" + _table(rows, shown))


def render_report(folder) -> str:
    """The HTML text of :func:`write_report` (nothing written).

    Raises
    ------
    InputError
        When ``folder`` holds none of metrics.json, summary.csv, folds.csv, stats.json.
    """
    folder = Path(folder)
    known = [n for n in ("metrics.json", "summary.csv", "folds.csv", "stats.json", "table.csv")
             if (folder / n).is_file()]
    if not folder.is_dir() or not known:
        raise InputError(f"{folder}: expected a CV dir or eval dir holding metrics.json, summary.csv, "
                         "folds.csv, stats.json or table.csv. Received: none of them")
    is_cv = any(n not in ("metrics.json", "table.csv") for n in known)
    body = [f"<h1>medzoo {'cross-validation' if is_cv else 'evaluation'} report</h1>"]
    lead = None
    if is_cv and (folder / "stats.json").is_file():
        verdict = verdict_sentences(fsio.read_json(folder / "stats.json"))
        chart, lead = _lead_chart(folder)
        body.append("<h2>Verdict</h2><ul class='tests'>"
                    + "".join(f"<li>{html.escape(s)}</li>" for s in verdict) + "</ul>" + chart)
    if is_cv:
        body.append(_cv_section(folder))
    if (folder / "table.csv").is_file() and not (folder / "metrics.json").is_file():
        body.append(_table_section(folder))
    if (folder / "metrics.json").is_file():
        try:
            body.append(_eval_section(json.loads((folder / "metrics.json").read_text())))
        except ValueError as exc:
            raise InputError(f"{folder / 'metrics.json'}: expected JSON. Received: {type(exc).__name__}")
    figures = _figures(folder, is_cv, skip=lead)
    if figures:
        body.append("<h2>Charts</h2>" + figures)
    body.append(_explain_section(folder))
    body.append(f"<p style='color:#777;font-size:.85em'>Written by medzoo {html.escape(__version__)}. "
                "No record ids or patient keys are included; charts are embedded, so this file opens offline.</p>")
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>medzoo report</title><style>{_CSS}</style></head><body>"
            + "".join(body) + "</body></html>\n")


def write_report(folder) -> Path:
    """Write ``report.html`` into a CV dir or eval dir, atomically.

    Parameters
    ----------
    folder : path of a CV dir (summary.csv/folds.csv/stats.json) or an eval dir (metrics.json)

    Returns
    -------
    Path of ``report.html``.

    Raises
    ------
    InputError
        When the folder holds nothing to report.
    """
    text = render_report(folder)
    return fsio.write_text(Path(folder) / "report.html", text)
