"""``predict`` for several-input (fusion) exports: each study's series paired, fed together.

A fusion export declares one input per modality (``model_card.json`` ``input.inputs``; e.g. CT
then MR) and its raw serving signature takes one group of raw inputs per modality
(``ct_pixels, ct_rescale_slope, …, mr_pixels, …``). Here every study's series are paired by
:func:`medzoo.deploy.pairing.pair_study` (modality, frame of reference, slice position), the
paired images go through the model together, one score per pair, reported under the lead
(first input's) series and slice. Series and slices that cannot be paired are *not analysed*:
one ``not_analysed.csv`` row each (study, series within the study, files, images, modality,
reason), also under the study in ``studies.json``, so that every input file is scored, rejected
(``rejected.csv``: it could not be read) or not analysed, once.
"""

from __future__ import annotations

from medzoo.deploy import pairing
from medzoo.deploy.collect import Batches
from medzoo.deploy.feeds import read_raw_feeds

__all__ = ["score_fused"]


def score_fused(model, run, studies, state, batch_size: int, bar) -> None:
    """Pair, read, batch and score every study of ``studies`` for a fusion ``model``.

    Parameters
    ----------
    model : medzoo.deploy.exported.ExportedModel
        With two or more declared ``inputs``.
    run : callable
        The runtime: feeds dict → outputs dict.
    studies : list
        Studies → series → objects, as :func:`medzoo.deploy.sources.group` returns them.
    state : medzoo.deploy.collect.Collector
        Receives the scores (under the lead series) and the not-analysed entries.
    batch_size : int
    bar : tqdm progress bar (one step per object).
    """
    from medzoo.datasets.ingest import parse_window

    inputs = list(model.inputs)
    windows = [parse_window(d.get("window") or "auto") for d in inputs]
    batches = Batches(run, state, batch_size)
    cache: dict = {}  # path → raw feeds, or the reason it could not be read

    def read(src, window):
        if src.path not in cache:
            cache[src.path] = read_raw_feeds(src.path, window)
        return cache[src.path]

    for study_no, series_list in enumerate(studies, start=1):
        cache.clear()  # pairs never cross studies; keep one study's pixels in memory at most
        slices = [_slices(objects) for objects in series_list]
        plan = pairing.pair_study(
            [pairing.SeriesInfo(modality=objects[0].modality or None,
                                frame_of_reference=objects[0].frame_of_reference or None,
                                positions=tuple(pos for _, _, pos in sl))
             for objects, sl in zip(series_list, slices)], inputs)
        accounted: set[int] = set()  # objects scored (in at least one pair) or rejected
        for pair in plan.pairings:
            lead_objects = series_list[pair.series[0]]
            key = state.open_series(study_no, lead_objects)
            by_object: dict[int, list] = {}
            for indices in pair.slices:
                obj, frame, _ = slices[pair.series[0]][indices[0]]
                partners = [slices[s][i][:2] for s, i in zip(pair.series[1:], indices[1:])]
                by_object.setdefault(id(obj), []).append((frame, partners))
            for obj in lead_objects:
                bar.update(1)
                entries = by_object.get(id(obj))
                if not entries:  # listed as not analysed below, with the pairing's reason
                    state.object_done(key)
                    continue
                lead_feeds = read(obj, windows[0])
                why = lead_feeds if isinstance(lead_feeds, str) else None
                for frame, partners in entries if why is None else ():
                    for j, (partner, _) in enumerate(partners, start=1):
                        value = read(partner, windows[j])
                        if isinstance(value, str) and why is None:
                            why = f"paired {_label(inputs[j])} image rejected ({value})"
                accounted.add(id(obj))
                if why is not None:
                    state.drop(key, obj, why)
                    continue
                for frame, partners in entries:
                    feeds = _combine(inputs, obj, frame, partners, lead_feeds, cache)
                    accounted.update(id(p) for p, _ in partners)
                    batches.add(key, obj, frame, feeds)
                state.object_done(key)
        leads = {p.series[0] for p in plan.pairings}
        for index, objects in enumerate(series_list):
            for obj in objects if index not in leads else ():
                bar.update(1)
                value = cache.get(obj.path)
                if isinstance(value, str) and id(obj) not in accounted:  # read, unusable
                    state.reject(obj.rel, value)
                    accounted.add(id(obj))
        counted: set[int] = set()
        for series_index, slice_index, reason in plan.not_analysed:
            objects = ([slices[series_index][slice_index][0]] if slice_index is not None
                       else series_list[series_index])
            _not_analysed(state, study_no, series_index, series_list, objects, reason,
                          accounted, counted,
                          images=1 if slice_index is not None else None)
        for index, objects in enumerate(series_list):  # partners of rejected lead images
            left = [o for o in objects if id(o) not in accounted and id(o) not in counted]
            if left:
                _not_analysed(state, study_no, index, series_list, left,
                              f"the {_label(inputs[0])} image it pairs with was rejected",
                              accounted, counted)
    batches.flush()


def _not_analysed(state, study_no, series_index, series_list, objects, reason, accounted,
                  counted, images=None) -> None:
    """One ``not_analysed.csv`` row; a file counts once, and not when it was scored or
    rejected (a multi-frame file may be scored in part)."""
    files = [o for o in objects if id(o) not in accounted and id(o) not in counted]
    counted.update(id(o) for o in files)
    state.list_not_analysed(
        study_no, series_index + 1, files,
        images=images if images is not None else sum(o.frames for o in objects),
        modality=series_list[series_index][0].modality or None, reason=reason)


def _slices(objects) -> list[tuple]:
    """``(object, frame index, position or None)`` per frame of a series, in order."""
    return [(obj, f, obj.position if obj.frames == 1 else None)
            for obj in objects for f in range(obj.frames)]


def _combine(inputs, lead, frame, partners, lead_feeds, cache) -> dict:
    feeds = {f"{inputs[0]['name']}_{k}": v[frame] for k, v in lead_feeds.items()}
    for d, (partner, partner_frame) in zip(inputs[1:], partners):
        feeds.update({f"{d['name']}_{k}": v[partner_frame]
                      for k, v in cache[partner.path].items()})
    return feeds


def _label(d: dict) -> str:
    return str(d.get("modality") or d.get("name"))
