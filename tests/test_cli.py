"""The ``ezaudio`` command, run in-process through ``ezaudio.cli.main`` (and once for real).

A tiny random model (tiny DiT, tiny VAE, offline MiniLM) is written once per
module with ``ezaudio init`` and reused; every run uses 2 steps and half a
second of audio.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch
from safetensors.torch import load_file, save_file

import ezaudio
from ezaudio.cli import main
from ezaudio.nn.dit import EzAudioDiT
from ezaudio.nn.oobleck import WaveformVAE

REFERENCE = Path(__file__).parent / "data_files" / "reference"
FAST = ["--steps", "2", "--seconds", "0.5", "--quiet"]
TOLERANCE = 1e-5


# ----------------------------------------------------------------- helpers
def run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    """Run ``ezaudio ARGV`` in-process; returns (exit status, stdout, stderr)."""
    capsys.readouterr()
    code = main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return code, out, err


def run_ok(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[str, str]:
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    return out, err


def assert_one_line_error(code: int, err: str, *words: str) -> str:
    """Exit status 1 and exactly one ``ezaudio: error: ...`` line naming ``words``."""
    assert code == 1, err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith("ezaudio: error: "), line
    for word in words:
        assert word in line, f"{word!r} not in {line!r}"
    return line


def read(path: Path) -> tuple[np.ndarray, int]:
    data, rate = sf.read(str(path), dtype="float32")
    return data, rate


def sine(seconds: float, rate: int, frequency: float = 440.0, amplitude: float = 0.5):
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def relative_error(ours: torch.Tensor, ref: torch.Tensor) -> float:
    return float((ours - ref).abs().max() / ref.abs().max())


# ---------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("models") / "tiny"
    assert main(["init", "--output", str(folder)]) == 0
    assert (folder / "ezaudio.json").is_file()
    return folder


@pytest.fixture(scope="module")
def rate(tiny_model: Path) -> int:
    return json.loads((tiny_model / "ezaudio.json").read_text())["sample_rate"]


@pytest.fixture(scope="module")
def corrupt_model(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the tiny model whose DiT weights are garbage bytes."""
    folder = tmp_path_factory.mktemp("models") / "garbled"
    shutil.copytree(tiny_model, folder)
    (folder / "dit" / "model.safetensors").write_bytes(os.urandom(4096))
    return folder


