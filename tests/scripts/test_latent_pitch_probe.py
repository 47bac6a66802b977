"""Tests of scripts/world/latent_pitch_probe.py: pitch targets, the ridge probe, a whole run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts" / "world"))
import latent_pitch_probe as probe

RATE = 16000


def sine(hz: float, seconds: float, start: float = 0.0, length: float | None = None) -> np.ndarray:
    """A 0.3-amplitude sine at ``hz`` from ``start`` for ``length`` s in ``seconds`` of silence."""
    wave = np.zeros(int(seconds * RATE))
    first = int(start * RATE)
    last = len(wave) if length is None else first + int(length * RATE)
    wave[first:last] = 0.3 * np.sin(2 * np.pi * hz * np.arange(last - first) / RATE)
    return wave


def test_dominant_frequency_of_a_tone_and_of_noise() -> None:
    bin_hz = RATE / probe.WINDOW
    for hz in (300.0, 1200.0, 2500.0):
        found = 2 ** probe.dominant_log2_hz(sine(hz, 0.2)[: probe.WINDOW], RATE)
        assert abs(found - hz) <= bin_hz / 2
    noise = np.random.default_rng(0).standard_normal(probe.WINDOW)
    assert probe.dominant_log2_hz(noise, RATE) is None  # flat spectrum: not tonal
    assert probe.dominant_log2_hz(np.zeros(probe.WINDOW), RATE) is None


def test_frame_targets_lie_inside_the_event() -> None:
    hop = 640  # 25 frames/s
    wave = sine(800.0, 3.0, start=1.0, length=1.0)  # the tone sounds from 1 s to 2 s
    targets = probe.frame_targets(wave, RATE, hop, 75, onset=1.0, offset=2.0)
    frames = [frame for frame, _ in targets]
    assert frames and all(1.0 < (f * hop + hop // 2) / RATE < 2.0 for f in frames)
    assert len(frames) >= 20  # most of the 25 frames of the second
    assert all(abs(2**pitch - 800.0) < RATE / probe.WINDOW for _, pitch in targets)


def test_ridge_reads_a_linear_code_and_not_noise() -> None:
    rng = np.random.default_rng(0)
    targets = rng.uniform(7.0, 12.0, 400)  # log2 Hz
    coded = np.c_[targets * 2.0 + 1.0, rng.standard_normal((400, 5))]  # column 0 carries it
    noise = rng.standard_normal((400, 6))
    for features, bound in ((coded, 0.05), (noise, None)):
        model = probe.ridge_fit(features[:300], targets[:300], strength=1e-3)
        scores = probe.semitone_errors(probe.ridge_predict(model, features[300:]), targets[300:])
        if bound is not None:
            assert scores["median"] < bound and scores["within_1"] == 1.0
        else:
            assert scores["median"] > 6.0  # about chance: targets span 60 semitones
    assert probe.semitone_errors(np.array([]), np.array([]))["median"] is None


@pytest.fixture(scope="module")
def world_and_cache(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from ezaudio.config import VAEConfig
    from ezaudio.data.latent_cache import encode_manifest
    from ezaudio.nn.oobleck import WaveformVAE

    folder = tmp_path_factory.mktemp("probe")
    world = folder / "world"
    (world / "audio").mkdir(parents=True)
    metadata, manifest = [], []
    for index, hz in enumerate((300, 450, 600, 900, 1200, 1800, 400, 1500)):
        clip_id = f"clip{index}"
        split = "train" if index < 6 else "test"
        kind = "siren" if index != 2 else "rain"  # one clip of a class that is not tonal
        sf.write(world / "audio" / f"{clip_id}.wav", sine(hz, 2.0, 0.25, 1.5), RATE)
        event = {"class": kind, "onset": 0.25, "offset": 1.75}
        metadata.append({"id": clip_id, "split": split, "audio": f"audio/{clip_id}.wav",
                         "events": [event]})  # fmt: skip
        manifest.append({"id": clip_id, "split": split, "audio": f"audio/{clip_id}.wav",
                         "caption": f"a {kind}"})  # fmt: skip
    (world / "metadata.jsonl").write_text("\n".join(map(json.dumps, metadata)) + "\n")
    (world / "all.jsonl").write_text("\n".join(map(json.dumps, manifest)) + "\n")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        config = VAEConfig(sample_rate=RATE, channels=4, c_mults=(1, 2), strides=(8, 80),
                           latent_dim=4)  # fmt: skip
        WaveformVAE(config).save_pretrained(folder / "vae")
    encode_manifest(world / "all.jsonl", folder / "vae", folder / "latents", progress=False)
    return {"world": world, "vae": folder / "vae", "latents": folder / "latents"}


def test_a_run_scores_probe_chance_and_decoder(world_and_cache, tmp_path, capsys) -> None:
    out = tmp_path / "probe.json"
    argv = [world_and_cache["world"], "--latents", world_and_cache["latents"], "--vae",
            world_and_cache["vae"], "--out", out]  # fmt: skip
    assert probe.main([str(a) for a in argv]) == 0
    assert "semitones" in capsys.readouterr().out
    results = json.loads(out.read_text())
    assert results["latent"] == {"channels": 4, "rate_hz": 25.0}
    assert results["clips"] == {"train": 5, "test": 2}  # the rain clip is left out
    assert results["frames"]["test"] > 0 and results["frames"]["train"] > results["frames"]["test"]
    for key in ("chance", "probe", "decoder"):
        assert results[key]["frames"] == results["frames"]["test"]
        assert results[key]["median"] >= 0.0
    assert results["chance"]["median"] > 1.0  # test tones at 400 and 1500 Hz, far from the mean
    assert set(results["probe_per_class"]) == {"siren"}


def test_a_missing_cache_is_encoded_first_with_the_vae(world_and_cache, tmp_path) -> None:
    cache = tmp_path / "new-cache"
    argv = [world_and_cache["world"], "--latents", cache, "--vae", world_and_cache["vae"],
            "--out", tmp_path / "probe.json"]  # fmt: skip
    assert probe.main([str(a) for a in argv]) == 0
    encoded = json.loads((cache / "index.json").read_text())
    assert len(encoded["clips"]) == 7  # the siren clips; the rain clip is left out
    made = json.loads((tmp_path / "probe.json").read_text())
    argv[2] = world_and_cache["latents"]  # the fixture's cache of the same clips
    argv[-1] = tmp_path / "given.json"
    assert probe.main([str(a) for a in argv]) == 0
    given = json.loads((tmp_path / "given.json").read_text())
    assert made["frames"] == given["frames"] and made["frames"]["test"] > 0
    for key in ("probe", "decoder", "chance"):
        assert made[key]["median"] == pytest.approx(given[key]["median"], rel=1e-4)


def test_too_few_tonal_clips_is_one_line(world_and_cache, tmp_path, capsys) -> None:
    argv = [world_and_cache["world"], "--latents", world_and_cache["latents"], "--classes",
            "rain", "--out", tmp_path / "x.json"]  # fmt: skip
    assert probe.main([str(a) for a in argv]) == 2
    error = capsys.readouterr().err
    assert error.startswith("latent_pitch_probe: error:") and error.count("\n") == 1
    assert not (tmp_path / "x.json").exists()


def test_a_missing_cache_without_a_vae_is_one_line(world_and_cache, tmp_path, capsys) -> None:
    argv = [world_and_cache["world"], "--latents", tmp_path / "none", "--out", tmp_path / "x"]
    assert probe.main([str(a) for a in argv]) == 2
    assert "give --vae to make it" in capsys.readouterr().err
