"""TFX Evaluator-style blessing: a version is BLESSED only when every rule holds."""

from __future__ import annotations

import operator
import re

from medzoo.errors import MedzooError

_OPERATORS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}
_RULE = re.compile(r"^\s*([a-z_][a-z0-9_]*)\s*(>=|<=|>|<)\s*([-+]?[0-9]*\.?[0-9]+)\s*$")


def parse_rule(text: str) -> tuple[str, str, float]:
    """``"auc>=0.85"`` → ``("auc", ">=", 0.85)``; parsed, never evaluated as code."""
    match = _RULE.match(text.lower())
    if not match:
        raise MedzooError(
            f"--bless-if expects METRIC>=VALUE (or <=, >, <), e.g. auc>=0.85. Received: {text!r}"
        )
    return match.group(1), match.group(2), float(match.group(3))


def decide(metrics: dict, rules: list[str], *, parity_passed: bool,
           baseline: dict | None = None, margin: float = 0.0) -> tuple[bool, list[str]]:
    """Whether to bless, and the reasons (each rule's outcome, in words).

    ``metrics`` are the candidate's validation metrics (name → value); ``baseline`` those of the
    currently blessed version: every metric named in ``rules`` must not be worse by more than
    ``margin`` (worse = lower, except for metrics a rule bounds from above).
    """
    reasons, blessed = [], parity_passed
    reasons.append("parity: SavedModel and ONNX match Keras" if parity_passed
                   else "parity: exported models differ from Keras")
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
