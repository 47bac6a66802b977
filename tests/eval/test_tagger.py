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
    label_matrix,
    labels_of,
    load_split,
    random_windows,
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


def test_label_matrix_of_windows() -> None:
    records = [
        {"id": "a", "events": [{"class": "bell", "onset": 0.5, "offset": 2.0},
                               {"class": "drum", "onset": 5.0, "offset": 7.0}]},
        {"id": "b", "events": [{"class": "rain", "onset": 0.0, "offset": 9.0}]},
    ]  # fmt: skip
    names = ["bell", "drum", "rain"]
    np.testing.assert_array_equal(label_matrix(records, names), [[1, 1, 0], [0, 0, 1]])
    windows = [(2.5, 4.5), (9.5, 10.0)]  # nothing heard in either
    np.testing.assert_array_equal(label_matrix(records, names, windows), [[0, 0, 0], [0, 0, 0]])
    windows = [(6.0, 8.0), (1.0, 2.0)]
    np.testing.assert_array_equal(label_matrix(records, names, windows), [[0, 1, 0], [0, 0, 1]])
    with pytest.raises(InvalidInputError, match="1 windows for 2 records"):
        label_matrix(records, names, [(0.0, 1.0)])


def test_random_windows_are_slices_of_the_clips() -> None:
    wave = torch.arange(3 * 100, dtype=torch.float32).reshape(3, 100)  # [B, S]
    generator = torch.Generator().manual_seed(0)
    windows, start = random_windows(wave, 30, generator)
    assert windows.shape == (3, 30) and start.shape == (3,)
    assert ((start >= 0) & (start <= 70)).all()
    for row in range(3):
        s = int(start[row])
        assert torch.equal(windows[row], wave[row, s : s + 30])
    again, start_again = random_windows(wave, 30, torch.Generator().manual_seed(0))
    assert torch.equal(start, start_again) and torch.equal(windows, again)
    whole, start_whole = random_windows(wave, 100, generator)
    assert torch.equal(whole, wave) and not start_whole.any()
    with pytest.raises(InvalidInputError, match="does not fit"):
        random_windows(wave, 101, generator)


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


def test_training_on_windows_labels_each_window(world: Path, monkeypatch) -> None:
    """``crop_seconds``: each step sees windows of that length, labelled with the events
    heard in them; seeded like whole-clip training; the report records the length."""
    import ezaudio.eval.tagger as tagger_module

    seen: list[tuple[int, torch.Tensor]] = []  # (window samples, targets [B, C])
    original = tagger_module.F.binary_cross_entropy_with_logits

    def spy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        seen.append((logits.shape[0], target.clone()))
        return original(logits, target)

    monkeypatch.setattr(tagger_module.F, "binary_cross_entropy_with_logits", spy)
    windows: list[torch.Tensor] = []
    real_windows = tagger_module.random_windows

    def record_windows(wave, length, generator):
        out = real_windows(wave, length, generator)
        windows.append(out[0])
        return out

    monkeypatch.setattr(tagger_module, "random_windows", record_windows)
    settings = TrainSettings(steps=3, batch_size=4, progress=False, device="cpu")
    config = tagger_config(classes(), **TINY)
    result = train_tagger(world, None, settings, config=config, crop_seconds=0.5)
    assert result.report["crop_seconds"] == 0.5
    assert [w.shape for w in windows] == [(4, 8000)] * 3  # 0.5 s at 16 kHz
    assert len(seen) == 3 and all(t.shape == (4, 19) for _, t in seen)
    # Windows of 0.5 s in 2 s clips miss some events: fewer labels than whole clips have.
    whole = label_matrix(load_split(world, "train", progress=False).records, classes())
    whole = whole.sum(axis=1).mean()
    assert float(torch.cat([t for _, t in seen]).sum(dim=1).mean()) < whole
    again = train_tagger(world, None, settings, config=config, crop_seconds=0.5)
    assert again.losses == result.losses


@pytest.mark.parametrize("crop", [0.0, -1.0, 2.5])
def test_bad_window_lengths_are_refused(world: Path, tmp_path: Path, crop: float) -> None:
    settings = TrainSettings(steps=1, batch_size=2, progress=False, device="cpu")
    with pytest.raises(InvalidInputError, match="crop_seconds must be in"):
        train_tagger(world, tmp_path / "t", settings, tagger_config(classes(), **TINY), crop)
    assert not (tmp_path / "t").exists()


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


def test_cli_crop_seconds(world: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "cropped"
    args = ["eval-train", "tagger", str(world), "--out", str(out), "--steps", "1",
            "--batch-size", "2", "--max-clips", "4", "--device", "cpu", "--quiet",
            "--widths", "4,4,8,8,8,8"]  # fmt: skip
    assert main([*args, "--crop-seconds", "1"]) == 0
    assert json.loads((out / "report.json").read_text())["crop_seconds"] == 1.0
    capsys.readouterr()
    assert main([*args[:4], str(tmp_path / "bad"), *args[5:], "--crop-seconds", "3"]) != 0
    err = capsys.readouterr().err
    assert "--crop-seconds must be in (0, 2]" in err and "Traceback" not in err
    assert not (tmp_path / "bad").exists()


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