@pytest.fixture(scope="module")
def misfit_model(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the tiny model whose DiT config no longer fits its weights."""
    folder = tmp_path_factory.mktemp("models") / "widened"
    shutil.copytree(tiny_model, folder)
    config_path = folder / "dit" / "config.json"
    config = json.loads(config_path.read_text())
    config["embed_dim"] *= 2
    config_path.write_text(json.dumps(config))
    return folder


@pytest.fixture(scope="module")
def official(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The small reference DiT and VAE written as the official release files."""
    folder = tmp_path_factory.mktemp("official")
    dit_weights = load_file(REFERENCE / "dit_small_weights.safetensors")
    torch.save({"model": dit_weights}, folder / "dit.pt")
    vae_weights = load_file(REFERENCE / "vae_small_weights.safetensors")
    torch.save(
        {"state_dict": {"autoencoder." + k: v for k, v in vae_weights.items()}}, folder / "vae.pt"
    )
    return {
        "dit": folder / "dit.pt",
        "dit_config": REFERENCE / "dit_small_config.json",
        "vae": folder / "vae.pt",
        "vae_config": REFERENCE / "vae_small_config.json",
    }


@pytest.fixture(scope="module")
def text_folder_32(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random BERT text encoder with 32-d states (the reference DiT's context width),
    with the real MiniLM tokenizer, saved as a local folder."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from ezaudio.text.encoder import minilm_folder

    folder = tmp_path_factory.mktemp("text") / "bert32"
    torch.manual_seed(0)
    config = BertConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
    )
    BertModel(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(minilm_folder()).save_pretrained(folder)
    return folder


@pytest.fixture
def sine_wav(tmp_path: Path, rate: int) -> Path:
    path = tmp_path / "inputs" / "sine.wav"
    path.parent.mkdir(exist_ok=True)
    sf.write(path, sine(1.0, rate), rate, subtype="FLOAT")
    return path


# ---------------------------------------------------------------- generate
@pytest.mark.parametrize("seconds", [0.5, 0.37])
def test_generate_writes_a_wav_of_the_requested_length(
    capsys, tiny_model: Path, rate: int, tmp_path: Path, seconds: float
) -> None:
    output = tmp_path / "new" / "nested" / "dog.wav"  # folders do not exist yet
    run_ok(
        capsys,
        "generate",
        "a dog barks",
        "-o",
        output,
        "--model",
        tiny_model,
        *FAST,
        "--seconds",
        seconds,
        "--seed",
        0,
    )
    data, file_rate = read(output)
    info = sf.info(str(output))
    assert file_rate == rate and info.format == "WAV" and info.subtype == "FLOAT"
    assert info.channels == 1 and data.shape == (round(seconds * rate),)
    assert np.isfinite(data).all() and data.std() > 0
    assert [p.name for p in output.parent.iterdir()] == ["dog.wav"]  # no temp files left


def test_generate_flac(capsys, tiny_model: Path, rate: int, tmp_path: Path) -> None:
    output = tmp_path / "dog.flac"
    run_ok(
        capsys, "generate", "a dog barks", "-o", output, "--model", tiny_model, *FAST, "--seed", 3
    )
    info = sf.info(str(output))
    assert info.format == "FLAC" and info.samplerate == rate and info.frames == rate // 2
    # same audio as the WAV, up to 24-bit quantisation (and clipping to [-1, 1])
    run_ok(
        capsys,
        "generate",
        "a dog barks",
        "-o",
        tmp_path / "dog.wav",
        "--model",
        tiny_model,
        *FAST,
        "--seed",
        3,
    )
    flac, _ = read(output)
    wav, _ = read(tmp_path / "dog.wav")
    np.testing.assert_allclose(flac, np.clip(wav, -1, 1), atol=2**-22)


def peak_db(audio: np.ndarray) -> float:
    return float(20 * np.log10(np.abs(audio).max()))


def test_peak_ceiling_turns_a_loud_clip_down_by_one_gain(
    capsys, tiny_model: Path, tmp_path: Path
) -> None:
    common = ["generate", "a dog barks", "--model", tiny_model, *FAST, "--seed", 5]
    run_ok(capsys, *common, "-o", tmp_path / "raw.wav", "--peak", "none")
    raw, _ = read(tmp_path / "raw.wav")
    raw_db = peak_db(raw)
    assert -54 < raw_db < -1  # the tiny random model is quiet: under the default ceiling

    # the default ceiling (-1 dBFS) leaves a clip under it exactly as the model made it
    run_ok(capsys, *common, "-o", tmp_path / "default.wav")
    np.testing.assert_array_equal(read(tmp_path / "default.wav")[0], raw)

    # a ceiling under the clip's peak: one gain for the whole clip, and the CLI says so
    ceiling = round(raw_db) - 6
    loud = [arg for arg in common if arg != "--quiet"]
    _, err = run_ok(capsys, *loud, "-o", tmp_path / "down.wav", "--peak", ceiling)
    down, _ = read(tmp_path / "down.wav")
    assert peak_db(down) == pytest.approx(ceiling, abs=1e-3)
    np.testing.assert_allclose(down, raw * 10 ** ((ceiling - raw_db) / 20), rtol=1e-5, atol=1e-9)
    assert f"turned down {raw_db - ceiling:.1f} dB to the peak ceiling" in err

    for bad in ("3", "loud", "-61"):
        code, _, err = run(capsys, *common, "-o", tmp_path / "bad.wav", "--peak", bad)
        assert_one_line_error(code, err, "--peak", "'none'")
        assert not (tmp_path / "bad.wav").exists()


def test_edit_peak_ceiling(capsys, tiny_model: Path, rate: int, tmp_path: Path) -> None:
    loud_sine = tmp_path / "loud.wav"
    sf.write(loud_sine, sine(1.0, rate, amplitude=1.0), rate, subtype="FLOAT")  # 0 dBFS
    region = ["--mask-start", 0.4, "--mask-length", 0.3, "--boundary", 0.1]
    common = ["edit", loud_sine, "a door slams", "--model", tiny_model, *region, *FAST[:2]]
    common += ["--quiet", "--seed", 0]
    # the default ceiling of an edit is full scale: a 0 dBFS input keeps its samples
    run_ok(capsys, *common, "-o", tmp_path / "kept.wav")
    kept, _ = read(tmp_path / "kept.wav")
    first, _ = edit_region(0.4, 0.3, 0.1, rate)
    np.testing.assert_array_equal(kept[:first], read(loud_sine)[0][:first])
    run_ok(capsys, *common, "-o", tmp_path / "down.wav", "--peak", -12)
    down, _ = read(tmp_path / "down.wav")
    assert peak_db(down) == pytest.approx(-12, abs=1e-3)
    np.testing.assert_allclose(
        down, kept * 10 ** ((-12 - peak_db(kept)) / 20), rtol=1e-5, atol=1e-9
    )
    code, _, err = run(capsys, *common, "-o", tmp_path / "bad.wav", "--peak", "0.5")
    assert_one_line_error(code, err, "--peak")
    assert not (tmp_path / "bad.wav").exists()


def test_same_seed_same_audio_and_printed_seed_reproduces(
    capsys, tiny_model: Path, tmp_path: Path
) -> None:
    common = ["generate", "rain on a tin roof", "--model", tiny_model, *FAST]
    run_ok(capsys, *common, "-o", tmp_path / "a.wav", "--seed", 11)
    run_ok(capsys, *common, "-o", tmp_path / "b.wav", "--seed", 11)
    run_ok(capsys, *common, "-o", tmp_path / "c.wav", "--seed", 12)
    a, b, c = (read(tmp_path / f"{n}.wav")[0] for n in "abc")
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-3

    # without --seed a random seed is used and reported; passing it back reproduces the file
    common = [c for c in common if c != "--quiet"]
    _, err = run_ok(capsys, *common, "-o", tmp_path / "random.wav")
    match = re.search(r"random\.wav \(0\.50 s, seed (\d+)\)", err)
    assert match, err
    run_ok(capsys, *common, "-o", tmp_path / "again.wav", "--seed", match.group(1), "--quiet")
    np.testing.assert_array_equal(read(tmp_path / "random.wav")[0], read(tmp_path / "again.wav")[0])


@pytest.mark.parametrize("file_format", ["wav", "flac"])
def test_prompts_file_writes_one_file_per_non_empty_line(
    capsys, tiny_model: Path, rate: int, tmp_path: Path, file_format: str
) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a dog barks\n\n   \nRain on a tin roof!\nthunder\n", encoding="utf-8")
    out_dir = tmp_path / "clips" / "batch"  # created by the command
    run_ok(
        capsys,
        "generate",
        "--prompts-file",
        prompts,
        "--out-dir",
        out_dir,
        "--format",
        file_format,
        "--batch-size",
        2,
        "--seed",
        7,
        "--model",
        tiny_model,
        *FAST,
    )
    names = ["0000_a_dog_barks", "0001_rain_on_a_tin_roof", "0002_thunder"]
    assert sorted(p.name for p in out_dir.iterdir()) == [f"{n}.{file_format}" for n in names]
    for name in names:
        info = sf.info(str(out_dir / f"{name}.{file_format}"))
        assert info.format == file_format.upper()
        assert info.samplerate == rate and info.frames == rate // 2
    if file_format == "wav":
        # line i uses seed + i: the same audio as that prompt generated alone
        for index, prompt in enumerate(["a dog barks", "Rain on a tin roof!", "thunder"]):
            alone = tmp_path / f"alone{index}.wav"
            run_ok(
                capsys,
                "generate",
                prompt,
                "-o",
                alone,
                "--seed",
                7 + index,
                "--model",
                tiny_model,
                *FAST,
            )
            batched, _ = read(out_dir / f"{names[index]}.wav")
            np.testing.assert_allclose(batched, read(alone)[0], atol=1e-5)


def test_empty_prompt_generates_unconditionally(
    capsys, tiny_model: Path, rate: int, tmp_path: Path
) -> None:
    output = tmp_path / "unconditional.wav"
    run_ok(capsys, "generate", "", "-o", output, "--model", tiny_model, *FAST, "--seed", 1)
    data, file_rate = read(output)
    assert file_rate == rate and data.shape == (rate // 2,)
    assert np.isfinite(data).all() and data.std() > 0


# -------------------------------------------------------------------- edit
def edit_region(start: float, length: float, boundary: float, rate: int) -> tuple[int, int]:
    """Samples [first, last) the edit may change (region plus the effective boundary)."""
    margin = min(boundary, length / 2)
    first = int(np.floor((start - margin) * rate)) - 1
    assert first > 0, "choose a region that leaves audio before it to compare"
    return first, int(np.ceil((start + length + margin) * rate)) + 1


def test_edit_same_rate_keeps_the_audio_outside_the_region(
    capsys, tiny_model: Path, rate: int, sine_wav: Path, tmp_path: Path
) -> None:
    output = tmp_path / "edited" / "out.wav"
    run_ok(
        capsys,
        "edit",
        sine_wav,
        "a door slams",
        "-o",
        output,
        "--model",
        tiny_model,
        "--mask-start",
        0.4,
        "--mask-length",
        0.3,
        "--boundary",
        0.1,
        "--steps",
        2,
        "--quiet",
        "--seed",
        0,
    )
    original, _ = read(sine_wav)
    edited, file_rate = read(output)
    assert file_rate == rate and edited.shape == original.shape
    first, last = edit_region(0.4, 0.3, 0.1, rate)
    np.testing.assert_array_equal(edited[:first], original[:first])
    np.testing.assert_array_equal(edited[last:], original[last:])
    region = slice(round(0.4 * rate), round(0.7 * rate))
    difference = np.abs(edited[region] - original[region])
    assert difference.max() > 1e-2 and (difference > 1e-4).mean() > 0.9


def test_edit_resamples_and_mixes_a_44k_stereo_file(
    capsys, tiny_model: Path, rate: int, tmp_path: Path
) -> None:
    source = tmp_path / "stereo44k.wav"
    stereo = np.stack([sine(1.0, 44100, 440), sine(1.0, 44100, 660, 0.3)], axis=1)
    sf.write(source, stereo, 44100, subtype="FLOAT")
    output = tmp_path / "out.wav"
    run_ok(
        capsys,
        "edit",
        source,
        "a bird chirps",
        "-o",
        output,
        "--model",
        tiny_model,
        "--mask-start",
        0.4,
        "--mask-length",
        0.3,
        "--steps",
        2,
        "--quiet",
        "--seed",
        0,
    )
    expected = soxr.resample(stereo.mean(axis=1), 44100, rate, quality="HQ").astype(np.float32)
    edited, file_rate = read(output)
    assert file_rate == rate and sf.info(str(output)).channels == 1
    assert edited.shape == expected.shape and abs(len(edited) - rate) <= 1
    first, last = edit_region(0.4, 0.3, 2.0, rate)  # default boundary 2 s -> half the region
    np.testing.assert_allclose(edited[:first], expected[:first], atol=1e-6)
    np.testing.assert_allclose(edited[last:], expected[last:], atol=1e-6)
    region = slice(round(0.4 * rate), round(0.7 * rate))
    assert np.abs(edited[region] - expected[region]).max() > 1e-2


def test_edit_past_the_end_outpaints(
    capsys, tiny_model: Path, rate: int, sine_wav: Path, tmp_path: Path
) -> None:
    output = tmp_path / "longer.wav"
    run_ok(
        capsys,
        "edit",
        sine_wav,
        "wind",
        "-o",
        output,
        "--model",
        tiny_model,
        "--mask-start",
        0.8,
        "--mask-length",
        0.5,
        "--steps",
        2,
        "--quiet",
        "--seed",
        0,
    )
    original, _ = read(sine_wav)
    edited, _ = read(output)
    assert edited.shape == (round(1.3 * rate),)
    first, _ = edit_region(0.8, 0.5, 2.0, rate)
    np.testing.assert_array_equal(edited[:first], original[:first])
    assert np.abs(edited[len(original) :]).max() > 1e-3  # the new part is generated


def test_edit_of_a_silent_file_succeeds(capsys, tiny_model: Path, rate: int, tmp_path: Path):
    source = tmp_path / "silence.wav"
    sf.write(source, np.zeros(rate, np.float32), rate, subtype="FLOAT")
    output = tmp_path / "out.wav"
    run_ok(
        capsys,
        "edit",
        source,
        "a dog barks",
        "-o",
        output,
        "--model",
        tiny_model,
        "--mask-start",
        0.3,
        "--mask-length",
        0.4,
        "--steps",
        2,
        "--quiet",
        "--seed",
        0,
    )
    edited, _ = read(output)
    assert edited.shape == (rate,) and np.isfinite(edited).all()
    first, last = edit_region(0.3, 0.4, 2.0, rate)
    assert not edited[:first].any() and not edited[last:].any()


# ----------------------------------------------------------------- convert
def check_dit_parity(folder: Path) -> None:
    model = EzAudioDiT.from_pretrained(folder)
    io = load_file(REFERENCE / "dit_small_io.safetensors")
    with torch.no_grad():
        text_to_audio = model(io["x"], io["timesteps"], io["context"], io["context_mask"])
        edit = model(
            io["x"],
            io["timesteps"],
            io["context"],
            io["context_mask"],
            gt=io["gt"],
            gt_mask=io["gt_mask"],
        )
    assert relative_error(text_to_audio, io["v_text_to_audio"]) <= TOLERANCE
    assert relative_error(edit, io["v_edit"]) <= TOLERANCE


def check_vae_parity(folder: Path) -> None:
    model = WaveformVAE.from_pretrained(folder)
    io = load_file(REFERENCE / "vae_small_io.safetensors")
    with torch.no_grad():
        encoder_out = model.encoder_output(io["audio"])
        decoded = model.decode(io["latent"])
    assert encoder_out.shape == io["encoder_out"].shape
    assert relative_error(encoder_out, io["encoder_out"]) <= TOLERANCE
    assert decoded.shape == io["decoded"].shape
    assert relative_error(decoded, io["decoded"]) <= TOLERANCE


def test_convert_reproduces_the_reference_outputs(
    capsys, official: dict[str, Path], tmp_path: Path, text_folder_32: Path
) -> None:
    output = tmp_path / "converted"
    out, _ = run_ok(
        capsys,
        "convert",
        "--dit",
        official["dit"],
        "--dit-config",
        official["dit_config"],
        "--vae",
        official["vae"],
        "--vae-config",
        official["vae_config"],
        "--text-encoder",
        text_folder_32,
        "--output",
        output,
    )
    assert "ezaudio.json" in out
    check_dit_parity(output / "dit")
    check_vae_parity(output / "vae")
    index = json.loads((output / "ezaudio.json").read_text())
    assert index["format"] == "ezaudio"
    assert index["text_encoder"] == {"path": "text_encoder"}
    assert index["sample_rate"] == 24000 and index["latent_rate"] == 24000 / 40
    assert index["components"] == {"dit": "dit", "vae": "vae"}
    # The folder is a whole model: it loads and generates through the pipeline.
    from ezaudio.pipeline import EzAudio

    pipe = EzAudio.from_pretrained(output, device="cpu")
    audio = pipe.generate("a dog", seconds=0.1, steps=2, seed=0, progress=False)
    assert audio.waveforms.shape == (1, 2400) and np.isfinite(audio.waveforms).all()


@pytest.mark.parametrize("first", ["dit", "vae"])
def test_convert_one_part_at_a_time(
    capsys, official: dict[str, Path], tmp_path: Path, first: str, text_folder_32: Path
) -> None:
    output = tmp_path / "converted"
    second = "vae" if first == "dit" else "dit"

    def part(name: str) -> list[object]:
        return [f"--{name}", official[name], f"--{name}-config", official[f"{name}_config"]]

    out, _ = run_ok(
        capsys, "convert", *part(first), "--text-encoder", text_folder_32, "--output", output
    )
    assert (output / first / "model.safetensors").is_file()
    assert not (output / second).exists() and not (output / "ezaudio.json").exists()
    assert f"no ezaudio.json yet; convert the {second}" in out
    weights_before = (output / first / "model.safetensors").read_bytes()

    # The text encoder named in the first call is remembered for the second.
    run_ok(capsys, "convert", *part(second), "--output", output)
    index = json.loads((output / "ezaudio.json").read_text())
    assert index["text_encoder"] == {"path": "text_encoder"}
    assert not (output / "text_encoder_pending.json").exists()
    assert (output / first / "model.safetensors").read_bytes() == weights_before
    check_dit_parity(output / "dit")
    check_vae_parity(output / "vae")


def test_convert_dit_needs_its_config(capsys, official: dict[str, Path], tmp_path: Path) -> None:
    output = tmp_path / "converted"
    code, _, err = run(capsys, "convert", "--dit", official["dit"], "--output", output)
    assert_one_line_error(code, err, "--dit-config")
    code, _, err = run(capsys, "convert", "--vae", official["vae"], "--output", output)
    assert_one_line_error(code, err, "--vae-config")
    code, _, err = run(capsys, "convert", "--output", output)
    assert_one_line_error(code, err, "--dit")
    assert not output.exists()


def test_convert_safetensors_with_official_names(capsys, tmp_path: Path) -> None:
    weights = load_file(REFERENCE / "dit_small_weights.safetensors")
    source = tmp_path / "official_dit.safetensors"
    save_file(weights, source)
    output = tmp_path / "converted"
    run_ok(
        capsys,
        "convert",
        "--dit",
        source,
        "--dit-config",
        REFERENCE / "dit_small_config.json",
        "--output",
        output,
    )
    native = load_file(output / "dit" / "model.safetensors")
    expected = {k.removeprefix("model."): v for k, v in weights.items() if "inv_freq" not in k}
    assert native.keys() == expected.keys()
    assert all(torch.equal(native[k], v) for k, v in expected.items())
    check_dit_parity(output / "dit")


def test_convert_missing_key_is_named_and_writes_nothing(
    capsys, official: dict[str, Path], tmp_path: Path
) -> None:
    weights = load_file(REFERENCE / "dit_small_weights.safetensors")
    del weights["model.final_block.linear.bias"]
    broken = tmp_path / "broken.pt"
    torch.save({"model": weights}, broken)
    output = tmp_path / "converted"
    code, _, err = run(
        capsys,
        "convert",
        "--dit",
        broken,
        "--dit-config",
        official["dit_config"],
        "--vae",
        official["vae"],
        "--vae-config",
        official["vae_config"],
        "--output",
        output,
    )
    assert_one_line_error(code, err, "missing keys [final_block.linear.bias]")
    assert not (output / "dit").exists() and not (output / "vae").exists()
    assert not (output / "ezaudio.json").exists()


def test_convert_refuses_a_text_encoder_of_the_wrong_width_and_writes_nothing(
    capsys, official: dict[str, Path], tmp_path: Path
) -> None:
    output = tmp_path / "converted"
    code, _, err = run(
        capsys, "convert", "--dit", official["dit"], "--dit-config", official["dit_config"],
        "--vae", official["vae"], "--vae-config", official["vae_config"],
        "--text-encoder", "minilm", "--output", output,
    )  # fmt: skip
    assert_one_line_error(code, err, "gives 384-d states, the DiT expects 32")
    assert not output.exists()


def test_convert_without_a_named_text_encoder_writes_the_parts_and_says_so(
    capsys, official: dict[str, Path], tmp_path: Path
) -> None:
    output = tmp_path / "converted"
    out, _ = run_ok(
        capsys, "convert", "--dit", official["dit"], "--dit-config", official["dit_config"],
        "--vae", official["vae"], "--vae-config", official["vae_config"], "--output", output,
    )  # fmt: skip
    assert "pass --text-encoder" in out
    assert (output / "dit" / "model.safetensors").is_file()
    assert (output / "vae" / "model.safetensors").is_file()
    assert not (output / "ezaudio.json").exists()


def garbage_bytes(size: int = 2048) -> bytes:
    return np.random.default_rng(0).integers(0, 256, size, np.uint8).tobytes()


@pytest.mark.parametrize("content", [b"", b"hello, this is not a checkpoint", garbage_bytes()])
def test_convert_unreadable_checkpoint(
    capsys, official: dict[str, Path], tmp_path: Path, content: bytes
) -> None:
    source = tmp_path / "broken_dit.pt"
    source.write_bytes(content)
    output = tmp_path / "converted"
    code, _, err = run(
        capsys, "convert", "--dit", source, "--dit-config", official["dit_config"],
        "--output", output,
    )  # fmt: skip
    assert_one_line_error(code, err, "broken_dit.pt: ")
    assert not output.exists()


def test_convert_garbage_checkpoint_is_called_corrupt(
    capsys, official: dict[str, Path], tmp_path: Path
) -> None:
    source = tmp_path / "noise.pt"
    source.write_bytes(garbage_bytes())
    code, _, err = run(
        capsys, "convert", "--dit", source, "--dit-config", official["dit_config"],
        "--output", tmp_path / "converted",
    )  # fmt: skip
    line = assert_one_line_error(code, err, "noise.pt: corrupt or unreadable")
    assert "weights_only" not in line


# -------------------------------------------------------------------- info
def parameter_count(folder: Path) -> str:
    count = sum(t.numel() for t in load_file(folder / "model.safetensors").values())
    return f"{count / 1e6:.2f} M"


def test_info_on_a_model_folder(capsys, tiny_model: Path, rate: int) -> None:
    out, _ = run_ok(capsys, "info", tiny_model, "--json")
    info = json.loads(out)
    assert info["sample_rate"] == rate
    assert info["text_encoder"]["name"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert info["dit"]["class"] == "EzAudioDiT" and info["vae"]["class"] == "WaveformVAE"
    assert info["dit"]["parameters"] == parameter_count(tiny_model / "dit")
    assert info["vae"]["parameters"] == parameter_count(tiny_model / "vae")
    dit_config = json.loads((tiny_model / "dit" / "config.json").read_text())
    assert info["dit"]["config"]["embed_dim"] == dit_config["embed_dim"]
    assert info["dit"]["dtypes"] == ["F32"]
    assert info["sampling"]["steps"] == 100

    out, _ = run_ok(capsys, "info", tiny_model)
    assert f"sample_rate: {rate}\n" in out
    assert "dit:\n" in out and "vae:\n" in out
    assert "  class: EzAudioDiT\n" in out and "  class: WaveformVAE\n" in out


def test_info_on_a_component_folder(capsys, tiny_model: Path, rate: int) -> None:
    out, _ = run_ok(capsys, "info", tiny_model / "vae", "--json")
    info = json.loads(out)
    assert info["class"] == "WaveformVAE"
    assert info["config"]["sample_rate"] == rate
    assert info["parameters"] == parameter_count(tiny_model / "vae")
    out, _ = run_ok(capsys, "info", tiny_model / "dit")
    assert out.startswith("class: EzAudioDiT\n")
    assert f"parameters: {parameter_count(tiny_model / 'dit')}\n" in out


def test_info_errors(capsys, tmp_path: Path, corrupt_model: Path) -> None:
    code, out, err = run(capsys, "info", tmp_path)
    assert_one_line_error(code, err, "neither a model folder")
    assert out == ""
    code, _, err = run(capsys, "info", tmp_path / "absent")
    assert_one_line_error(code, err, "not found")
    code, _, err = run(capsys, "info", corrupt_model / "dit")
    assert_one_line_error(code, err, "model.safetensors: corrupt or unreadable")


# -------------------------------------------------------------- bad inputs
class Context:
    """Paths a bad-input case may use; ``out`` is an empty folder that must stay empty."""

    def __init__(self, tmp_path: Path, rate: int, model: Path, corrupt: Path, misfit: Path):
        self.model, self.corrupt, self.misfit = model, corrupt, misfit
        self.out = tmp_path / "out"
        self.out.mkdir()
        inputs = tmp_path / "inputs"
        inputs.mkdir()
        self.inputs = inputs
        self.sine = inputs / "sine.wav"
        sf.write(self.sine, sine(1.0, rate), rate, subtype="FLOAT")
        self.garbage = inputs / "garbage.wav"
        self.garbage.write_bytes(
            np.random.default_rng(0).integers(0, 256, 4096, np.uint8).tobytes()
        )
        self.empty = inputs / "zero_bytes.wav"
        self.empty.write_bytes(b"")
        self.folder = inputs / "clip_dir.wav"
        self.folder.mkdir()
        self.text_file = inputs / "some_file.txt"
        self.text_file.write_text("not a folder")
        self.empty_prompts = inputs / "no_prompts.txt"
        self.empty_prompts.write_text("")
        self.blank_prompts = inputs / "blank_lines.txt"
        self.blank_prompts.write_text("\n   \n\t\n\n")
        self.prompts = inputs / "prompts.txt"
        self.prompts.write_text("a dog barks\n")

    def generate(self, *extra: object) -> list[object]:
        return [
            "generate",
            "a dog barks",
            "-o",
            self.out / "x.wav",
            "--model",
            self.model,
            *FAST,
            *extra,
        ]

    def batch(self, prompts: Path, *extra: object, out_dir: Path | None = None) -> list[object]:
        out_dir = self.out / "clips" if out_dir is None else out_dir
        return [
            "generate",
            "--prompts-file",
            prompts,
            "--out-dir",
            out_dir,
            "--model",
            self.model,
            *FAST,
            *extra,
        ]

    def edit(self, *extra: object, source: Path | None = None) -> list[object]:
        return [
            "edit",
            source or self.sine,
            "a door slams",
            "-o",
            self.out / "x.wav",
            "--model",
            self.model,
            "--steps",
            2,
            "--quiet",
            "--mask-start",
            0.2,
            "--mask-length",
            0.3,
            *extra,
        ]


Case = Callable[[Context], list[object]]

BAD_INPUTS: dict[str, tuple[Case, tuple[str, ...]]] = {
    # durations
    "seconds-zero": (lambda c: c.generate("--seconds", 0), ("--seconds", "positive")),
    "seconds-negative": (lambda c: c.generate("--seconds=-1"), ("--seconds", "positive")),
    "seconds-absurd": (lambda c: c.generate("--seconds", "1e9"), ("--seconds", "at most")),
    "seconds-nan": (lambda c: c.generate("--seconds", "nan"), ("--seconds", "finite")),
    "seconds-inf": (lambda c: c.generate("--seconds", "inf"), ("--seconds", "finite")),
    "seconds-minus-inf": (lambda c: c.generate("--seconds=-inf"), ("--seconds", "finite")),
    # sampling options
    "steps-zero": (lambda c: c.generate("--steps", 0), ("--steps",)),
    "steps-negative": (lambda c: c.generate("--steps=-3"), ("--steps",)),
    "guidance-negative": (lambda c: c.generate("--guidance-scale=-1"), ("--guidance-scale",)),
    "guidance-nan": (
        lambda c: c.generate("--guidance-scale", "nan"),
        ("--guidance-scale", "finite"),
    ),
    "guidance-inf": (
        lambda c: c.generate("--guidance-scale", "inf"),
        ("--guidance-scale", "finite"),
    ),
    "rescale-above-one": (lambda c: c.generate("--guidance-rescale", 1.5), ("--guidance-rescale",)),
    "rescale-negative": (lambda c: c.generate("--guidance-rescale=-0.1"), ("--guidance-rescale",)),
    "rescale-nan": (
        lambda c: c.generate("--guidance-rescale", "nan"),
        ("--guidance-rescale", "finite"),
    ),
    "rescale-inf": (
        lambda c: c.generate("--guidance-rescale", "inf"),
        ("--guidance-rescale", "finite"),
    ),
    "eta-nan": (lambda c: c.generate("--eta", "nan"), ("--eta", "finite")),
    "eta-inf": (lambda c: c.generate("--eta", "inf"), ("--eta", "finite")),
    "eta-above-one": (lambda c: c.generate("--eta", 2), ("--eta",)),
    "seed-negative": (lambda c: c.generate("--seed=-1"), ("--seed",)),
    "edit-guidance-nan": (
        lambda c: c.edit("--guidance-scale", "nan"),
        ("--guidance-scale", "finite"),
    ),
    "edit-eta-inf": (lambda c: c.edit("--eta", "inf"), ("--eta", "finite")),
    # edit inputs
    "edit-garbage": (lambda c: c.edit(source=c.garbage), ("garbage.wav", "cannot read audio")),
    "edit-empty-file": (lambda c: c.edit(source=c.empty), ("zero_bytes.wav", "empty")),
    "edit-folder": (lambda c: c.edit(source=c.folder), ("clip_dir.wav", "is a folder")),
    "edit-missing-file": (
        lambda c: c.edit(source=c.inputs / "absent.wav"),
        ("absent.wav", "not found"),
    ),
    "mask-start-negative": (lambda c: c.edit("--mask-start=-0.5"), ("--mask-start", "negative")),
    "mask-start-nan": (lambda c: c.edit("--mask-start", "nan"), ("--mask-start", "finite")),
    "mask-start-inf": (lambda c: c.edit("--mask-start", "inf"), ("--mask-start", "finite")),
    "mask-start-after-end": (
        lambda c: c.edit("--mask-start", 5),
        ("--mask-start", "after the end"),
    ),
    "mask-length-zero": (lambda c: c.edit("--mask-length", 0), ("--mask-length", "positive")),
    "mask-length-negative": (lambda c: c.edit("--mask-length=-1"), ("--mask-length", "positive")),
    "mask-length-nan": (lambda c: c.edit("--mask-length", "nan"), ("--mask-length", "finite")),
    "boundary-nan": (lambda c: c.edit("--boundary", "nan"), ("--boundary", "finite")),
    "boundary-negative": (lambda c: c.edit("--boundary=-1"), ("--boundary", "negative")),
    # models
    "model-missing": (
        lambda c: c.generate("--model", c.inputs / "absent_model"),
        ("absent_model", "no such folder"),
    ),
    "model-is-a-file": (
        lambda c: c.generate("--model", c.text_file),
        ("some_file.txt", "is a file"),
    ),
    "model-without-index": (lambda c: c.generate("--model", c.inputs), ("ezaudio.json",)),
    "model-corrupt": (
        lambda c: c.generate("--model", c.corrupt),
        ("model.safetensors: corrupt or unreadable",),
    ),
    "model-misfit": (lambda c: c.generate("--model", c.misfit), ("does not fit its config",)),
    "edit-model-corrupt": (
        lambda c: c.edit("--model", c.corrupt),
        ("model.safetensors: corrupt or unreadable",),
    ),
    # outputs
    "output-under-a-file": (
        lambda c: c.generate("-o", c.text_file / "x.wav"),
        ("some_file.txt", "not a folder"),
    ),
    "edit-output-under-a-file": (
        lambda c: c.edit("-o", c.text_file / "x.wav"),
        ("some_file.txt", "not a folder"),
    ),
    "output-mp3": (lambda c: c.generate("-o", c.out / "x.mp3"), ("x.mp3", ".wav or .flac")),
    "edit-output-mp3": (lambda c: c.edit("-o", c.out / "x.mp3"), ("x.mp3", ".wav or .flac")),
    "output-is-a-folder": (lambda c: c.generate("-o", c.folder), ("clip_dir.wav", "is a folder")),
    "generate-without-output": (
        lambda c: ["generate", "a dog", "--model", c.model, *FAST],
        ("-o/--output",),
    ),
    "out-dir-under-a-file": (
        lambda c: c.batch(c.prompts, out_dir=c.text_file / "clips"),
        ("some_file.txt", "cannot create folder"),
    ),
    # prompts files
    "prompts-file-empty": (
        lambda c: c.batch(c.empty_prompts),
        ("no_prompts.txt", "empty"),
    ),
    "prompts-file-blank-lines": (
        lambda c: c.batch(c.blank_prompts),
        ("blank_lines.txt", "empty"),
    ),
    "prompts-file-missing": (
        lambda c: c.batch(c.inputs / "absent.txt"),
        ("absent.txt", "not found"),
    ),
    "prompts-file-without-out-dir": (
        lambda c: ["generate", "--prompts-file", c.prompts, "--model", c.model, *FAST],
        ("--out-dir",),
    ),
    "batch-size-zero": (
        lambda c: c.batch(c.prompts, "--batch-size", 0),
        ("--batch-size",),
    ),
}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_is_one_line_exit_1_and_writes_nothing(
    capsys,
    tmp_path: Path,
    rate: int,
    tiny_model: Path,
    corrupt_model: Path,
    misfit_model: Path,
    name: str,
) -> None:
    context = Context(tmp_path, rate, tiny_model, corrupt_model, misfit_model)
    make, words = BAD_INPUTS[name]
    code, out, err = run(capsys, *make(context))
    assert_one_line_error(code, err, *words)
    assert out == ""
    assert list(context.out.iterdir()) == []  # no output file, no temporary file
    assert context.text_file.read_text() == "not a folder"  # untouched
    assert sorted(p.name for p in context.folder.iterdir()) == []


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can write")
def test_read_only_output_folder(capsys, tmp_path: Path, tiny_model: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        code, _, err = run(
            capsys, "generate", "a dog", "-o", locked / "x.wav", "--model", tiny_model, *FAST
        )
        assert_one_line_error(code, err, "locked", "not writable")
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o755)


@pytest.mark.skipif(sys.platform != "linux", reason="needs RLIMIT_FSIZE")
def test_full_disk_while_writing_is_one_line_and_leaves_nothing(
    capsys, tmp_path: Path, tiny_model: Path
) -> None:
    """libsndfile reports a full disk with its own exception type; it is a clean error too."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (10_000, hard))  # the clip needs 32 kB
    try:
        code, _, err = run(
            capsys, "generate", "a dog", "-o", tmp_path / "x.wav", "--model", tiny_model, *FAST
        )
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert_one_line_error(code, err, "x.wav", "cannot write")
    assert list(tmp_path.iterdir()) == []


# -------------------------------------------------------- version and help
def test_version_and_help(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"ezaudio {ezaudio.__version__}"
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: ezaudio")
    for command in ("generate", "edit", "convert", "info", "init"):
        assert command in out
    with pytest.raises(SystemExit) as exit_info:
        main(["edit", "--help"])
    assert exit_info.value.code == 0
    assert "--mask-start" in capsys.readouterr().out


# ------------------------------------------------------ the real console script
def console_script() -> list[str]:
    script = Path(sys.executable).with_name("ezaudio")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "ezaudio.cli"]


def test_console_script(tmp_path: Path, tiny_model: Path, rate: int) -> None:
    """The installed entry point: --version works; a bad input that fails after the model
    loads prints exactly one line (no warnings, no traceback) and exits 1."""
    version = subprocess.run(
        [*console_script(), "--version"], capture_output=True, text=True, timeout=120
    )
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"ezaudio {ezaudio.__version__}"

    source = tmp_path / "sine.wav"
    sf.write(source, sine(1.0, rate), rate, subtype="FLOAT")
    output = tmp_path / "edited.wav"
    failed = subprocess.run(
        [
            *console_script(),
            "edit",
            str(source),
            "a door slams",
            "-o",
            str(output),
            "--model",
            str(tiny_model),
            "--mask-start",
            "5",
            "--mask-length",
            "1",
            "--steps",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert failed.returncode == 1
    assert failed.stdout == ""
    assert "Traceback" not in failed.stderr
    assert_one_line_error(failed.returncode, failed.stderr, "--mask-start", "after the end")
    assert not output.exists()


def test_convert_takes_the_schedule_from_the_official_yml(
    capsys, official: dict[str, Path], tmp_path: Path, text_folder_32: Path
) -> None:
    """The yml's ``diff`` section reaches ezaudio.json and the pipeline's sampler unchanged:
    the schedule, timesteps and DDIM updates the pipeline uses match the reference."""
    import yaml

    from ezaudio.diffusion.ddim import ddim_step
    from ezaudio.pipeline import EzAudio

    full = {
        "model": json.loads((REFERENCE / "dit_small_config.json").read_text()),
        "diff": json.loads((REFERENCE / "scheduler_config.json").read_text()),
        "autoencoder": {"sr": 24000, "latent_sr": 600, "scale": 1.0, "shift": 0.0},
    }
    yml = tmp_path / "ezaudio-small.yml"
    yml.write_text(yaml.safe_dump(full))
    output = tmp_path / "converted"
    run_ok(
        capsys, "convert", "--dit", official["dit"], "--dit-config", yml,
        "--vae", official["vae"], "--vae-config", official["vae_config"],
        "--text-encoder", text_folder_32, "--output", output,
    )  # fmt: skip
    schedule = EzAudio.from_pretrained(output, device="cpu").schedule
    io = load_file(REFERENCE / "scheduler_io.safetensors")
    assert relative_error(schedule.alphas_cumprod, io["alphas_cumprod"]) <= TOLERANCE
    for steps in (25, 50, 100):
        assert torch.equal(schedule.timesteps(steps), io[f"timesteps_{steps}"])
    for index, t in enumerate(io["ddim_eta0_step_timesteps"].tolist()):
        previous = schedule.alpha_bar(schedule.previous_timestep(t, 50))
        out = ddim_step(io["model_output"], io["sample"], schedule.alpha_bar(t), previous)
        assert relative_error(out, io["ddim_eta0_prev_samples"][index]) <= TOLERANCE


def test_the_cli_starts_without_importing_torch() -> None:
    """`ezaudio --help` and input errors do not wait for torch to load."""
    code = "import sys, ezaudio.cli\nezaudio.cli.build_parser()\nprint('torch' in sys.modules)\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
    assert sorted(ezaudio.__all__) == sorted(set(ezaudio.__all__))
    for name in ezaudio.__all__:
        assert getattr(ezaudio, name) is not None


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["generate", "a dog", "-o", "x.wav", "--seconds", "-1"], "--seconds must be positive"),
        (["generate", "a dog", "-o", "x.wav", "--guidance-scale", "-2"], "--guidance-scale must"),
        (["data", "clap-filter", "m.jsonl", "--out", "f.jsonl", "--threshold", "3"],
         "--threshold must be in [-1, 1]"),
    ],
)  # fmt: skip
def test_errors_name_options_as_they_are_typed(argv, expected, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 1
    said = capsys.readouterr().err.strip()
    assert said.startswith(f"ezaudio: error: {expected}") and "\n" not in said
