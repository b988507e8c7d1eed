"""Explanations: Grad-CAM points at the lesion (the pointing game), overlays reach the report."""

import json

import numpy as np
import pytest


@pytest.fixture(scope="module")
def explained(well_trained_cnn):
    """``medzoo explain`` over every record, into an eval dir's explain/ folder."""
    from medzoo.zoo.explain import explain_dataset

    trained = well_trained_cnn
    out = trained / "eval"
    out.mkdir()
    (out / "metrics.json").write_text(json.dumps({"task": "classification", "split": "all",
                                                  "n": 48, "metrics": {"accuracy": 1.0}}))
    return out, explain_dataset(trained / "run", trained / "ds", out / "explain", split="all",
                                limit=2)


def test_pointing_game_hits_the_lesion(explained, capsys):
    _, summary = explained
    games = summary["pointing_game"]
    with capsys.disabled():
        print("\npointing game, 32-px phantoms: " + ", ".join(
            f"{k} {g['hit_rate']:.2f} (n={g['n']})" for k, g in games.items()))
    assert games["guided_grad_cam"]["n"] >= 20  # most of the 24 positive images, correctly called
    assert games["guided_grad_cam"]["hit_rate"] >= 0.8
    assert games["occlusion"]["hit_rate"] >= 0.8  # the model-agnostic check agrees
    assert summary["class"] == "lesion" and summary["layer"] == "stage2_relu0"


def test_pointing_game_counts_hits_and_misses():
    from medzoo.zoo.explain import pointing_game

    masks = np.zeros((3, 8, 8), np.uint8)
    masks[:, 2:4, 2:4] = 1
    heat = np.zeros((3, 8, 8))
    heat[0, 3, 3] = 1.0  # inside
    heat[1, 4, 4] = 1.0  # just outside
    heat[2, 2, 2] = 0.5
    heat[2, 7, 7] = 0.6  # the maximum is what counts
    assert pointing_game(heat, masks).tolist() == [True, False, False]
    rng = np.random.default_rng(0)  # random maps rarely point at a 4 % lesion
    lesion = np.zeros((200, 32, 32), np.uint8)
    lesion[:, 10:16, 10:16] = 1
    assert pointing_game(rng.random((200, 32, 32)), lesion).mean() < 0.15


def test_overlays_of_confident_cases_reach_the_report(explained):
    from medzoo.evaluation.report import write_report
    from medzoo.zoo.explain import confident_cases

    labels = np.array([0, 1, 1, 0])
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.4, 0.6]])
    assert confident_cases(labels, probs, 1) == [("correct", 0), ("incorrect", 2)]

    out, summary = explained
    assert summary["cases"] and all((out / "explain" / c["file"]).is_file()
                                    for c in summary["cases"])
    assert {c["kind"] for c in summary["cases"]} <= {"correct", "incorrect"}
    html = write_report(out).read_text()
    assert "<h2>Explanations</h2>" in html and html.count("case\" src=\"data:image/png") == len(
        summary["cases"])
    assert not any(c["record_id"] in html for c in summary["cases"])  # no record ids in reports
