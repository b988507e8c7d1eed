"""A configurable zoo: `medzoo models NAME`, `train --option`, presets, options in config and card."""

import inspect
import json

import numpy as np
import pytest

from medzoo import cli
from medzoo.errors import InputError
from medzoo.zoo import options, registry

SIZE = 32


def _defaults(builder) -> dict:
    return {p.name: p.default for p in inspect.signature(builder).parameters.values()
            if p.default is not inspect.Parameter.empty}


@pytest.mark.parametrize("name", registry.names())
def test_listed_options_are_the_builders_real_defaults(name):
    entry = registry.get(name)
    real = _defaults(entry.options_from or entry.builder)
    listed = options.options_of(name)
    assert listed, f"{name} lists no options"
    for option in listed:
        expected = real[option.name]
        assert option.default == (list(expected) if isinstance(expected, tuple) else expected)
    assert not {o.name for o in listed} & ({"multi_label", "name"} | set(entry.fixed))


def test_models_name_prints_options_defaults_types_and_presets(capsys):
    assert cli.main(["models", "unet"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("  ")}
    assert rows["depth"][:4] == ["depth", "int", "default", "3"]
    assert rows["base_width"][:4] == ["base_width", "int", "default", "8"]
    assert rows["norm"][:6] == ["norm", "str", "|", "None", "default", "batch"]
    assert "Down-sampling levels" in out  # the numpy-style description of the option
    assert rows["large"] == ["large", "base_width=16,", "depth=4"]
    assert cli.main(["models", "cnn", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    widths = next(o for o in info["options"] if o["name"] == "widths")
    assert widths == {"name": "widths", "type": "tuple of int", "default": [16, 32, 64],
                      "doc": widths["doc"]} and widths["doc"]
    assert info["presets"]["small"] == {"widths": [8, 16, 32], "dense": 32}


@pytest.mark.parametrize("given, expected", [
    ({"widths": "8,16", "dense": "16", "norm": "none", "dropout": "0"},
     {"widths": [8, 16], "dense": 16, "norm": None, "dropout": 0.0}),
    ({"preset": "small", "dense": 48}, {"widths": [8, 16, 32], "dense": 48}),
    ({"widths": (4,), "pool": "avg"}, {"widths": [4], "pool": "avg"}),
    ({"widths": "4"}, {"widths": [4]}),
])
def test_values_are_parsed_by_the_options_type(given, expected):
    assert options.resolve("cnn", given) == expected


@pytest.mark.parametrize("model, given, message", [
    ("cnn", {"widht": "4"}, "Option `widht` must be one of: widths, dense, norm, dropout, pool, "
                            "preset (model 'cnn'). Received: widht=4"),
    ("cnn", {"widths": "a,b"}, "Option `widths` of model 'cnn' must be comma-separated ints, "
                               "e.g. widths=16,32,64. Received: widths=a,b"),
    ("unet", {"depth": "2.5"}, "Option `depth` of model 'unet' must be an integer. "
                               "Received: depth=2.5"),
    ("unet", {"preset": "huge"}, "Option `preset` of model 'unet' must be one of: small, base, "
                                 "large. Received: preset=huge"),
    ("resnet", {"preset": "small"}, "Option `preset` must be one of: widths, units_per_stage, "
                                    "norm, dropout, pool (model 'resnet'). Received: preset=small"),
    ("mobilenet_v3", {"freeze_backbone": "maybe"}, "must be true or false"),
    ("cnn", {"multi_label": "true"}, "Option `multi_label` must be one of"),
])
def test_wrong_options_are_refused_naming_what_is_valid(model, given, message):
    with pytest.raises(InputError) as info:
        options.resolve(model, given)
    assert message in str(info.value)


def test_train_option_typo_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys):
    code = cli.main(["train", "cnn", "--data", str(tmp_path / "ds"), "--out", str(tmp_path / "run"),
                     "--option", "widths=8,16", "--option", "dropuot=0.1"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert err == ("medzoo train: error: Option `dropuot` must be one of: widths, dense, norm, "
                   "dropout, pool, preset (model 'cnn'). Received: dropuot=0.1\n")
    assert not (tmp_path / "run").exists()
    assert cli.main(["train", "cnn", "--data", "ds", "--out", "run", "--option", "widths"]) == 2
    assert "must be KEY=VALUE" in capsys.readouterr().err
    assert cli.main(["train", "gan", "--data", "ds", "--out", "run"]) == 2
    assert "medzoo gan train" in capsys.readouterr().err


def test_cv_options_are_checked_per_model_before_any_fold(tmp_path, capsys):
    args = ["cv", "cnn", "unet", "--data", str(tmp_path / "ds"), "--out", str(tmp_path / "cv")]
    assert cli.main(args + ["--option", "unet.widths=8,16"]) == 2
    assert "Option `widths` must be one of: depth, base_width, norm, dropout, label_classes, preset " \
           "(model 'unet')" in capsys.readouterr().err
    assert cli.main(args + ["--option", "vit.depth=2"]) == 2
    assert "`vit` must be one of the models given: cnn, unet" in capsys.readouterr().err
    assert not (tmp_path / "cv").exists()


def test_options_round_trip_through_config_and_rebuild(phantom_ds, tmp_path):
    from medzoo.zoo import saving

    run = tmp_path / "run"
    assert cli.main(["train", "cnn", "--data", str(phantom_ds), "--out", str(run), "--epochs", "1",
                     "--batch-size", "8", "--option", "preset=small", "--option", "dense=8",
                     "--option", "norm=batch", "--option", "dropout=0"]) == 0
    chosen = {"widths": [8, 16, 32], "dense": 8, "norm": "batch", "dropout": 0.0}
    config = json.loads((run / "config.json").read_text())
    assert config["model_options"] == chosen
    trained = saving.load_model(run / "model.keras")
    rebuilt = registry.build(config["model"], config["input_shape"], len(config["classes"]),
                             **config["model_options"])
    assert [w.shape for w in rebuilt.weights] == [w.shape for w in trained.weights]
    assert rebuilt.count_params() == trained.count_params() != registry.build(
        "cnn", config["input_shape"], 2).count_params()
    assert any(layer.__class__.__name__ == "BatchNormalization" for layer in trained.layers)
    images = np.random.default_rng(0).random((2, *config["input_shape"]), dtype=np.float32)
    rebuilt.set_weights(trained.get_weights())
    np.testing.assert_allclose(np.asarray(rebuilt(images)), np.asarray(trained(images)), atol=1e-6)


def test_options_reach_the_model_card(unet_run, unet_export):
    """The session's U-Net is trained with ``base_width=8`` (tests/conftest.py)."""
    config = json.loads((unet_run / "config.json").read_text())
    card = json.loads((unet_export / "model_card.json").read_text())
    assert config["model_options"] == card["model"]["options"] == {"base_width": 8}
