"""Pair a study's series for a several-input (fusion) model: which series feeds which input, and
which slices go together.

A fusion export declares its inputs in channel order, one modality each
(:func:`medzoo.export.inputs.declared_inputs`), e.g. CT then MR. Within one study, every series of
the first input's modality (the *lead*) is paired with one series of each other input's
modality: preferably one in the same frame of reference, then the one with the most slice
positions in common. Slices are matched by position along the slice normal when every slice
has one (co-registered series share positions), else by order when the counts agree. What
cannot be paired is *not analysed*, each with a reason a user can act on ("no MR series to pair
with CT series 1").

Pure functions of small descriptions (no DICOM, no I/O); series and slices are referred to by
their index in the lists given, series numbers in messages count from 1 within the study.
"""

from __future__ import annotations

import dataclasses

__all__ = ["SeriesInfo", "Pairing", "StudyPlan", "pair_study", "match_slices"]

DEFAULT_TOLERANCE_MM = 0.5
"""Largest position difference (mm) of matched slices when the series give no spacing."""


@dataclasses.dataclass(frozen=True)
class SeriesInfo:
    """What pairing needs of one series of a study.

    ``positions`` holds one entry per slice (frame) in acquisition order: its position along the
    slice normal in mm, or None when the header gives none.
    """

    modality: str | None
    frame_of_reference: str | None
    positions: tuple


@dataclasses.dataclass(frozen=True)
class Pairing:
    """One lead series and its partners: ``series`` holds a series index per declared input
    (lead first); ``slices`` a tuple of slice indices (one per input) per paired image."""

    series: tuple
    slices: tuple


@dataclasses.dataclass(frozen=True)
class StudyPlan:
    """``pairings`` to score; ``not_analysed``: ``(series index, slice index or None for the
    whole series, reason)``."""

    pairings: tuple
    not_analysed: tuple


def pair_study(series: list[SeriesInfo], inputs: list[dict], *,
               tolerance: float | None = None) -> StudyPlan:
    """Pair the series of one study for the declared ``inputs``.

    Parameters
    ----------
    series : list of SeriesInfo
        The study's series, in the order the user knows them (series 1, 2, …).
    inputs : list of dict
        The export's declared inputs (``name``, ``modality``); the first is the lead. An input
        whose modality is None takes the series no other input claims, in order.
    tolerance : float, optional
        Largest position difference in mm of matched slices (default: half the smallest slice
        gap of the two series, else :data:`DEFAULT_TOLERANCE_MM`).

    Returns
    -------
    StudyPlan
        Every series index appears in a pairing or in ``not_analysed`` (whole or slice by slice).

    Raises
    ------
    ValueError
        When ``inputs`` holds fewer than two entries.
    """
    if len(inputs) < 2:
        raise ValueError(f"Expected two or more declared inputs to pair. Received: {len(inputs)}")
    labels = [_label(d) for d in inputs]
    candidates = _candidates(series, inputs)
    claimed = {i for c in candidates for i in c}
    not_analysed = [(i, None, f"{_name(s, i)}: modality {s.modality or 'unknown'} is not an "
                              f"input of this model (inputs: {', '.join(labels)})")
                    for i, s in enumerate(series) if i not in claimed]
    used: set[int] = set()
    pairings = []
    for lead in candidates[0]:
        chosen, reason = [lead], None
        for j in range(1, len(inputs)):
            free = [c for c in candidates[j] if c not in used and c not in chosen]
            if candidates[j] and not free:
                reason = (f"no {labels[j]} series left to pair with {labels[0]} series "
                          f"{lead + 1} (each {labels[j]} series of the study is paired with "
                          f"another {labels[0]} series)")
                break
            partner, why = _choose_partner(series, lead, free, labels[j], labels[0], tolerance)
            if partner is None:
                reason = why
                break
            chosen.append(partner)
        if reason is None:
            slices, dropped, reason = _match_all(series, chosen, labels, tolerance)
        if reason is not None:
            not_analysed.append((lead, None, reason))
            continue
        used.update(chosen[1:])
        pairings.append(Pairing(series=tuple(chosen), slices=tuple(slices)))
        not_analysed.extend(dropped)
    for j in range(1, len(inputs)):
        for i in candidates[j]:
            if i not in used:
                lead_label = labels[0]
                reason = (f"no {lead_label} series to pair with {_name(series[i], i)}"
                          if not candidates[0] else
                          f"{_name(series[i], i)}: not paired (every {lead_label} series of the "
                          "study is paired with another or could not be paired)")
                not_analysed.append((i, None, reason))
    return StudyPlan(pairings=tuple(pairings), not_analysed=tuple(not_analysed))


