"""The latent cache (``ezaudio.data.latent_cache``) and training from it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from safetensors import safe_open
from torch.utils.data import DataLoader

from ezaudio.cli import main
from ezaudio.config import VAE_PRESETS
from ezaudio.data import latent_cache
from ezaudio.data.audio import read_audio
from ezaudio.data.latent_cache import (
    LatentClipDataset,
    collate_latents,
    encode_manifest,
    read_index,
    vae_fingerprint,
)
from ezaudio.errors import InvalidInputError
from ezaudio.nn.oobleck import WaveformVAE
from ezaudio.train.recipe import recipe_from_dict

RATE = 16000  # tiny VAE preset: hop 40, 400 frames/s
# Good clips (name -> seconds): three share a length (batched together), two have their own
# (0.3625 s is not a whole number of frames), one is a stereo 44.1 kHz file.
GOOD = {"a": 0.5, "b": 0.5, "c": 0.3625, "d": 0.5, "e": 0.2, "stereo": 0.25}
BAD = {"garbage": "unreadable", "empty": "empty", "silent": "silent", "missing": "missing"}


def tone(seconds: float, index: int, rate: int = RATE) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    noise = np.random.default_rng(index).standard_normal(len(t))
    return (0.3 * np.sin(2 * np.pi * (150 + 90 * index) * t) + 0.02 * noise).astype(np.float32)


def write_world(folder: Path) -> Path:
    """Good clips interleaved with bad files, a JSONL manifest, a tiny random VAE."""
    audio = folder / "audio"
    audio.mkdir(parents=True)
    rows = []
    for index, (name, seconds) in enumerate(GOOD.items()):
        if name == "stereo":
            wave = np.stack([tone(seconds, index, 44100), tone(seconds, 9, 44100)], axis=1)
            sf.write(audio / f"{name}.wav", wave, 44100)
        else:
            sf.write(audio / f"{name}.wav", tone(seconds, index), RATE)
        rows.append({"audio": f"audio/{name}.wav", "caption": f"caption {name}"})
        bad = list(BAD)[index] if index < len(BAD) else None
        if bad:
            rows.append({"audio": f"audio/{bad}.wav", "caption": bad, "split": "train"})
    (audio / "garbage.wav").write_bytes(b"not audio at all" * 20)
    (audio / "empty.wav").write_bytes(b"")
    sf.write(audio / "silent.wav", np.zeros(RATE // 4, np.float32), RATE)
    rows.append({"audio": "audio/a.wav", "caption": "held out", "id": "val_a", "split": "val"})
    (folder / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    save_vae(folder / "vae", seed=0)
    return folder


def save_vae(folder: Path, seed: int) -> Path:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        WaveformVAE(VAE_PRESETS["tiny"]).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_world(tmp_path_factory.mktemp("latent_world"))


@pytest.fixture(scope="module")
def cache(world: Path) -> Path:
    out = world / "cache"
    encode_manifest(world / "train.jsonl", world / "vae", out, batch_size=2, shard_size=3,
                    split="train", progress=False)  # fmt: skip
    return out


def shard_tensors(folder: Path, clip: dict) -> dict[str, torch.Tensor]:
    with safe_open(str(folder / clip["shard"]), framework="pt") as handle:
        parts = ("mean", "std", "valid")
        return {part: handle.get_tensor(f"{clip['key']}.{part}") for part in parts}


def test_the_cache_holds_each_files_posterior_and_counts_the_skips(world, cache):
    index = read_index(cache)
    vae = WaveformVAE.from_pretrained(world / "vae").eval()
    assert index["vae"] == {
        "folder": str((world / "vae").absolute()), "fingerprint": vae_fingerprint(vae),
        "sample_rate": RATE, "hop_length": 40, "latent_dim": 8, "latent_rate": 400.0,
    }  # fmt: skip
    assert index["complete"] and index["dtype"] == "float32"
    assert index["shards"]["total"] == 4 and len(list(cache.glob("shard-*.safetensors"))) == 4
    assert [c["id"] for c in index["clips"]] == list(GOOD)  # manifest order, val left out
    assert index["skipped"] == {"empty": 1, "missing": 1, "silent": 1, "unreadable": 1}
    assert {f["id"]: f["reason"] for f in index["skipped_files"]} == BAD
    for clip in index["clips"]:
        assert clip["caption"] == f"caption {clip['id']}" and clip["split"] == "train"
        audio, _ = read_audio(world / "audio" / f"{clip['id']}.wav", RATE)
        audio = audio / (np.abs(audio).max() + 1e-9)  # whole-clip peak normalisation
        with torch.no_grad():
            mean, std = vae.encode_distribution(torch.from_numpy(audio)[None, None])
        stored = shard_tensors(cache, clip)
        assert clip["frames"] == mean.shape[-1] == stored["mean"].shape[-1]
        assert clip["frames"] == len(audio) // 40  # whole clip, no crop
        torch.testing.assert_close(stored["mean"], mean[0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(stored["std"], std[0], rtol=1e-5, atol=1e-5)
        assert stored["mean"].dtype == torch.float32 and stored["valid"].all()


def test_max_seconds_caps_long_files_and_float16_halves_the_storage(world, cache, tmp_path):
    index = encode_manifest(world / "train.jsonl", world / "vae", tmp_path / "short",
                            clip_seconds=0.3, shard_size=100, split="train", dtype="float16",
                            progress=False)  # fmt: skip
    full = {c["id"]: c for c in read_index(cache)["clips"]}
    for clip in index["clips"]:
        assert clip["frames"] == min(full[clip["id"]]["frames"], 120)  # 0.3 s = 120 frames
        stored = shard_tensors(tmp_path / "short", clip)
        assert stored["mean"].dtype == stored["std"].dtype == torch.float16
    assert index["settings"]["max_seconds"] == 0.3


def test_an_interrupted_encode_resumes_with_only_the_missing_shards(world, cache, tmp_path,
                                                                    monkeypatch):  # fmt: skip
    out = tmp_path / "resumed"
    encoded: list[int] = []
    crash = [2]  # the first run is stopped while shard 2 is being encoded
    original = latent_cache._encode_shard

    def encode_shard(out_dir, number, *args, **kwargs):
        if number in crash:
            crash.clear()
            raise KeyboardInterrupt
        encoded.append(number)
        return original(out_dir, number, *args, **kwargs)

    monkeypatch.setattr(latent_cache, "_encode_shard", encode_shard)
    arguments = (world / "train.jsonl", world / "vae", out)
    options = {"batch_size": 2, "shard_size": 3, "split": "train", "progress": False}
    with pytest.raises(KeyboardInterrupt):
        encode_manifest(*arguments, **options)
    partial = read_index(out, require_complete=False)
    assert not partial["complete"] and partial["shards"]["complete"] == [
        "shard-00000.safetensors", "shard-00001.safetensors"
    ]  # fmt: skip
    with pytest.raises(InvalidInputError, match="unfinished latent cache"):
        LatentClipDataset(out, 10)

    encode_manifest(*arguments, **options)  # resumes: encodes shards 2 and 3 only
    assert encoded == [0, 1, 2, 3]
    # Drop the last shard and its index entries, as a kill between the two writes would.
    (out / "shard-00003.safetensors").unlink()
    index = json.loads((out / "index.json").read_text())
    index["clips"] = [c for c in index["clips"] if c["shard"] != "shard-00003.safetensors"]
    (out / "index.json").write_text(json.dumps(index))
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*")}
    encode_manifest(*arguments, **options)
    assert encoded == [0, 1, 2, 3, 3]
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("shard-0000[012]*")} == before
    assert read_index(out) == read_index(cache)
    for clip in read_index(out)["clips"]:
        for name, tensor in shard_tensors(out, clip).items():
            assert torch.equal(tensor, shard_tensors(cache, clip)[name])
    # A finished cache is not touched again.
    encode_manifest(*arguments, **options)
    assert encoded == [0, 1, 2, 3, 3]


def test_a_cache_of_another_vae_is_refused(world, cache, tmp_path, capsys):
    other = save_vae(tmp_path / "other_vae", seed=1)
    copy = tmp_path / "cache"
    copy.mkdir()
    for path in cache.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    with pytest.raises(InvalidInputError, match="another VAE"):
        encode_manifest(world / "train.jsonl", other, copy, shard_size=3, split="train",
                        progress=False)  # fmt: skip
    command = ["data", "encode", str(world / "train.jsonl"), "--vae", str(other), "--out",
               str(copy), "--split", "train", "--shard-size", "3", "--device", "cpu"]  # fmt: skip
    assert main(command) == 1
    err = capsys.readouterr().err.strip()
    assert "another VAE" in err and "\n" not in err
    with pytest.raises(InvalidInputError, match="shard_size=3, not 5"):
        encode_manifest(world / "train.jsonl", world / "vae", copy, shard_size=5, split="train",
                        progress=False)  # fmt: skip
    # Training refuses a cache the recipe's VAE did not make, in one line.
    recipe = latent_recipe(copy, other, tmp_path / "run")
    path = tmp_path / "stale.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["train", str(path)]) == 1
    err = capsys.readouterr().err.strip()
    assert "stale latent cache" in err and "\n" not in err


def test_reuse_copies_the_posteriors_of_the_same_files_and_encodes_the_rest(
    world, cache, tmp_path, monkeypatch, capsys
):
    audio = world / "audio"
    rows = [
        {"audio": str(audio / "a.wav"), "caption": "new caption a", "id": "a"},  # reused
        {"audio": str(audio / "e.wav"), "caption": "same id, other file", "id": "b"},
        {"audio": str(audio / "c.wav"), "caption": "new caption c", "id": "c"},  # reused
        {"audio": str(audio / "d.wav"), "caption": "other id, same file", "id": "x"},
    ]
    manifest = tmp_path / "recaptioned.jsonl"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    encoded_clips: list[int] = []
    original = WaveformVAE.encode_distribution

    def counting(self, audio):
        encoded_clips.append(audio.shape[0])
        return original(self, audio)

    monkeypatch.setattr(WaveformVAE, "encode_distribution", counting)
    options = {"shard_size": 3, "batch_size": 1, "progress": False}
    index = encode_manifest(manifest, world / "vae", tmp_path / "reused", reuse=cache, **options)
    assert sum(encoded_clips) == 2 and index["reused"] == 2
    assert [(c["id"], c["caption"]) for c in index["clips"]] == [
        (row["id"], row["caption"]) for row in rows
    ]
    fresh = encode_manifest(manifest, world / "vae", tmp_path / "fresh", **options)
    assert sum(encoded_clips) == 6 and fresh["reused"] == 0
    source = {c["id"]: c for c in read_index(cache)["clips"]}
    for clip, twin in zip(index["clips"], fresh["clips"]):
        assert clip == twin
        mine = shard_tensors(tmp_path / "reused", clip)
        for part, tensor in shard_tensors(tmp_path / "fresh", twin).items():  # batching aside
            torch.testing.assert_close(mine[part], tensor, rtol=1e-5, atol=1e-5)
        if clip["id"] in ("a", "c"):  # copied bit for bit
            for part, tensor in shard_tensors(cache, source[clip["id"]]).items():
                assert torch.equal(mine[part], tensor)
    out = str(tmp_path / "cli")
    command = ["data", "encode", str(manifest), "--vae", str(world / "vae"), "--quiet",
               "--out", out, "--reuse", str(cache), "--device", "cpu"]  # fmt: skip
    assert main(command) == 0
    assert "2 reused from" in capsys.readouterr().out


def test_reuse_refuses_a_cache_of_other_settings(world, cache, tmp_path, capsys):
    manifest = world / "train.jsonl"
    other = save_vae(tmp_path / "other_vae", seed=1)
    options = {"split": "train", "progress": False}
    with pytest.raises(InvalidInputError, match="another VAE"):
        encode_manifest(manifest, other, tmp_path / "a", reuse=cache, **options)
    with pytest.raises(InvalidInputError, match="max_seconds=None for max_seconds=0.3"):
        encode_manifest(manifest, world / "vae", tmp_path / "b", clip_seconds=0.3,
                        reuse=cache, **options)  # fmt: skip
    with pytest.raises(InvalidInputError, match="dtype='float32' for dtype='float16'"):
        encode_manifest(manifest, world / "vae", tmp_path / "c", dtype="float16",
                        reuse=cache, **options)  # fmt: skip
    with pytest.raises(InvalidInputError, match="not a latent cache"):
        encode_manifest(manifest, world / "vae", tmp_path / "d", reuse=tmp_path, **options)
    command = ["data", "encode", str(manifest), "--vae", str(other), "--out",
               str(tmp_path / "e"), "--reuse", str(cache), "--device", "cpu"]  # fmt: skip
    assert main(command) == 1
    err = capsys.readouterr().err.strip()
    assert "another VAE" in err and "\n" not in err
    assert not (tmp_path / "e").exists()


def test_crops_are_reproducible_per_seed_epoch_and_index(cache):
    index = read_index(cache)
    dataset = LatentClipDataset(cache, 100, seed=3)  # 0.25 s; clips have 80 to 200 frames
    assert len(dataset) == len(GOOD) and dataset.skipped == index["skipped"]

    def crops(epoch: int) -> list[dict]:
        dataset.set_epoch(epoch)
        return [dataset[i] for i in range(len(dataset))]

    first, again, second = crops(0), crops(0), crops(1)
    assert all(torch.equal(a["mean"], b["mean"]) for a, b in zip(first, again))
    assert any(not torch.equal(a["mean"], b["mean"]) for a, b in zip(first, second))
    other_seed = LatentClipDataset(cache, 100, seed=4)
    assert any(not torch.equal(a["mean"], other_seed[i]["mean"]) for i, a in enumerate(first))
    for i, clip in enumerate(index["clips"]):
        item = first[i]
        stored = shard_tensors(cache, clip)
        dataset.set_epoch(0)
        start = dataset.crop_start(clip["frames"], i)
        real = min(100, clip["frames"])
        assert item["mean"].shape == item["std"].shape == (8, 100) and item["valid"].shape == (100,)
        assert item["valid"].sum() == real and item["valid"][:real].all()
        assert torch.equal(item["mean"][:, :real], stored["mean"][:, start : start + real])
        assert torch.equal(item["std"][:, :real], stored["std"][:, start : start + real])
        assert not item["mean"][:, real:].any() and not item["std"][:, real:].any()
        assert item["caption"] == clip["caption"] and item["id"] == clip["id"]
        assert 0 <= start <= max(0, clip["frames"] - 100)
    assert LatentClipDataset(cache, 100, random_crop=False).crop_start(200, 0) == 0
    batch = next(iter(DataLoader(dataset, batch_size=4, collate_fn=collate_latents)))
    assert batch["mean"].shape == (4, 8, 100) and batch["valid"].dtype == torch.bool
    assert batch["id"] == list(GOOD)[:4]
    with pytest.raises(InvalidInputError, match="not a latent cache"):
        LatentClipDataset(cache.parent, 100)
    with pytest.raises(InvalidInputError, match="clip_frames"):
        LatentClipDataset(cache, 0)


def latent_recipe(cache: Path, vae: Path, run: Path, **optim) -> dict:
    return {
        "stage": 1,
        "model": {"dit_preset": "tiny", "vae": str(vae)},
        "data": {"latents": str(cache), "clip_seconds": 0.25},  # no manifest needed
        "optim": {"batch_size": 2, "max_steps": 2, "lr": 1.0e-3, "ema_decay": 0.9, **optim},
        "run": {"output_dir": str(run), "checkpoint_every": 2, "keep_last": 1, "seed": 0},
    }


def test_training_from_the_cache_samples_latents_from_the_posterior(world, cache, tmp_path):
    from ezaudio.train.trainer import DiTTrainer

    recipe = recipe_from_dict(latent_recipe(cache, world / "vae", tmp_path / "run")).validate()
    trainer = DiTTrainer(recipe)
    assert isinstance(trainer.dataset, LatentClipDataset) and trainer.dataset.clip_frames == 100
    batch = next(trainer._batches())
    state = trainer.generator.get_state()
    latents, valid = trainer.encode(batch)
    noise = torch.randn(batch["mean"].shape, generator=torch.Generator().set_state(state))
    torch.testing.assert_close(latents, batch["mean"] + batch["std"] * noise, rtol=0, atol=0)
    assert torch.equal(valid, batch["valid"])
    loss = trainer.latent_loss(latents, valid, list(batch["caption"]))
    assert math.isfinite(loss.item()) and loss.item() > 0
    with pytest.raises(InvalidInputError, match="data.latents"):
        recipe_from_dict({**latent_recipe(cache, world / "vae", tmp_path), "data": {}}).validate()


def test_ezaudio_train_runs_from_the_cache_and_data_encode_reports(world, tmp_path, capsys):
    out = tmp_path / "cache"
    assert main(["data", "encode", str(world / "train.jsonl"), "--vae", str(world / "vae"),
                 "--out", str(out), "--split", "train", "--batch-size", "4", "--quiet",
                 "--device", "cpu"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert f"{out}: 6 clips in 1 shards (float32), skipped 4" in printed
    recipe = tmp_path / "recipe.yaml"
    raw = latent_recipe(out, world / "vae", tmp_path / "run")
    raw["data"] = {"manifest": str(world / "train.jsonl"), "clip_seconds": 0.25}
    recipe.write_text(yaml.safe_dump(raw))
    assert main(["train", str(recipe), "--set", f"data.latents={out}", "--no-export"]) == 0
    metrics = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2]
    assert all(math.isfinite(m["loss"]) and m["loss"] > 0 for m in metrics)
    saved = yaml.safe_load((tmp_path / "run" / "recipe.yaml").read_text())
    assert saved["data"]["latents"] == str(out)


def test_encode_arguments_are_checked(world, tmp_path, capsys):
    manifest = world / "train.jsonl"
    for bad, match in (({"batch_size": 0}, "batch size"), ({"shard_size": 0}, "shard size"),
                       ({"clip_seconds": -1.0}, "max seconds"), ({"dtype": "int8"}, "dtype"),
                       ({"split": "nope"}, "no clips in split")):  # fmt: skip
        with pytest.raises(InvalidInputError, match=match):
            encode_manifest(manifest, world / "vae", tmp_path / "x", progress=False, **bad)
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "encode", str(manifest), "--out", str(tmp_path / "x")])
    assert exit_info.value.code == 2 and "--vae" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["data"])
    assert "ACTION" in capsys.readouterr().err
