"""The world on disk: deterministic files, splits, manifests, noisy captions, the CLI."""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ezaudio.data.manifest import read_manifest
from ezaudio.errors import InvalidInputError
from ezaudio.synth import classes, make_clip, read_metadata, write_world
from ezaudio.synth.commands import register

SR = 8000  # small and fast; the default 16 kHz is covered by the other tests
SECONDS = 3.0


def digest(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*")) if path.is_file()
    }  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("world")
    summary = write_world(folder, 20, seed=11, sample_rate=SR, seconds=SECONDS, noisy_share=0.25,
                          progress=False)  # fmt: skip
    return folder, summary


def test_the_same_seed_gives_byte_identical_files(world, tmp_path: Path) -> None:
    folder, _ = world
    write_world(tmp_path, 20, seed=11, sample_rate=SR, seconds=SECONDS, noisy_share=0.25,
                progress=False)  # fmt: skip
    assert digest(tmp_path) == digest(folder)
    other = tmp_path / "other"
    write_world(other, 3, seed=12, sample_rate=SR, seconds=SECONDS, progress=False)
    assert digest(other)["audio/synth_000000.wav"] != digest(folder)["audio/synth_000000.wav"]


def test_clip_i_does_not_depend_on_the_number_of_clips(world, tmp_path: Path) -> None:
    folder, _ = world
    write_world(tmp_path, 7, seed=11, sample_rate=SR, seconds=SECONDS, progress=False)
    small, big = digest(tmp_path), digest(folder)
    for index in range(7):
        name = f"audio/synth_{index:06d}.wav"
        assert small[name] == big[name]
    fixed = ("events", "caption", "paraphrase", "wrong_caption", "incomplete_caption")
    for a, b in zip(read_metadata(tmp_path), read_metadata(folder)[:7]):
        assert {key: a[key] for key in fixed} == {key: b[key] for key in fixed}


def test_workers_give_the_same_world(world, tmp_path: Path) -> None:
    folder, _ = world
    write_world(tmp_path, 20, seed=11, sample_rate=SR, seconds=SECONDS, noisy_share=0.25,
                workers=2, progress=False)  # fmt: skip
    assert digest(tmp_path) == digest(folder)


def test_audio_files_match_the_clips(world) -> None:
    folder, _ = world
    for record in read_metadata(folder)[:4]:
        audio, rate = sf.read(folder / record["audio"], dtype="float32")
        clip = make_clip(11, record["index"], SR, SECONDS)
        assert rate == SR and audio.shape == (round(SECONDS * SR),)
        np.testing.assert_allclose(audio, clip.audio, atol=2 / 32767)
        assert [e.to_json() for e in clip.scene.events] == record["events"]


def test_splits_have_exact_counts_and_manifests_read_back(world) -> None:
    folder, summary = world
    assert summary["counts"] == {"train": 16, "valid": 2, "test": 2}
    records = read_metadata(folder)
    assert [r["id"] for r in records] == [f"synth_{i:06d}" for i in range(20)]
    for split in ("train", "valid", "test"):
        entries = read_manifest(folder / f"{split}.jsonl")
        assert len(entries) == summary["counts"][split]
        assert {e.split for e in entries} == {split}
        for entry in entries:
            assert entry.audio.is_file()
            assert entry.caption == records[int(entry.id.split("_")[1])]["caption"]
    everything = read_manifest(folder / "all.jsonl")
    assert len(everything) == 20
    assert len(read_manifest(folder / "all.jsonl", split="valid")) == 2
    paraphrased = read_manifest(folder / "test_paraphrase.jsonl")
    test_rows = [json.loads(line) for line in (folder / "test.jsonl").read_text().splitlines()]
    assert [e.id for e in paraphrased] == [row["id"] for row in test_rows]
    for entry, row in zip(paraphrased, test_rows):
        assert entry.caption == row["paraphrase"] != row["caption"]
    world_json = json.loads((folder / "world.json").read_text())
    assert world_json == summary and world_json["classes"] == classes()


def test_the_noisy_set_has_the_configured_share_recorded(world) -> None:
    folder, summary = world
    records = {r["id"]: r for r in read_metadata(folder)}
    noisy = read_manifest(folder / "train_noisy.jsonl")
    rows = [json.loads(line) for line in (folder / "train_noisy.jsonl").read_text().splitlines()]
    assert len(noisy) == summary["counts"]["train"] == 16
    kinds = [row["caption_noise"] for row in rows]
    assert len([kind for kind in kinds if kind != "none"]) == 4  # 0.25 * 16 exactly
    assert summary["caption_noise"] == {k: kinds.count(k) for k in ("none", "wrong", "incomplete")}
    for entry, row in zip(noisy, rows):
        record = records[entry.id]
        assert record["caption_noise"] == row["caption_noise"]
        expected = {
            "none": record["caption"],
            "wrong": record["wrong_caption"]["caption"],
            "incomplete": (record["incomplete_caption"] or {}).get("caption"),
        }[row["caption_noise"]]
        assert entry.caption == record["noisy_caption"] == expected
    for record in records.values():
        if record["split"] != "train":
            assert record["caption_noise"] == "none"


@pytest.mark.parametrize("share", [0.0, 0.5, 1.0])
def test_noisy_share_is_exact(tmp_path: Path, share: float) -> None:
    summary = write_world(tmp_path, 10, seed=2, sample_rate=SR, seconds=2.0, splits=(1, 0, 0),
                          noisy_share=share, progress=False)  # fmt: skip
    noise = summary["caption_noise"]
    assert noise["wrong"] + noise["incomplete"] == round(share * 10)
    assert not (tmp_path / "test.jsonl").exists()  # an empty split writes no manifest


def test_bad_settings_are_refused(tmp_path: Path) -> None:
    for kwargs in ({"clips": 0}, {"seconds": 1.0}, {"splits": (0.5, 0.5, 0.5)},
                   {"noisy_share": 1.5}, {"sample_rate": 100}, {"workers": 0}):  # fmt: skip
        settings = {"clips": 2, "seed": 0, "seconds": 2.0, **kwargs}
        with pytest.raises(InvalidInputError):
            write_world(tmp_path, progress=False, **settings)


def test_the_cli_command_writes_a_world(tmp_path: Path, capsys) -> None:
    parser = argparse.ArgumentParser(prog="ezaudio")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["synth", str(tmp_path), "--clips", "3", "--seed", "4", "--sample-rate", "8000",
         "--seconds", "2", "--noisy-share", "0.5", "--workers", "1", "--quiet"]
    )  # fmt: skip
    args.handler(args)
    assert "3 clips" in capsys.readouterr().out
    summary = json.loads((tmp_path / "world.json").read_text())
    assert summary["seed"] == 4 and summary["sample_rate"] == 8000
    assert len(list((tmp_path / "audio").glob("*.wav"))) == 3
    with pytest.raises(InvalidInputError):
        args.splits = "0.5,0.5"
        args.handler(args)


def test_ezaudio_data_synth_through_the_real_cli(tmp_path: Path, capsys) -> None:
    from ezaudio.cli import main

    out = tmp_path / "world"
    code = main(["data", "synth", str(out), "--clips", "2", "--seconds", "2", "--quiet"])
    assert code == 0
    assert len(list((out / "audio").glob("*.wav"))) == 2
    assert main(["data", "synth", str(out), "--clips", "0", "--quiet"]) == 1
    assert "clips" in capsys.readouterr().err
