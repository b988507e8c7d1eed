"""Explanations: Grad-CAM points at the lesion (the pointing game), overlays reach the report."""

import json

import numpy as np
import pytest


@pytest.fixture(scope="module")
def explained(well_trained_cnn):
    """``medzoo explain`` over every record, into an eval dir's explain/ folder."""
    from medzoo.evaluation.explain import explain_dataset

    trained = well_trained_cnn
    out = trained / "eval"
    out.mkdir()
    (out / "metrics.json").write_text(json.dumps({"task": "classification", "split": "all",
                                                  "n": 48, "metrics": {"accuracy": 1.0}}))
    return out, explain_dataset(trained / "run", trained / "ds", out / "explain", split="all",
                                limit=2)


def test_pointing_game_hits_the_lesion(explained, well_trained_cnn, capsys):
    from medzoo.zoo import saving

    _, summary = explained
    games = summary["pointing_game"]
    with capsys.disabled():
        print("\npointing game, 32-px phantoms: " + ", ".join(
            f"{k} {g['hit_rate']:.2f} (n={g['n']})" for k, g in games.items()))
    assert games["grad_cam"]["n"] >= 20  # most of the 24 positive images, correctly called
    assert games["grad_cam"]["hit_rate"] >= 0.8  # the criterion, for Grad-CAM itself
    assert games["guided_grad_cam"]["hit_rate"] >= 0.8
    assert games["occlusion"]["hit_rate"] >= 0.8  # the model-agnostic check agrees
    assert summary["class"] == "lesion"
    model = saving.load_model(well_trained_cnn / "run" / "model.keras")
    # Grad-CAM at the first pooling (16 x 16 cells of 2 px), guided at the last convolution (8 x 8)
    assert tuple(model.get_layer(summary["layer"]).output.shape[1:3]) == (16, 16)
    assert summary["guided_layer"] == "stage2_relu0"


def test_grad_cam_weighs_each_cell_by_its_own_gradient():
    """Behind global max pooling the score reads one cell per channel: Grad-CAM (HiResCAM
    weighting) shows exactly those cells' shares of the score, where the map-averaged weights of
    classic Grad-CAM point at a broad structure of which the score reads two corners."""
    import keras

    from medzoo.evaluation.explain import grad_cam

    size = 8
    inputs = keras.Input((size, size, 3), name="image")
    features = keras.layers.ReLU(name="relu")(
        keras.layers.Conv2D(3, 1, use_bias=False, name="conv")(inputs))
    pooled = keras.layers.GlobalMaxPooling2D()(features)
    outputs = keras.layers.Dense(2, activation="softmax", name="probabilities")(pooled)
    model = keras.Model(inputs, outputs)
    model.get_layer("conv").set_weights([np.eye(3, dtype=np.float32)[None, None]])
    # score = z_1 - z_0 = max(spot) + 2 max(broad_a) + 2 max(broad_b)
    model.get_layer("probabilities").set_weights(
        [np.array([[0, 1], [0, 2], [0, 2]], np.float32), np.zeros(2, np.float32)])
    image = np.zeros((1, size, size, 3), np.float32)
    image[0, 1, 1, 0] = 1.0  # a small, bright finding: channel 0's maximum
    image[0, 4:, 4:, 1:] = 0.3  # a broad structure in channels 1 and 2 ...
    image[0, 4, 7, 1] = image[0, 7, 4, 2] = 0.4  # ... each channel's maximum at one corner

    heat = grad_cam(model, image, 1)[0]  # the 8 x 8 map is the image size: no resizing
    expected = np.zeros((size, size))
    expected[1, 1], expected[4, 7], expected[7, 4] = 1.0, 0.8, 0.8  # shares 1, 2·0.4, 2·0.4
    # Zero on the rest of the structure. Classic weights (1, 2, 2) / 64 give it (2·0.3 + 2·0.3) / 64
    # per cell and a corner 1.4 / 64, more than the finding's 1 / 64: their maximum is off it.
    np.testing.assert_allclose(heat, expected, atol=1e-6)


def test_pointing_game_counts_hits_and_misses():
    from medzoo.evaluation.explain import pointing_game

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
    from medzoo.evaluation.explain import confident_cases

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


@pytest.mark.parametrize("name", ["resnet", "cnn", "mobilenet_v3"])
def test_grad_cam_layer_is_the_map_the_head_pools_or_a_pooling_every_path_crosses(name):
    """Grad-CAM must explain features the score is computed from. In the ResNet the last
    convolution is a residual branch: the explained map is the Add + ReLU after it, the very
    tensor the global pooling reads (taking the branch's normalisation scored 0/8 on the
    pointing game at easy, docs/remeasure.md)."""
    from medzoo.evaluation.explain import explained_layer
    from medzoo.zoo import registry

    model = registry.build(name, input_shape=(32, 32, 1), num_classes=2)
    chosen = model.get_layer(explained_layer(model))
    kind = type(chosen).__name__
    if kind in ("MaxPooling2D", "AveragePooling2D"):  # the seed CNN: its first pooling
        return
    readers = [layer for layer in model.layers
               if any(node.input_tensors and any(t is chosen.output for t in node.input_tensors)
                      for node in getattr(layer, "_inbound_nodes", []))]
    assert [type(r).__name__ for r in readers] in (["GlobalMaxPooling2D"],
                                                   ["GlobalAveragePooling2D"]), (name, kind)


def test_overlays_do_not_pile_up_open_figures(tmp_path):
    import matplotlib.pyplot as plt

    from medzoo.evaluation.explain import overlay_png

    before = len(plt.get_fignums())
    for i in range(25):
        overlay_png(np.zeros((16, 16)), {"grad-cam": np.ones((16, 16))}, tmp_path / f"o{i}.png",
                    mask=np.eye(16, dtype=bool))
    assert len(plt.get_fignums()) == before
    assert (tmp_path / "o24.png").stat().st_size > 0 and (tmp_path / "o24.svg").is_file()
