"""TFX Evaluator-style blessing: a version is BLESSED only when every rule holds.

Without ``--bless-if`` the default rule demands skill, not only a faithful export: parity holds
AND the validation metric beats chance with confidence — the lower bound of the 95% patient
bootstrap interval of AUC above 0.5 for classifiers, of Dice above :data:`DICE_FLOOR` (or above
the Dice an empty prediction would score, whichever is higher) for segmenters — AND, with a
baseline, the metric is not worse than the baseline's. ``--bless-if`` rules replace the skill
rule (parity still counts). The first reason always names the rule that applied.
"""

from __future__ import annotations

import operator
import re

from medzoo.errors import MedzooError

_OPERATORS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}
# Segmenters: Dice counts 1.0 where truth and prediction are both empty, so a model that finds
# nothing scores the fraction of empty records; the floor is at least that, and at least 0.5.
DICE_FLOOR = 0.5
CHANCE_AUC = 0.5
_RULE = re.compile(r"^\s*([a-z_][a-z0-9_]*)\s*(>=|<=|>|<)\s*([-+]?[0-9]*\.?[0-9]+)\s*$")


def parse_rule(text: str) -> tuple[str, str, float]:
    """``"auc>=0.85"`` → ``("auc", ">=", 0.85)``; parsed, never evaluated as code."""
    match = _RULE.match(text.lower())
    if not match:
        raise MedzooError(
            f"--bless-if expects METRIC>=VALUE (or <=, >, <), e.g. auc>=0.85. Received: {text!r}"
        )
    return match.group(1), match.group(2), float(match.group(3))


def skill_rule(evaluation: dict) -> tuple[str, float | None, float | None, float]:
    """The default rule's metric, its value, its CI lower bound and the bound it must beat.

    ``evaluation`` is the validation evaluation (``metrics``, ``ci95``, ``segmentation`` as
    :func:`medzoo.evaluation.evaluate.evaluate` returns it). Segmenters (a ``dice`` metric) are
    judged on Dice against ``max(DICE_FLOOR, Dice of an empty prediction)``; everything else on
    AUC (macro AUC for more than two classes) against chance, 0.5.
    """
    metrics, ci95 = evaluation.get("metrics") or {}, evaluation.get("ci95") or {}
    if "dice" in metrics:
        seg = evaluation.get("segmentation") or {}
        n, positive = seg.get("n_with_mask") or 0, seg.get("n_positive_with_mask") or 0
        empty_dice = (1.0 - positive / n) if n else 0.0
        name, bound = "dice", max(DICE_FLOOR, empty_dice)
    else:
        name, bound = "auc", CHANCE_AUC
    interval = ci95.get(name) or (ci95.get("macro_auc") if name == "auc" else None) or [None]
    return name, metrics.get(name), interval[0], bound


def decide(metrics: dict, rules: list[str], *, parity_passed: bool,
           baseline: dict | None = None, margin: float = 0.0,
           evaluation: dict | None = None) -> tuple[bool, list[str]]:
    """Whether to bless, and the reasons (the rule that applied, then each check, in words).

    ``metrics`` are the candidate's validation metrics (name → value); ``baseline`` those of the
    currently blessed version: every metric named in ``rules`` (the skill metric under the
    default rule) must not be worse by more than ``margin`` (worse = lower, except for metrics a
    rule bounds from above). ``evaluation`` is the whole validation evaluation (``metrics`` plus
    ``ci95``); the default rule (no ``rules``) needs its confidence interval and fails without it.
    """
    if rules:
        reasons = [f"rule: --bless-if {' and '.join(rules)} (overrides the default skill rule)"]
    else:
        reasons = ["rule: default (parity, validation metric beats chance with 95% confidence"
                   + (", not worse than the baseline)" if baseline is not None else ")")]
    blessed = parity_passed
    reasons.append("parity: SavedModel and ONNX match Keras" if parity_passed
                   else "parity: exported models differ from Keras")
    if not rules:
        name, value, low, bound = skill_rule(evaluation or {"metrics": metrics})
        if value is None or low is None:
            blessed = False
            reasons.append(f"skill: {name} or its 95% CI not measured on the validation fold; "
                           "cannot show the model beats chance")
        else:
            ok = low > bound
            blessed &= ok
            reasons.append(f"skill: {name}={value:.4f}, 95% CI lower bound {low:.4f} "
                           f"{'>' if ok else '<='} {bound:.4f} "
                           f"({'beats' if ok else 'does not beat'} "
                           f"{'chance' if name == 'auc' else 'the Dice floor'} with confidence)")
        if baseline is not None and (name not in baseline or value is None):
            blessed = False
            reasons.append(f"baseline: {name} missing from candidate or baseline; not comparable")
        elif baseline is not None:
            ok = value - baseline[name] >= -margin
            blessed &= ok
            reasons.append(f"{name}={value:.4f} vs blessed baseline {baseline[name]:.4f}: "
                           f"{'not worse' if ok else 'worse'} than margin {margin:g}")
        return blessed, reasons
    for rule in rules:
        name, op, bound = parse_rule(rule)
        value = metrics.get(name)
        if value is None:
            blessed = False
            reasons.append(f"{name}: not measured (available: {', '.join(sorted(metrics))})")
            continue
        ok = _OPERATORS[op](value, bound)
        blessed &= ok
        reasons.append(f"{name}={value:.4f} {'meets' if ok else 'fails'} {op}{bound:g}")
        if baseline is not None and name in baseline:
            higher_is_better = op in (">=", ">")
            delta = value - baseline[name] if higher_is_better else baseline[name] - value
            ok = delta >= -margin
            blessed &= ok
            reasons.append(f"{name} vs blessed baseline {baseline[name]:.4f}: "
                           f"{'not worse' if ok else 'worse'} than margin {margin:g}")
    return blessed, reasons
