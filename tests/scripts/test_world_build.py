"""scripts/world/build.py: the default model's build, end to end at smoke scale (slow)."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

SCRIPTS = Path(__file__).parents[2] / "scripts" / "world"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"world_{name}", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_planned_and_last_steps(tmp_path: Path) -> None:
    build = load("build")
    assert build.planned_steps(["optim.max_steps=5", "x=1", "optim.max_steps=7"]) == 7
    assert build.planned_steps(["x=1"]) is None
    assert build.last_step(tmp_path) is None
    for step in (2, 10, 4):
        (tmp_path / f"step-{step:08d}").mkdir()
    assert build.last_step(tmp_path) == 10


@pytest.mark.slow
def test_the_smoke_build_trains_every_step_and_packs_a_float16_model(tmp_path: Path) -> None:
    build = load("build")
    work = tmp_path / "work"
    scale = build.SCALES["smoke"]
    record = build.build(work, scale, "cpu", {"stage3": 5.0}, ablations=True)
    steps = record["steps"]
    for name in ("world", "vae", "decoder", "tagger", "clap", "stage1", "stage2", "stage3",
                 "package", "table1-no-stage1", "table1-unfiltered", "fig2-pixart-s"):  # fmt: skip
        assert steps[name]["done"], name
    assert steps["stage3"]["overrides"][-1] == "run.max_minutes=5.0"
    assert steps["table1-no-stage1"]["steps"] == sum(scale.stage_steps[:2])
    index = json.loads((work / "default_model" / "ezaudio.json").read_text())
    assert index["sampling"]["steps"] == 25 and index["name"] == "ezaudio-s-world"
    assert index["posterior_noise"] == 0.0  # the default: stages trained on the means
    assert sorted(record["thresholds"]) == ["q15", "q30", "q50"]
    # The package holds the fine-tuned decoder beside the VAE's own encoder.
    packed = load_file(work / "default_model" / "vae" / "model.safetensors")
    tuned = load_file(work / "decoder" / "model" / "model.safetensors")
    trained = load_file(work / "vae" / "model" / "model.safetensors")
    for key, value in packed.items():
        assert value.dtype == torch.float16
        assert torch.equal(value, tuned[key].half())
        if key.startswith("encoder."):
            assert torch.equal(value, trained[key].half())
    assert any(not torch.equal(tuned[k], trained[k]) for k in tuned if k.startswith("decoder."))
    # The VAE learnt from the world's training clips and the tone clips, the decoder from
    # the same with the event cuts of the weak classes in front.
    assert f"data.manifest={work / 'tones' / 'train.jsonl'}" in steps["vae"]["overrides"]
    cuts_manifest = work / "event_cuts" / "train.jsonl"
    assert f"data.manifest={cuts_manifest}" in steps["decoder"]["overrides"]
    assert "optim.lr=0.0006" in steps["decoder"]["overrides"]
    mixed = (work / "tones" / "train.jsonl").read_text().splitlines()
    world_train = (work / "world" / "train.jsonl").read_text().splitlines()
    assert len(mixed) == len(world_train) + scale.tone_clips
    assert len(list((work / "tones" / "audio").glob("tone_*.wav"))) == scale.tone_clips
    cut_rows = [json.loads(line) for line in cuts_manifest.read_text().splitlines()]
    event_cuts = load("event_cuts")
    cut_audio = (work / "event_cuts" / "audio").resolve()
    cuts = [row for row in cut_rows if Path(row["audio"]).parent == cut_audio]
    assert cuts and {row["caption"] for row in cuts} <= set(event_cuts.WEAK_CLASSES)
    assert cut_rows == cuts + event_cuts.absolute_rows(work / "tones" / "train.jsonl")
    # the oversampled classes' cuts are listed as often as the scale asks, under unique ids
    repeats = event_cuts.parse_repeats(scale.event_cut_repeats)
    assert repeats and len({row["id"] for row in cut_rows}) == len(cut_rows)
    for row in cuts:
        listings = [other for other in cuts if other["audio"] == row["audio"]]
        assert len(listings) == repeats.get(row["caption"], 1)
    # Fig. 2: every kept checkpoint of a run gets a validation loss.
    val_loss = load("val_loss")
    rows = val_loss.validation_losses(work / "fig2-ezaudio-s", split="valid", batches=1)
    assert [row["step"] for row in rows] == [2, 4] and all(row["loss"] > 0 for row in rows)
    # Scored on another cache's clips (here the same clean cache under its own path).
    clean = work / "latents" / "clean"
    same = val_loss.validation_losses(work / "fig2-ezaudio-s", "valid", 1, latents=clean)
    assert same == rows
    # A second call finds every step done and trains nothing.
    again = build.build(work, scale, "cpu", {}, ablations=True)
    assert again["steps"]["stage1"] == steps["stage1"]


def test_the_cpu_scale_stops_the_build_while_its_vae_is_unfinished(tmp_path: Path, monkeypatch):
    build = load("build")
    scale = build.SCALES["cpu"]
    assert scale.vae_must_finish and scale.side_by_side_threads == 1
    scale = dataclasses.replace(
        scale, tone_clips=0, event_cuts=False
    )  # no world here to mix tones with
    b = build.Build(tmp_path / "work", scale, "cpu", {"vae": 30.0})
    b.mark("tagger")
    b.mark("clap")
    calls = []

    def budget_stopped(runs, carry_on=(), threads=None):  # the trainer stopped at step 500
        calls.append((sorted(runs), carry_on, threads))
        (tmp_path / "work" / "vae" / "checkpoints" / "step-00000500").mkdir(parents=True)

    monkeypatch.setattr(b, "train_jobs", budget_stopped)
    with pytest.raises(SystemExit, match="step 500 of 12000; run the same command again"):
        b.vae_and_evaluators()
    assert calls == [(["vae"], ("vae",), None)]  # evaluators done: the VAE gets all threads

    def finished(runs, carry_on=(), threads=None):
        b.mark("vae")

    monkeypatch.setattr(b, "train_jobs", finished)
    b.vae_and_evaluators()  # a finished VAE lets the build go on
    assert b.done("vae")


def test_side_by_side_jobs_get_their_thread_count(tmp_path: Path, monkeypatch) -> None:
    build = load("build")
    seen = {}

    def fake_popen(args, env, **kwargs):
        seen[args[-1]] = env.get("OMP_NUM_THREADS")
        return object()

    monkeypatch.setattr(build.subprocess, "Popen", fake_popen)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    b = build.Build(tmp_path, build.SCALES["cpu"], "cpu", {})
    b.start("one", ["a"], threads=1)
    b.start("all", ["b"])
    assert seen == {"a": "1", "b": None}


def test_until_stops_after_its_step_and_vae_from_starts_the_vae_there(tmp_path, monkeypatch):
    build = load("build")
    called, vae_sets = [], []
    monkeypatch.setattr(build.Build, "world", lambda self: called.append("world"))
    monkeypatch.setattr(build.Build, "decoder", lambda self: called.append("decoder"))

    def vae_runs(self, runs, kind, carry_on=(), threads=None):
        called.append(kind)
        vae_sets.extend(runs["vae"][2])
        self.mark("vae")

    monkeypatch.setattr(build.Build, "train_jobs_with_extra", vae_runs)
    work, vae = tmp_path / "work", tmp_path / "vae-from-yesterday"
    scale = dataclasses.replace(
        build.SCALES["smoke"], tone_clips=0, event_cuts=False
    )  # no world to mix with
    for kind in ("tagger", "clap"):  # evaluators already trained
        build.Build(work, scale, "cpu", {}).mark(kind)
    record = build.build(work, scale, "cpu", {}, False, until="vae", vae_from=vae)
    assert called == ["world", "vae"] and record["until"] == "vae"  # no decoder, no stages
    assert f"model.init_from={vae.resolve()}" in vae_sets
    assert json.loads((work / "build.json").read_text())["until"] == "vae"
    with pytest.raises(SystemExit, match="--until must be one of"):
        build.build(work, scale, "cpu", {}, False, until="stage3")
    called.clear()
    assert build.build(work, scale, "cpu", {}, False, until="decoder")["until"] == "decoder"
    assert called == ["world", "decoder"]  # the VAE is done: not trained again


def test_posterior_noise_reaches_the_decoder_and_the_stages_and_stays_per_folder(
    tmp_path, monkeypatch
):
    build = load("build")
    scale = dataclasses.replace(
        build.SCALES["smoke"], tone_clips=0, event_cuts=False
    )  # no world to mix with
    decoder_sets = []
    monkeypatch.setattr(
        build.Build,
        "train_jobs_with_extra",
        lambda self, runs, kind, *args, **kwargs: decoder_sets.extend(runs["decoder"][2]),
    )
    means = build.Build(tmp_path / "means", scale, "cpu", {})  # the default: means
    means.decoder()
    assert "model.posterior_noise=0.0" in decoder_sets
    assert "model.freeze_encoder=true" in decoder_sets
    assert "data.posterior_noise=0.0" in means.dit_sets(1, "clean", 4, None)
    official = build.Build(tmp_path / "official", scale, "cpu", {}, posterior_noise=1.0)
    assert "data.posterior_noise=1.0" in official.dit_sets(3, "clean", 4, "stage2")

    # A build folder keeps the value it was started with.
    monkeypatch.setattr(build.Build, "world", lambda self: None)
    work = tmp_path / "work"
    build.build(work, scale, "cpu", {}, False, until="world", posterior_noise=1.0)
    assert json.loads((work / "build.json").read_text())["posterior_noise"] == 1.0
    with pytest.raises(SystemExit, match="trained with --posterior-noise 1; go on with"):
        build.build(work, scale, "cpu", {}, False, until="world", posterior_noise=0.0)
    older = tmp_path / "older"  # a folder from before the option: its stages drew samples
    build.Build(older, scale, "cpu", {}).mark("stage1")
    with pytest.raises(SystemExit, match="trained with --posterior-noise 1;"):
        build.build(older, scale, "cpu", {}, False, until="world")
    assert build.build(older, scale, "cpu", {}, False, until="world", posterior_noise=1.0)
    with pytest.raises(SystemExit, match="from 0 to 1, got 2"):
        build.build(tmp_path / "bad", scale, "cpu", {}, False, posterior_noise=2.0)


def test_activity_weight_reaches_the_stages_and_stays_per_folder(tmp_path, monkeypatch):
    build = load("build")
    scale = dataclasses.replace(build.SCALES["smoke"], tone_clips=0, event_cuts=False)
    plain = build.Build(tmp_path / "plain", scale, "cpu", {})
    assert "optim.activity_weight=0.0" in plain.dit_sets(1, "clean", 4, None)
    weighted = build.Build(tmp_path / "weighted", scale, "cpu", {}, activity_weight=4.0)
    assert "optim.activity_weight=4.0" in weighted.dit_sets(2, "filtered", 4, "stage1")

    monkeypatch.setattr(build.Build, "world", lambda self: None)
    work = tmp_path / "work"
    build.build(work, scale, "cpu", {}, False, until="world", activity_weight=4.0)
    assert json.loads((work / "build.json").read_text())["activity_weight"] == 4.0
    with pytest.raises(SystemExit, match="trained with --activity-weight 4; go on with"):
        build.build(work, scale, "cpu", {}, False, until="world")
    older = tmp_path / "older"  # a folder from before the option: the paper's loss
    build.Build(older, scale, "cpu", {}).mark("stage1")
    with pytest.raises(SystemExit, match="trained with --activity-weight 0;"):
        build.build(older, scale, "cpu", {}, False, until="world", posterior_noise=1.0,
                    activity_weight=2.0)  # fmt: skip
    with pytest.raises(SystemExit, match="0 or more, got -1"):
        build.build(tmp_path / "bad", scale, "cpu", {}, False, activity_weight=-1.0)
