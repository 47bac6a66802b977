"""`ezaudio evaluate` end to end on the CPU: tiny random model, random CNN14, tiny CLAP.

Module fixtures write the models and a three-clip manifest once; the full CLI run happens
once (``first_run``) and later tests read its outputs, resume it, or sweep a 2 x 2 grid on
two clips. Every run uses 2 DDIM steps and half a second of audio.
"""

from __future__ import annotations

import json
import math
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from ezaudio.cli import main
from ezaudio.errors import InvalidInputError
from ezaudio.eval.panns import Cnn14, Cnn14Config
from ezaudio.eval.protocol import (
    EvalClip,
    choose_caption,
    choose_captions,
    generate_clips,
    output_names,
    read_eval_manifest,
    resolve_settings,
)

FAST = ["--steps", "2", "--seconds", "0.5", "--device", "cpu", "--quiet", "--batch-size", "4"]
CAPTIONS = [
    ("a dog barks", "a dog is barking loudly", "dogs bark in a yard"),
    ("rain falls on a roof", "heavy rain", "rain and distant thunder"),
    ("a car passes by", "an engine revs", "traffic noise on a street"),
]
METRICS = ("fd", "kl", "kl_sigmoid", "is", "clap", "clap_reference")


# ---- fixtures ------------------------------------------------------------------------------


def save_tiny_clap(folder: Path) -> Path:
    """A tiny random ClapModel, a LAION-style feature extractor, the offline MiniLM tokenizer."""
    from transformers import AutoTokenizer, ClapConfig, ClapFeatureExtractor, ClapModel

    from ezaudio.text.encoder import minilm_folder

    tokenizer = AutoTokenizer.from_pretrained(str(minilm_folder()))
    config = ClapConfig(
        text_config={
            "vocab_size": len(tokenizer), "hidden_size": 32, "num_hidden_layers": 1,
            "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 130,
            "pad_token_id": tokenizer.pad_token_id,
        },
        audio_config={"depths": [1, 1], "num_attention_heads": [1, 2],
                      "patch_embeds_hidden_size": 16, "hidden_size": 32},
        projection_dim=16,
    )  # fmt: skip
    with torch.random.fork_rng():
        torch.manual_seed(0)
        ClapModel(config).save_pretrained(folder)
    ClapFeatureExtractor(truncation="rand_trunc").save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    assert main(["init", "--output", str(folder / "tiny")]) == 0
    with torch.random.fork_rng():
        torch.manual_seed(0)
        Cnn14(Cnn14Config()).save_pretrained(folder / "panns")
    save_tiny_clap(folder / "clap")
    return {"model": folder / "tiny", "panns": folder / "panns", "clap": folder / "clap"}


def write_reference(folder: Path, name: str, seconds: float = 1.0, rate: int = 22050) -> Path:
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    stereo = 0.1 * rng.standard_normal((round(seconds * rate), 2))
    path = folder / name
    sf.write(path, stereo, rate, subtype="FLOAT")
    return path


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("data")
    (folder / "ref").mkdir()
    lines = ["id,audio,caption_1,caption_2,caption_3"]
    for index, captions in enumerate(CAPTIONS):
        write_reference(folder / "ref", f"clip{index}.wav")
        lines.append(f"clip{index},ref/clip{index}.wav," + ",".join(captions))
    path = folder / "test.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code: int, err: str, *words: str) -> str:
    assert code == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("ezaudio: error: "), err
    for word in words:
        assert word in lines[0], f"{word!r} not in {lines[0]!r}"
    return lines[0]


@pytest.fixture(scope="module")
def first_run(models, manifest, tmp_path_factory: pytest.TempPathFactory) -> dict:
    out_dir = tmp_path_factory.mktemp("runs") / "eval"
    argv = ["evaluate", manifest, "--model", models["model"], "--out-dir", out_dir,
            "--panns", models["panns"], "--clap", models["clap"], *FAST]  # fmt: skip
    code = main([str(arg) for arg in argv])
    assert code == 0
    results = json.loads((out_dir / "results.json").read_text())
    return {"argv": argv, "out_dir": out_dir, "results": results}


# ---- the full run --------------------------------------------------------------------------