def match_slices(lead: tuple, other: tuple, *, tolerance: float | None = None):
    """Match the slices of two series by position (or by order when positions are missing).

    Parameters
    ----------
    lead, other : tuple of (float or None)
        Slice positions along the normal, one per slice.
    tolerance : float, optional
        See :func:`pair_study`.

    Returns
    -------
    list of (int, int) or None
        ``(lead index, other index)`` pairs in lead order; each index used at most once. None when
        positions are missing on either side and the counts differ (no safe pairing).
    """
    if any(p is None for p in lead) or any(p is None for p in other):
        if len(lead) != len(other):
            return None
        return [(i, i) for i in range(len(lead))]
    limit = _tolerance(lead, other) if tolerance is None else float(tolerance)
    free = dict(enumerate(other))
    pairs = []
    for i, z in enumerate(lead):
        if not free:
            break
        k = min(free, key=lambda k: (abs(free[k] - z), k))
        if abs(free[k] - z) <= limit:
            pairs.append((i, k))
            del free[k]
    return pairs


# --------------------------------------------------------------------------- helpers


def _candidates(series: list[SeriesInfo], inputs: list[dict]) -> list[list[int]]:
    """Series indices each input may take: those of its modality; inputs without a modality
    share the series no named input takes, dealt out in order."""
    named = {str(d["modality"]).upper() for d in inputs if d.get("modality")}
    out: list = [[i for i, s in enumerate(series)
                  if (s.modality or "").upper() == str(d["modality"]).upper()]
                 if d.get("modality") else None for d in inputs]
    unnamed = [k for k, picks in enumerate(out) if picks is None]
    pool = [i for i, s in enumerate(series) if (s.modality or "").upper() not in named]
    for n, k in enumerate(unnamed):
        out[k] = pool[n::len(unnamed)]
    return out


def _choose_partner(series, lead: int, free: list[int], label: str, lead_label: str,
                    tolerance) -> tuple[int | None, str | None]:
    lead_info = series[lead]
    if not free:
        return None, f"no {label} series to pair with {lead_label} series {lead + 1}"
    for_lead = lead_info.frame_of_reference
    same = [c for c in free if for_lead and series[c].frame_of_reference == for_lead]
    unknown = [c for c in free if not for_lead or not series[c].frame_of_reference]
    pool = same or unknown
    if not pool:
        return None, (f"no {label} series in the frame of reference of {lead_label} series "
                      f"{lead + 1} (the study's {label} series are not co-registered with it)")

    def matched(c):
        pairs = match_slices(lead_info.positions, series[c].positions, tolerance=tolerance)
        return len(pairs or ())

    return max(pool, key=lambda c: (matched(c), -c)), None


def _match_all(series, chosen: list[int], labels: list[str], tolerance):
    """Slices present in every chosen series, by their match to the lead's slices."""
    lead = chosen[0]
    lead_positions = series[lead].positions
    per_partner = []
    for j, c in enumerate(chosen[1:], start=1):
        pairs = match_slices(lead_positions, series[c].positions, tolerance=tolerance)
        if pairs is None:
            return None, None, (
                f"{labels[0]} series {lead + 1} and {labels[j]} series {c + 1} differ in slice "
                f"count ({len(lead_positions)} vs {len(series[c].positions)}) and carry no slice "
                "positions to match them by")
        if not pairs:
            return None, None, (f"no slice of {labels[j]} series {c + 1} lies at a slice position "
                                f"of {labels[0]} series {lead + 1}")
        per_partner.append(dict(pairs))
    slices, dropped = [], []
    for i in range(len(lead_positions)):
        if all(i in m for m in per_partner):
            slices.append((i, *(m[i] for m in per_partner)))
        else:
            missing = next(labels[j] for j, m in enumerate(per_partner, start=1) if i not in m)
            dropped.append((lead, i, f"no {missing} slice at the position of {labels[0]} series "
                                     f"{lead + 1} slice {i + 1}"))
    used = [{s[j] for s in slices} for j in range(1, len(chosen))]
    for j, c in enumerate(chosen[1:], start=1):
        for k in range(len(series[c].positions)):
            if k not in used[j - 1]:
                dropped.append((c, k, f"no {labels[0]} slice at the position of {labels[j]} "
                                      f"series {c + 1} slice {k + 1}"))
    if not slices:
        return None, None, (f"no slice position common to {labels[0]} series {lead + 1} and "
                            f"its partner series")
    return slices, dropped, None


def _tolerance(a: tuple, b: tuple) -> float:
    gaps = [abs(y - x) for seq in (sorted(a), sorted(b)) for x, y in zip(seq, seq[1:])
            if abs(y - x) > 1e-6]
    return 0.5 * min(gaps) if gaps else DEFAULT_TOLERANCE_MM


def _label(d: dict) -> str:
    return str(d.get("modality") or d.get("name") or "input")


def _name(s: SeriesInfo, i: int) -> str:
    return f"{s.modality or 'unknown'} series {i + 1}"
