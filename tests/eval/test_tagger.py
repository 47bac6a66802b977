"""The small tagger trained on a synthetic world: config, labels, training, folder, CLI."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ezaudio.cli import main
from ezaudio.errors import InvalidInputError
from ezaudio.eval.features import load_panns
from ezaudio.eval.panns import CONV_CHANNELS, Cnn14, Cnn14Config
from ezaudio.eval.tagger import (
    TrainSettings,
    average_precision,
    labels_of,
    tag_probabilities,
    tagger_config,
    train_tagger,
)
from ezaudio.nn.component import config_from_dict, config_to_dict
from ezaudio.synth import classes, write_world

TINY = {"widths": (4, 4, 8, 8, 8, 8), "embedding_dim": 8}
STEPS = 4


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("world") / "w"
    write_world(folder, clips=24, seed=0, seconds=2.0, progress=False)
    return folder


@pytest.fixture(scope="module")
def trained(world: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("tagger") / "tagger"
    settings = TrainSettings(steps=STEPS, batch_size=4, progress=False, device="cpu")
    return train_tagger(world, out, settings, config=tagger_config(classes(), **TINY))


# -- config ---------------------------------------------------------------------------------


def test_official_default_config_is_unchanged() -> None:
    config = Cnn14Config()
    assert config.widths == CONV_CHANNELS == (64, 128, 256, 512, 1024, 2048)
    assert config.class_names == () and config.classes_num == 527
    model = Cnn14(config)
    assert model.num_parameters() == 81_033_231  # the official parameter count
    assert model.fc1.in_features == 2048


def test_config_round_trips_tuples_through_json() -> None:
    config = tagger_config(classes(), **TINY)
    data = json.loads(json.dumps(config_to_dict(config)))
    assert isinstance(data["widths"], list)
    again = config_from_dict(Cnn14Config, data)
    assert again == config and isinstance(again.widths, tuple)
    assert again.class_names == tuple(classes())


def test_config_rejects_bad_widths_and_names() -> None:
    with pytest.raises(InvalidInputError, match="widths"):
        Cnn14Config(widths=(8, 8, 8))
    with pytest.raises(InvalidInputError, match="widths"):
        Cnn14Config(widths=(8, 8, 8, 8, 8, 0))
    with pytest.raises(InvalidInputError, match="class_names"):
        Cnn14Config(classes_num=3, class_names=("a", "b"))
    with pytest.raises(InvalidInputError, match="distinct"):
        Cnn14Config(classes_num=2, class_names=("a", "a"))


# -- labels and metrics ----------------------------------------------------------------------


def test_labels_of_with_and_without_window() -> None:
    record = {
        "events": [
            {"class": "bell", "onset": 0.5, "offset": 2.0},
            {"class": "rain", "onset": 0.0, "offset": 9.0},
            {"class": "drum", "onset": 5.0, "offset": 7.0},
        ]
    }
    assert labels_of(record) == {"bell", "rain", "drum"}
    assert labels_of(record, window=(2.5, 4.5)) == {"rain"}
    assert labels_of(record, window=(1.0, 5.5)) == {"bell", "rain", "drum"}
    with pytest.raises(InvalidInputError):
        labels_of(record, window=(3.0, 3.0))
    with pytest.raises(InvalidInputError):
        labels_of({"id": "x"})


def test_average_precision() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.1])
    assert average_precision(scores, np.array([1, 0, 1, 0])) == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision(scores, np.array([1, 1, 0, 0])) == pytest.approx(1.0)
    assert average_precision(scores, np.zeros(4)) is None


# -- training -------------------------------------------------------------------------------


def test_training_writes_a_loadable_folder(trained, world: Path) -> None:
    folder = trained.folder
    assert sorted(p.name for p in folder.iterdir()) == [
        "config.json", "model.safetensors", "report.json",
    ]  # fmt: skip
    assert not list(folder.parent.glob(".tagger.*"))  # no temporary folder left
    loaded = Cnn14.from_pretrained(folder)
    assert loaded.config.class_names == tuple(classes())
    wave = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 32000))).float() * 0.1
    with torch.no_grad():
        a, b = trained.model.eval()(wave), loaded(wave)
    assert torch.equal(a.logits, b.logits) and torch.equal(a.embedding, b.embedding)
    extractor = load_panns(folder)
    embedding, logits = extractor(wave)
    assert embedding.shape == (2, TINY["embedding_dim"]) and logits.shape == (2, 19)


def test_report_fields_are_in_range(trained) -> None:
    report = json.loads((trained.folder / "report.json").read_text())
    assert report["steps"] == STEPS and report["batch_size"] == 4
    assert report["machine"]["device"] == "cpu" and report["seconds_train"] > 0
    test = report["test"]
    assert test["clips"] >= 1
    for key in ("exact_match", "mAP", "top1_single_event"):
        assert test[key] is None or 0.0 <= test[key] <= 1.0
    assert set(test["per_class"]) == set(classes())
    assert len(trained.losses) == STEPS and all(np.isfinite(trained.losses))


def test_training_lowers_the_loss_and_is_deterministic(world: Path) -> None:
    settings = TrainSettings(steps=10, batch_size=4, progress=False, device="cpu", lr=3e-3)
    config = tagger_config(classes(), **TINY)
    first = train_tagger(world, None, settings, config=config)
    assert np.mean(first.losses[-3:]) < np.mean(first.losses[:3])
    # Same seed, fewer steps: the first two steps see the same batches, noise and rate.
    again = train_tagger(world, None, dataclasses.replace(settings, steps=3), config)
    assert again.losses[:2] == first.losses[:2]


def test_tag_probabilities_resamples_and_batches(trained) -> None:
    rng = np.random.default_rng(1)
    clips = [0.1 * rng.standard_normal(n).astype(np.float32) for n in (16000, 32000, 16000)]
    probs = tag_probabilities(trained.model, clips, 16000, batch_size=2)
    assert probs.shape == (3, 19) and ((probs >= 0) & (probs <= 1)).all()
    alone = tag_probabilities(trained.model, clips[1:2], 16000)
    np.testing.assert_allclose(alone[0], probs[1], atol=1e-5)
    doubled = tag_probabilities(trained.model, [np.repeat(clips[0], 2)], 32000)
    assert doubled.shape == (1, 19)
    short = tag_probabilities(trained.model, [clips[0][:100]], 16000)  # padded, not refused
    assert short.shape == (1, 19)


def test_bad_input_is_refused_before_training(world: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="world folder not found"):
        train_tagger(tmp_path / "missing")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(InvalidInputError, match="not empty"):
        train_tagger(world, tmp_path / "full")
    with pytest.raises(InvalidInputError, match="steps"):
        TrainSettings(steps=0)


# -- CLI ------------------------------------------------------------------------------------


def test_cli_trains_and_reports(world: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "cli-tagger"
    args = ["eval-train", "tagger", str(world), "--out", str(out), "--steps", "1",
            "--batch-size", "2", "--max-clips", "4", "--device", "cpu", "--quiet"]  # fmt: skip
    assert main(args) == 0
    assert "exact label set" in capsys.readouterr().out
    assert (out / "report.json").is_file() and (out / "model.safetensors").is_file()
    assert main(args) != 0  # the folder now exists: refused, nothing overwritten
    assert "already exists" in capsys.readouterr().err
    assert main(["eval-train", "tagger", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert not (tmp_path / "o").exists()


def test_cli_widths_choose_the_conv_blocks(world: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "narrow"
    args = ["eval-train", "tagger", str(world), "--out", str(out), "--steps", "1",
            "--batch-size", "2", "--max-clips", "4", "--device", "cpu", "--quiet"]  # fmt: skip
    assert main([*args, "--widths", "4,4,8,8,8,16"]) == 0
    assert Cnn14.from_pretrained(out).config.widths == (4, 4, 8, 8, 8, 16)
    assert json.loads((out / "report.json").read_text())["config"]["widths"] == [4, 4, 8, 8, 8, 16]
    for bad in ("4,4,8", "4,4,8,8,8,x", "4,4,8,8,8,0"):
        capsys.readouterr()
        assert main([*args[:4], str(tmp_path / "bad"), *args[5:], "--widths", bad]) != 0
        err = capsys.readouterr().err
        assert "--widths must be six positive integers" in err and "Traceback" not in err
        assert not (tmp_path / "bad").exists()