def test_results_are_written_with_finite_metrics(first_run) -> None:
    out_dir, results = first_run["out_dir"], first_run["results"]
    metrics = results["metrics"]
    for name in METRICS:
        assert isinstance(metrics[name], float) and math.isfinite(metrics[name]), name
    assert metrics["clips"] == 3 and metrics["is_splits"] == 1
    assert -1.0 <= metrics["clap"] <= 1.0
    table = (out_dir / "results.md").read_text()
    assert "| Model | FD ↓ | KL ↓ | IS ↑ | CLAP ↑ |" in table
    assert f"{metrics['fd']:.2f}" in table and f"{metrics['clap']:.3f}" in table
    wavs = sorted((out_dir / "audio").glob("*.wav"))
    assert [p.name for p in wavs] == ["clip0.wav", "clip1.wav", "clip2.wav"]
    info = sf.info(str(wavs[0]))
    assert info.frames == 8000 and info.samplerate == 16000
    assert (out_dir / "generation.json").is_file()


def test_all_settings_are_recorded(first_run, models) -> None:
    results = first_run["results"]
    assert results["sampler"] == {
        "steps": 2, "guidance_scale": 5.0, "guidance_rescale": 0.75, "eta": 1.0,
        "seconds": 0.5, "seed": 0, "caption_seed": 0,
    }  # fmt: skip
    assert results["model"]["name"] == "random-tiny"
    assert len(results["model"]["fingerprint"]) == 64
    assert results["features"]["prepare"]["sample_rate"] == 16000
    assert results["features"]["prepare"]["channel"] == 0
    assert len(results["features"]["panns"]["fingerprint"]) == 64
    assert results["features"]["clap"]["crop"] == "first 10 s"
    for package in ("torch", "transformers", "numpy", "ezaudio", "python"):
        assert package in results["versions"]
    assert results["generation"] == {**results["generation"], "generated": 3, "skipped": 0}
    assert results["feature_cache"]["reference"] == {"computed": 3, "cached": 0}


def test_caption_choice_is_recorded_and_reproducible(first_run, manifest) -> None:
    clips = read_eval_manifest(manifest)
    recorded = first_run["results"]["clips"]
    expected = choose_captions(clips, seed=0)
    assert [(c["id"], c["caption_index"], c["caption"]) for c in recorded] == [
        (c["id"], c["caption_index"], c["caption"]) for c in expected
    ]
    assert [c["seed"] for c in recorded] == [0, 1, 2]
    assert choose_captions(clips, seed=0) == expected  # same seed, same choice
    # A function of (seed, id) only: independent of order and of --limit, and the seed matters.
    many = [EvalClip(f"id{i}", Path(f"{i}.wav"), ("a", "b", "c", "d", "e")) for i in range(40)]
    by_id = {c["id"]: c["caption_index"] for c in choose_captions(many, seed=3)}
    reversed_ = {c["id"]: c["caption_index"] for c in choose_captions(many[::-1], seed=3)}
    assert by_id == reversed_
    assert {c["id"]: c["caption_index"] for c in choose_captions(many[:5], seed=3)} == {
        k: by_id[k] for k in ("id0", "id1", "id2", "id3", "id4")
    }
    other = {c["id"]: c["caption_index"] for c in choose_captions(many, seed=4)}
    assert other != by_id
    assert len(set(by_id.values())) > 1
    assert choose_caption("x", 1, 123) == 0


def test_second_run_generates_nothing_new(first_run, capsys) -> None:
    out_dir = first_run["out_dir"]
    stamps = {p.name: p.stat().st_mtime_ns for p in (out_dir / "audio").glob("*.wav")}
    code, out, err = run(capsys, *first_run["argv"])
    assert code == 0, err
    assert "| Model | FD ↓ | KL ↓ | IS ↑ | CLAP ↑ |" in out
    again = json.loads((out_dir / "results.json").read_text())
    assert again["generation"]["generated"] == 0 and again["generation"]["skipped"] == 3
    assert again["feature_cache"]["reference"] == {"computed": 0, "cached": 3}
    assert again["feature_cache"]["generated"] == {"computed": 0, "cached": 3}
    assert {p.name: p.stat().st_mtime_ns for p in (out_dir / "audio").glob("*.wav")} == stamps
    for name in METRICS:
        assert again["metrics"][name] == pytest.approx(first_run["results"]["metrics"][name])


@pytest.fixture(scope="module")
def pipe(models):
    from ezaudio.pipeline import EzAudio

    return EzAudio.from_pretrained(models["model"], device="cpu")


