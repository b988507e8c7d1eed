"""Pure pairing and per-finding decision rules (no model): the promises predict relies on."""

import numpy as np
import pytest

from medzoo.deploy import findings
from medzoo.deploy.pairing import SeriesInfo, match_slices, pair_study
from medzoo.export.inputs import declared_findings, declared_inputs, raw_input_names

CT_MR = [{"name": "ct", "modality": "CT"}, {"name": "mr", "modality": "MR"}]


def _every_series_accounted_for(plan, n_series, slices_per_series):
    """Each slice of each series is paired once or listed as not analysed, never both."""
    seen = {}
    for pairing in plan.pairings:
        for indices in pairing.slices:
            for series, index in zip(pairing.series, indices):
                assert (series, index) not in seen
                seen[(series, index)] = "paired"
    for series, index, _ in plan.not_analysed:
        targets = range(slices_per_series[series]) if index is None else [index]
        for k in targets:
            assert (series, k) not in seen
            seen[(series, k)] = "not analysed"
    assert set(seen) == {(s, k) for s in range(n_series) for k in range(slices_per_series[s])}


def test_co_registered_series_pair_slice_by_slice_whatever_their_order():
    ct = SeriesInfo("CT", "1.2", (-100.0, -95.0, -90.0))
    mr = SeriesInfo("MR", "1.2", (-90.0, -100.0, -95.0))  # stored in another order
    plan = pair_study([mr, ct], CT_MR)
    assert plan.not_analysed == ()
    assert plan.pairings[0].series == (1, 0)
    assert plan.pairings[0].slices == ((0, 1), (1, 2), (2, 0))


@pytest.mark.parametrize("series, reason", [
    ([SeriesInfo("CT", "f", (0.0,))], "no MR series to pair with CT series 1"),
    ([SeriesInfo("MR", "f", (0.0,))], "no CT series to pair with MR series 1"),
    ([SeriesInfo("CT", "f", (0.0, 5.0)), SeriesInfo("MR", "g", (0.0, 5.0))],
     "no MR series in the frame of reference of CT series 1 (the study's MR series are not "
     "co-registered with it)"),
    ([SeriesInfo("CT", None, (None, None)), SeriesInfo("MR", None, (None,))],
     "CT series 1 and MR series 2 differ in slice count (2 vs 1) and carry no slice positions "
     "to match them by"),
])
def test_a_study_that_cannot_be_paired_says_why(series, reason):
    plan = pair_study(series, CT_MR)
    assert plan.pairings == ()
    assert plan.not_analysed[0] == (0, None, reason)
    _every_series_accounted_for(plan, len(series), [len(s.positions) for s in series])


def test_other_modalities_and_extra_slices_are_listed_not_dropped():
    series = [SeriesInfo("CT", "f", (0.0, 5.0, 10.0)), SeriesInfo("MR", "f", (5.0, 10.0, 15.0)),
              SeriesInfo("PT", "f", (0.0,))]
    plan = pair_study(series, CT_MR)
    assert plan.pairings[0].slices == ((1, 0), (2, 1))
    assert sorted(plan.not_analysed) == [
        (0, 0, "no MR slice at the position of CT series 1 slice 1"),
        (1, 2, "no CT slice at the position of MR series 2 slice 3"),
        (2, None, "PT series 3: modality PT is not an input of this model (inputs: CT, MR)")]
    _every_series_accounted_for(plan, 3, [3, 3, 1])


def test_two_ct_series_each_take_the_mr_of_their_frame_of_reference():
    series = [SeriesInfo("CT", "a", (0.0,)), SeriesInfo("CT", "b", (0.0,)),
              SeriesInfo("MR", "b", (0.0,)), SeriesInfo("MR", "a", (0.0,))]
    plan = pair_study(series, CT_MR)
    assert [p.series for p in plan.pairings] == [(0, 3), (1, 2)]


def test_a_second_ct_series_with_no_mr_left_says_so():
    series = [SeriesInfo("CT", "a", (0.0,)), SeriesInfo("CT", "a", (0.0,)),
              SeriesInfo("MR", "a", (0.0,))]
    plan = pair_study(series, CT_MR)
    assert [p.series for p in plan.pairings] == [(0, 2)]
    assert plan.not_analysed == ((1, None, "no MR series left to pair with CT series 2 (each MR "
                                           "series of the study is paired with another CT "
                                           "series)"),)


def test_match_slices_uses_half_the_slice_gap_and_each_slice_once():
    assert match_slices((0.0, 5.0), (0.4, 2.6)) == [(0, 0)]  # 2.6 is past 2.5 mm of 5.0
    assert match_slices((0.0, 0.1), (0.0,)) == [(0, 0)]
    assert match_slices((None, 1.0), (2.0, 3.0)) == [(0, 0), (1, 1)]  # by order
    assert match_slices((None,), (2.0, 3.0)) is None


def test_declared_inputs_name_each_column_by_its_modality():
    info = {"input_columns": ["path", "path_mr"], "windows": ["auto", [40, 400]],
            "modalities": {"CT": 10}}
    assert declared_inputs(info, 2) == [
        {"name": "ct", "modality": "CT", "channels": [0], "window": "auto"},
        {"name": "mr", "modality": "MR", "channels": [1], "window": [40, 400]}]
    assert declared_inputs({"input_columns": ["path"], "modalities": {"MR": 3}}, 2) == [
        {"name": "mr", "modality": "MR", "channels": [0, 1], "window": "auto"}]
    two_t = declared_inputs({"input_columns": ["path_t1", "path_t2"]}, 2)
    assert [(d["name"], d["modality"]) for d in two_t] == [("t1", None), ("t2", None)]
    assert raw_input_names(two_t)[:2] == ["t1_pixels", "t1_rescale_slope"]
    assert raw_input_names(declared_inputs(None, 1))[0] == "pixels"


def test_per_finding_rules_threshold_or_argmax():
    multi_label = declared_findings({"task": "classification", "multi_label": True,
                                     "classes": ["normal", "ground_glass", "nodule"],
                                     "threshold": {"rule": "youden",
                                                   "per_class": {"nodule": 0.3}}})
    assert [(f["name"], f["index"], f["threshold"]) for f in multi_label] == [
        ("ground_glass", 1, 0.5), ("nodule", 2, 0.3)]
    multi_class = declared_findings({"task": "classification",
                                     "classes": ["normal", "ground_glass", "nodule"]})
    assert [(f["name"], f["rule"]) for f in multi_class] == [("ground_glass", "argmax"),
                                                             ("nodule", "argmax")]
    probabilities = np.array([[0.2, 0.45, 0.35], [0.6, 0.1, 0.31]])
    assert findings.decide_findings(probabilities, multi_label).tolist() == [
        [False, True], [False, True]]
    assert findings.decide_findings(probabilities, multi_class).tolist() == [
        [True, False], [False, False]]
    rows = findings.image_findings(probabilities, multi_class,
                                   ["normal", "ground_glass", "nodule"], multi_label=False)
    assert [r["predicted"] for r in rows] == ["ground_glass", "normal"]
    assert rows[0]["score_nodule"] == "0.350000"
    summary = findings.summarise_findings(probabilities, multi_label)
    assert [(f["finding"], f["present"], f["probability"], f["max_index"]) for f in summary] == [
        ("ground_glass", False, 0.45, 0), ("nodule", True, 0.35, 0)]
