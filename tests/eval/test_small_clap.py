"""The small CLAP trained on a synthetic world: training, folder, scorer, ClapScorer loading."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ezaudio.errors import InvalidInputError
from ezaudio.eval.clap import ClapScorer
from ezaudio.eval.small_clap import (
    SmallClap,
    SmallClapConfig,
    SmallClapScorer,
    info_nce,
    is_small_clap_folder,
    retrieval,
    separation_auc,
    train_clap,
)
from ezaudio.eval.tagger import TrainSettings
from ezaudio.synth import write_world

TINY = SmallClapConfig(
    widths=(4, 4, 8, 8, 8, 8), audio_dim=8, embed_dim=8, text_hidden=16, crop_seconds=1.5
)
STEPS = 8


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("world") / "w"
    write_world(folder, clips=24, seed=0, seconds=2.0, progress=False)
    return folder


@pytest.fixture(scope="module")
def trained(world: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("clap") / "clap"
    settings = TrainSettings(steps=STEPS, batch_size=6, progress=False, device="cpu", lr=3e-3)
    return train_clap(world, out, settings, config=TINY)


@pytest.fixture(scope="module")
def scorer(trained) -> SmallClapScorer:
    loaded = ClapScorer.from_pretrained(trained.folder, device="cpu", batch_size=2)
    assert isinstance(loaded, SmallClapScorer)
    return loaded


def clips(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in (16000, 24000, 16000)]


def test_folder_round_trip_and_marker(trained) -> None:
    folder = trained.folder
    assert sorted(p.name for p in folder.iterdir()) == [
        "config.json", "model.safetensors", "report.json",
    ]  # fmt: skip
    config = json.loads((folder / "config.json").read_text())
    assert config["_class"] == "SmallClap" and config["text_encoder"] == "minilm"
    assert is_small_clap_folder(folder) and not is_small_clap_folder(folder.parent)
    loaded = SmallClap.from_pretrained(folder)
    assert loaded.config == TINY
    wave = torch.from_numpy(clips()[0])[None]  # [1, N]
    with torch.no_grad():
        assert torch.equal(trained.model.embed_audio(wave), loaded.embed_audio(wave))
    # the MiniLM weights are not in the folder
    assert all(not key.startswith("text_encoder") for key in loaded.state_dict())


def test_scorer_embeddings_and_scores(scorer: SmallClapScorer) -> None:
    assert scorer.sample_rate == 16000 and scorer.dim == 8
    assert scorer.crop_samples == 24000 and scorer.crop_seconds == 1.5
    waves = clips()
    audio = scorer.audio_embeddings(waves, 16000)
    texts = ["a dog barks twice", "rain", "a bell tolls, then a car horn honks"]
    text = scorer.text_embeddings(texts)
    assert audio.shape == (3, 8) and text.shape == (3, 8)
    np.testing.assert_allclose(np.linalg.norm(audio, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1.0, atol=1e-5)
    scores = scorer.score_pairs(waves, 16000, texts)
    np.testing.assert_allclose(scores, (audio * text).sum(axis=1), atol=1e-5)
    # batch-independent; a 3 s clip is cut to its first 1.5 s; another rate is resampled
    np.testing.assert_allclose(scorer.audio_embeddings(waves[1:2], 16000)[0], audio[1], atol=1e-5)
    longer = np.concatenate([waves[1], waves[0]])
    np.testing.assert_allclose(scorer.audio_embeddings([longer], 16000)[0], audio[1], atol=1e-5)
    assert scorer.audio_embeddings([np.repeat(waves[0], 2)], 32000).shape == (1, 8)
    with pytest.raises(InvalidInputError):
        scorer.score_pairs(waves, 16000, texts[:2])


def test_scorer_describe_and_fingerprint(scorer: SmallClapScorer, trained) -> None:
    info = scorer.describe()
    assert info["kind"] == "small-clap" and info["name"] == str(trained.folder)
    assert info["fingerprint"] == scorer.fingerprint() and len(scorer.fingerprint()) == 64
    assert scorer.batch_size == 2 and scorer.device.type == "cpu"


def test_report_fields_are_in_range(trained) -> None:
    report = json.loads((trained.folder / "report.json").read_text())
    assert report["kind"] == "small-clap" and report["steps"] == STEPS
    for key in ("test", "test_paraphrase"):
        for name, value in report[key].items():
            if "R@" in name:
                assert 0.0 <= value <= 1.0
        assert -1.0 <= report[key]["mean_score_matching"] <= 1.0
    noise = report["train_noisy"]["scores"]
    assert set(noise) <= {"none", "wrong", "incomplete"} and noise["none"]["count"] > 0
    quantiles = list(noise["none"]["quantiles"].values())
    assert quantiles == sorted(quantiles)
    assert "test_caption_noise" in report
    assert len(trained.losses) == STEPS and all(np.isfinite(trained.losses))


def test_training_lowers_the_loss(trained) -> None:
    assert np.mean(trained.losses[-3:]) < np.mean(trained.losses[:3])


def test_retrieval_and_auc_helpers() -> None:
    similarity = np.array([[0.9, 0.1, 0.2], [0.3, 0.2, 0.8], [0.0, 0.1, 0.7]])
    result = retrieval(similarity)
    assert result["text_to_audio_R@1"] == pytest.approx(2 / 3)  # text 1 ranks its clip 2nd
    assert result["audio_to_text_R@1"] == pytest.approx(2 / 3)  # clip 2 prefers text 1
    assert result["text_to_audio_R@5"] == 1.0
    assert result["mean_score_matching"] == pytest.approx((0.9 + 0.2 + 0.7) / 3)
    assert separation_auc(np.array([0.9, 0.8]), np.array([0.1, 0.85])) == pytest.approx(0.75)
    assert separation_auc(np.array([]), np.array([0.1])) is None
    a = torch.nn.functional.normalize(torch.eye(3), dim=-1)
    assert float(info_nce(a, a, torch.tensor(50.0))) < float(
        info_nce(a, a.flip(0), torch.tensor(50.0))
    )


def test_cli_widths_choose_the_audio_tower(world: Path, tmp_path: Path, capsys) -> None:
    from ezaudio.cli import main

    out = tmp_path / "narrow"
    args = ["eval-train", "clap", str(world), "--out", str(out), "--steps", "1",
            "--batch-size", "2", "--max-clips", "4", "--device", "cpu", "--quiet"]  # fmt: skip
    assert main([*args, "--widths", "4,4,8,8,8,16"]) == 0
    config = SmallClap.from_pretrained(out).config
    assert config.widths == (4, 4, 8, 8, 8, 16) and config.sample_rate == 16000
    assert json.loads((out / "report.json").read_text())["config"]["widths"] == [4, 4, 8, 8, 8, 16]
    capsys.readouterr()
    assert main([*args[:4], str(tmp_path / "bad"), *args[5:], "--widths", "4,4,8"]) != 0
    err = capsys.readouterr().err
    assert "--widths must be six positive integers" in err and "Traceback" not in err
    assert not (tmp_path / "bad").exists()