def test_damaged_files_are_regenerated_and_other_settings_refused(pipe, first_run, manifest):
    """Through the API on a copy of the first run's folder: one damaged file -> one new clip."""
    import shutil

    folder = first_run["out_dir"].parent / "resume-copy"
    shutil.copytree(first_run["out_dir"], folder)
    clips = read_eval_manifest(manifest)
    captions = [c["caption"] for c in choose_captions(clips, 0)]
    settings = resolve_settings(pipe, steps=2, seconds=0.5)
    damaged = folder / "audio" / "clip1.wav"
    damaged.write_bytes(damaged.read_bytes()[:1000])  # cut short, as by a crash
    report = generate_clips(pipe, clips, captions, folder, settings, progress=False)
    assert (report.generated, report.skipped) == (1, 2)
    first = sf.read(first_run["out_dir"] / "audio" / "clip1.wav", dtype="float32")[0]
    regenerated = sf.read(damaged, dtype="float32")[0]
    np.testing.assert_allclose(regenerated, first, atol=1e-5)  # same seed (batch of 1, not 3)
    report = generate_clips(pipe, clips, captions, folder, settings, progress=False)
    assert report.generated == 0
    with pytest.raises(InvalidInputError, match="other settings.*guidance_scale 2.0 here, 5.0"):
        generate_clips(pipe, clips, captions, folder, settings.replace(guidance_scale=2.0))
    with pytest.raises(InvalidInputError, match="model weights differ"):
        generate_clips(pipe, clips, captions, folder, settings, fingerprint="0" * 64)
    changed = list(captions)
    changed[2] = "a different caption"  # the manifest's caption changed: that clip is redone
    report = generate_clips(pipe, clips, changed, folder, settings, progress=False)
    assert (report.generated, report.skipped) == (1, 2)


# ---- sweep ---------------------------------------------------------------------------------


def test_sweep_writes_table_and_plot(models, manifest, tmp_path: Path, capsys) -> None:
    out_dir = tmp_path / "sweep"
    code, out, err = run(
        capsys, "evaluate", "sweep", manifest, "--model", models["model"], "--out-dir", out_dir,
        "--panns", models["panns"], "--clap", models["clap"], "--limit", "2",
        "--guidance-scales", "1", "3", "--rescales", "0", "0.75", *FAST,
    )  # fmt: skip
    assert code == 0, err
    assert "| Guidance scale | Rescale | FD ↓ | KL ↓ | IS ↑ | CLAP ↑ |" in out
    table = json.loads((out_dir / "sweep.json").read_text())
    cells = {(c["guidance_scale"], c["guidance_rescale"]): c for c in table["cells"]}
    assert set(cells) == {(1.0, 0.0), (3.0, 0.0), (1.0, 0.75), (3.0, 0.75)}
    for cell in cells.values():
        assert math.isfinite(cell["fd"]) and math.isfinite(cell["clap"])
        assert (out_dir / cell["folder"] / "results.md").is_file()
    png = (out_dir / "sweep.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert (out_dir / "sweep.md").read_text().count("\n| ") == 5  # header + 4 rows
    # the reference features were computed once, by the first cell, and reused after
    computed = [
        json.loads((out_dir / c["folder"] / "results.json").read_text())["feature_cache"]
        for c in table["cells"]
    ]
    assert [c["reference"]["computed"] for c in computed] == [2, 0, 0, 0]


# ---- manifests -----------------------------------------------------------------------------


def test_jsonl_manifest_with_caption_lists(tmp_path: Path) -> None:
    write_reference(tmp_path, "a.wav")
    write_reference(tmp_path, "b.wav")
    path = tmp_path / "m.jsonl"
    path.write_text(
        json.dumps({"id": "one", "audio": "a.wav", "captions": ["x", "", "y"]}) + "\n\n"
        + json.dumps({"audio": str(tmp_path / "b.wav"), "caption_1": "z", "caption": "w"}) + "\n"
    )  # fmt: skip
    clips = read_eval_manifest(path)
    assert [c.id for c in clips] == ["one", "b"]
    assert clips[0].captions == ("x", "y") and clips[1].captions == ("z", "w")
    assert clips[0].audio == tmp_path / "a.wav"


def test_audiocaps_layout(tmp_path: Path) -> None:
    audio = tmp_path / "audio"
    audio.mkdir()
    write_reference(audio, "Y-abc_123.wav")
    write_reference(audio, "xyz987_30.wav")
    rows = ["audiocap_id,youtube_id,start_time,caption"]
    for n in range(5):
        rows.append(f"{100 + n},-abc_123,0,first clip caption {n}")
    rows += [f"{200 + n},xyz987,30,second clip caption {n}" for n in range(5)]
    path = tmp_path / "test.csv"
    path.write_text("\n".join(rows) + "\n")
    clips = read_eval_manifest(path, audio_root=audio)
    assert [c.id for c in clips] == ["-abc_123", "xyz987"]
    assert clips[0].audio.name == "Y-abc_123.wav" and clips[1].audio.name == "xyz987_30.wav"
    assert len(clips[0].captions) == 5 and clips[1].captions[4] == "second clip caption 4"
    with pytest.raises(InvalidInputError, match="2 of 2 reference audio files not found"):
        read_eval_manifest(path, audio_root=audio, audio_pattern="{youtube_id}.flac")
    with_audio = tmp_path / "with_audio.csv"
    with_audio.write_text(
        "youtube_id,start_time,caption,audio\n"
        + "".join(f"-abc_123,0,caption {n},audio/Y-abc_123.wav\n" for n in range(3))
        + "xyz987,30,only caption,audio/xyz987_30.wav\n"
    )
    clips = read_eval_manifest(with_audio)
    assert [(c.id, len(c.captions), c.audio.name) for c in clips] == [
        ("-abc_123", 3, "Y-abc_123.wav"),
        ("xyz987", 1, "xyz987_30.wav"),
    ]
    rows.append("999,xyz987,30,a sixth caption")
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(InvalidInputError, match="6 captions; at most 5"):
        read_eval_manifest(path, audio_root=audio)


def test_output_names_are_safe_and_unique() -> None:
    names = output_names(["clip0", "a/b c", "Dog", "dog", "x" * 300])
    assert names[0] == "clip0"
    assert "/" not in names[1] and names[1].startswith("a_b_c-")
    assert names[2].lower() != names[3].lower()
    assert len(names[4]) < 100 and len(set(names)) == 5


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("id,audio,caption_1\none,a.wav,\n", ["no caption"]),
        ("id,audio,caption_1\none,a.wav,x\none,a.wav,y\n", ["duplicate clip id 'one'"]),
        ("id,audio,caption_1,caption_6\none,a.wav,x,y\n", ["at most 5 captions", "caption_6"]),
        ("id,file,caption\none,a.wav,x\n", ["needs an 'audio' column", "file"]),
        ("id,audio,caption\none,missing.wav,x\ntwo,a.wav,y\n", ["1 of 2 reference audio"]),
    ],
)
def test_bad_manifests(tmp_path: Path, text: str, words: list[str]) -> None:
    write_reference(tmp_path, "a.wav")
    path = tmp_path / "m.csv"
    path.write_text(text)
    with pytest.raises(InvalidInputError) as caught:
        read_eval_manifest(path)
    for word in words:
        assert word in str(caught.value)


