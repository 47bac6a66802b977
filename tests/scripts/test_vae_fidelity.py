"""scripts/world/vae_fidelity.py: scores by hand, and a run on a tiny world with tiny random
VAEs and a tiny random tagger."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "world" / "vae_fidelity.py"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("world_vae_fidelity", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


fidelity = load_script()


def test_fidelity_scores_by_hand() -> None:
    truth = [{"bell"}, {"rain"}, {"siren"}, {"dog_bark"}]
    real = [{"bell"}, {"rain"}, {"siren"}, set()]
    rebuilt = [{"bell"}, {"wind"}, set(), set()]
    scores = fidelity.fidelity_scores(real, rebuilt, truth)
    assert scores["ceiling"]["recall_micro"] == pytest.approx(3 / 4)
    assert scores["reconstructed"]["recall_micro"] == pytest.approx(1 / 4)
    assert scores["ratio"]["recall_micro"] == pytest.approx(1 / 3)
    assert scores["same_tags_share"] == pytest.approx(2 / 4)  # clips 1 and 4
    same = fidelity.fidelity_scores(real, real, truth)
    assert same["ratio"]["recall_micro"] == 1.0 and same["same_tags_share"] == 1.0


@pytest.fixture(scope="module")
def inputs(tiny_world_and_vaes, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The shared tiny world and VAEs, and a tiny random tagger of the world's classes."""
    from ezaudio.eval.panns import Cnn14, Cnn14Config
    from ezaudio.synth import classes

    folder = tmp_path_factory.mktemp("fidelity")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        names = tuple(classes())
        tagger = Cnn14(Cnn14Config(widths=(4, 4, 8, 8, 16, 16), embedding_dim=16,
                                   classes_num=len(names), class_names=names))  # fmt: skip
        torch.nn.init.normal_(tagger.fc_audioset.bias, 0.0, 1.0)
        tagger.save_pretrained(folder / "tagger")
    return {**tiny_world_and_vaes, "tagger": folder / "tagger"}


def test_a_run_reports_each_vae_against_the_real_clips(inputs, tmp_path, capsys) -> None:
    out = tmp_path / "fidelity.json"
    argv = ["--tagger", inputs["tagger"], "--vae", inputs["vae16000"], "--out", out,
            "--clips", "3", inputs["world"]]  # fmt: skip
    assert fidelity.main([str(a) for a in argv]) == 0
    assert "one-event recall" in capsys.readouterr().out
    results = json.loads(out.read_text())
    (row,) = results["vaes"]
    assert row["clips"] == 3 and row["latent"] == {"channels": 4, "rate_hz": 800.0}
    assert row["log_mel_difference_db"] > 0.0  # a random VAE changes the sound
    for subset in row["subsets"].values():
        assert subset["ceiling"]["clips"] == subset["reconstructed"]["clips"]
        assert 0.0 <= subset["same_tags_share"] <= 1.0
    assert row["subsets"]["all"]["ceiling"]["clips"] == 3
    single = row["subsets"]["single"]["ceiling"]["clips"]
    per_class = row["per_class_single"]
    assert single >= 1 and per_class  # the first 3 test clips of this world include one
    assert sum(entry["events"] for entry in per_class.values()) == single
    for entry in per_class.values():
        assert 0.0 <= entry["reconstructed_recall"] <= 1.0 and 0.0 <= entry["real_recall"] <= 1.0


def test_one_event_only_drops_the_scenes(inputs) -> None:
    world = fidelity.load_world(inputs["world"])
    scene = dict(world.clips[0].record, events=world.clips[0].record["events"] * 2)
    mixed = [world.clips[0], fidelity.dataclasses.replace(world.clips[1], record=scene)]
    kept = fidelity.one_event_only(fidelity.dataclasses.replace(world, clips=mixed))
    assert [c.clip.id for c in kept.clips] == [world.clips[0].clip.id]
    only_scenes = fidelity.dataclasses.replace(world, clips=mixed[1:])
    with pytest.raises(fidelity.InvalidInputError, match="no one-event clips"):
        fidelity.one_event_only(only_scenes)


def test_a_one_event_run_counts_only_those_clips(inputs, tmp_path) -> None:
    world = fidelity.load_world(inputs["world"])
    single = [c for c in world.clips if len(c.record["events"]) == 1]
    out = tmp_path / "fidelity.json"
    argv = ["--tagger", inputs["tagger"], "--vae", inputs["vae16000"], "--out", out,
            "--one-event", inputs["world"]]  # fmt: skip
    assert fidelity.main([str(a) for a in argv]) == 0
    (row,) = json.loads(out.read_text())["vaes"]
    assert row["clips"] == len(single) == row["subsets"]["all"]["ceiling"]["clips"]


def test_reconstruction_keeps_the_length(inputs) -> None:
    from ezaudio.nn.oobleck import WaveformVAE

    vae = WaveformVAE.from_pretrained(inputs["vae16000"]).eval()
    wave = np.random.default_rng(0).standard_normal(1234).astype(np.float32) * 0.1
    assert fidelity.reconstruct(vae, wave).shape == (1234,)
    # peak-normalised for the encoder, then back at the clip's level: linear in the level
    np.testing.assert_allclose(
        fidelity.reconstruct(vae, 3.0 * wave),
        3.0 * fidelity.reconstruct(vae, wave),
        rtol=1e-4,
        atol=1e-6,
    )
    own = fidelity.reconstruct(vae, wave, peak_normalise=False)
    assert own.shape == (1234,) and not np.allclose(own, fidelity.reconstruct(vae, wave))
    assert np.isfinite(fidelity.reconstruct(vae, np.zeros(640, np.float32))).all()  # silence


def test_a_vae_at_another_rate_is_refused_in_one_line(inputs, tmp_path, capsys) -> None:
    out = tmp_path / "never.json"
    argv = ["--tagger", inputs["tagger"], "--vae", inputs["vae8000"], "--out", out,
            inputs["world"]]  # fmt: skip
    assert fidelity.main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "8000 Hz" in err[0]
    assert not out.exists()
    assert fidelity.main(["--tagger", "t", "--vae", "v", "--out", str(out), "--clips", "0",
                          "w"]) == 2  # fmt: skip