# ---- command-line errors -------------------------------------------------------------------


def test_cli_errors_are_one_line(models, manifest, tmp_path: Path, capsys) -> None:
    base = ["--model", models["model"], "--out-dir", tmp_path / "out",
            "--panns", models["panns"], "--clap", models["clap"], *FAST]  # fmt: skip
    cases = [
        (["evaluate", tmp_path / "missing.csv", *base], ["manifest not found"]),
        (["evaluate", manifest, *base, "--guidance-scale", "-1"], ["--guidance-scale"]),
        (["evaluate", manifest, *base, "--guidance-rescale", "2"], ["--guidance-rescale"]),
        (["evaluate", manifest, *base, "--steps", "0"], ["--steps"]),
        (["evaluate", manifest, *base, "--seed", "-3"], ["--seed"]),
        (["evaluate", manifest, *base, "--caption-seed", "-3"], ["--caption-seed"]),
        (["evaluate", manifest, *base, "--batch-size", "0"], ["--batch-size"]),
        (["evaluate", manifest, *base, "--limit", "1"], ["--limit"]),
        (["evaluate", manifest, *base, "--rescales", "0"], ["evaluate sweep"]),
        (["evaluate", "sweep", manifest, *base, "--guidance-scale", "3"], ["--guidance-scales"]),
        (
            ["evaluate", "sweep", manifest, *base, "--guidance-scales", "200"],
            ["--guidance-scales: every value must be in [0, 100], got 200"],
        ),
        (["evaluate", "sweep", *base], ["needs a MANIFEST"]),
        (["evaluate", manifest, manifest, *base], ["one MANIFEST expected"]),
        (["evaluate", manifest, *base, "--dtype", "int8"], ["dtype"]),
        (["evaluate", manifest, *base, "--panns", tmp_path / "no.pth"], ["PANNs", "--panns"]),
        (["evaluate", manifest, *base, "--clap", tmp_path / "no" / "clap"], ["CLAP", "not found"]),
    ]
    for argv, words in cases:
        code, _, err = run(capsys, *argv)
        one_line_error(code, err, *words)
    with pytest.raises(SystemExit) as exited:
        run(capsys, "evaluate", manifest, "--out-dir", tmp_path / "o")
    err = capsys.readouterr().err
    assert exited.value.code == 2 and len(err.strip().splitlines()) == 1 and "--model" in err
