"""The server's small parts on their own: the command, settings, audio I/O, spectrograms,
form values and error-field naming."""

from __future__ import annotations

import argparse
import struct
import zlib

import numpy as np
import pytest
from serve_helpers import wav_bytes

from ezaudio.errors import InvalidInputError
from ezaudio.serve import commands
from ezaudio.serve.app import field_of
from ezaudio.serve.audio_io import UndecodableAudio, decode_audio, encode_audio
from ezaudio.serve.schemas import GenerateRequest, bind_limits, form_value
from ezaudio.serve.settings import ServeSettings
from ezaudio.serve.spectrogram import encode_png, spectrogram_image, spectrogram_png
from ezaudio.validation import Limits


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    commands.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["serve", *argv])


# ---------------------------------------------------------------------- command
def test_serve_command_defaults(monkeypatch):
    monkeypatch.delenv(commands.KEY_VARIABLE, raising=False)
    args = parse()
    assert args.handler is commands.run_serve
    assert (args.host, args.port, args.model, args.device) == ("127.0.0.1", 7860, None, "auto")
    settings = commands.settings_from_args(args)
    assert settings == ServeSettings()
    assert settings.api_key is None


def test_serve_command_options_and_the_key_from_the_environment(monkeypatch):
    monkeypatch.setenv(commands.KEY_VARIABLE, "from-env")
    args = parse("--queue-size", "3", "--timeout", "9", "--max-batch", "2", "--max-upload-mb", "1")
    settings = commands.settings_from_args(args)
    assert (settings.queue_size, settings.timeout, settings.max_batch) == (3, 9.0, 2)
    assert settings.max_upload_bytes == 2**20 and settings.api_key == "from-env"
    assert commands.settings_from_args(parse("--api-key", "flag")).api_key == "flag"


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--queue-size", "0"], "queue size"),
        (["--timeout", "0"], "timeout"),
        (["--max-batch", "0"], "max batch"),
        (["--port", "70000"], "--port"),
        (["--max-upload-mb", "0"], "--max-upload-mb"),
        (["--threads", "0"], "--threads"),
        (["--api-key", " "], "API key is empty"),
    ],
)
def test_serve_command_refuses_bad_options(monkeypatch, argv, words):
    monkeypatch.delenv(commands.KEY_VARIABLE, raising=False)
    with pytest.raises(InvalidInputError, match=words):
        commands.settings_from_args(parse(*argv))


def test_serve_command_loads_the_model_and_runs_uvicorn(monkeypatch, tiny_model_dir, capsys):
    import uvicorn

    calls = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.update(app=app, **kw))
    args = parse("--model", str(tiny_model_dir), "--device", "cpu", "--host", "0.0.0.0",
                 "--port", "8123")  # fmt: skip
    monkeypatch.delenv(commands.KEY_VARIABLE, raising=False)
    args.handler(args)
    assert calls["host"] == "0.0.0.0" and calls["port"] == 8123
    assert calls["app"].state.pipeline.name == "random-tiny"
    err = capsys.readouterr().err
    assert "without an API key" in err and "http://0.0.0.0:8123/" in err


@pytest.fixture
def cli_with_serve(monkeypatch):
    """``ezaudio.cli`` with this module among its EXTENSIONS (as the lead registers it)."""
    from ezaudio import cli

    if "ezaudio.serve.commands" not in cli.EXTENSIONS:
        monkeypatch.setattr(cli, "EXTENSIONS", (*cli.EXTENSIONS, "ezaudio.serve.commands"))
    return cli


def test_ezaudio_serve_through_the_cli(cli_with_serve, capsys, monkeypatch):
    monkeypatch.delenv(commands.KEY_VARIABLE, raising=False)
    assert cli_with_serve.main(["serve", "--queue-size", "0"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == "ezaudio: error: queue size must be at least 1, got 0"
    with pytest.raises(SystemExit) as exited:
        cli_with_serve.main(["serve", "--help"])
    assert exited.value.code == 0
    assert "--api-key" in capsys.readouterr().out


def test_loopback_hosts():
    assert commands._is_loopback("127.0.0.1") and commands._is_loopback("::1")
    assert commands._is_loopback("localhost")
    assert not commands._is_loopback("0.0.0.0") and not commands._is_loopback("example.org")


# -------------------------------------------------------------------- audio I/O
def test_encode_then_decode_is_lossless_for_wav():
    wave = np.linspace(-1, 1, 1000, dtype=np.float32)
    back, rate = decode_audio(encode_audio(wave, 16000, "wav"), max_seconds=10)
    assert rate == 16000
    np.testing.assert_array_equal(back, wave)


def test_flac_is_clipped_to_24_bit_range():
    wave = np.array([0.0, 2.0, -2.0, 0.5], dtype=np.float32)
    back, _ = decode_audio(encode_audio(wave, 8000, "flac"), max_seconds=10)
    np.testing.assert_allclose(back, [0.0, 1.0, -1.0, 0.5], atol=1e-6)


def test_encode_refuses_non_finite_audio_and_unknown_formats():
    with pytest.raises(Exception, match="NaN"):
        encode_audio(np.array([np.nan], np.float32), 16000, "wav")
    with pytest.raises(InvalidInputError, match="format"):
        encode_audio(np.zeros(4, np.float32), 16000, "mp3")


def test_decode_mixes_channels_to_mono():
    import io

    import soundfile as sf

    stereo = np.stack([np.full(100, 0.2), np.full(100, 0.6)], axis=1).astype(np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, stereo, 8000, format="WAV", subtype="FLOAT")
    mono, rate = decode_audio(buffer.getvalue(), max_seconds=1)
    assert rate == 8000 and mono.shape == (100,)
    np.testing.assert_allclose(mono, 0.4, atol=1e-6)


def test_decode_refuses_garbage_and_long_claims():
    with pytest.raises(UndecodableAudio):
        decode_audio(b"RIFF" + b"\x00" * 100, max_seconds=10)
    with pytest.raises(InvalidInputError, match="at most 1 s"):
        decode_audio(wav_bytes(2.0), max_seconds=1)


# ------------------------------------------------------------------ spectrogram
def read_png(data: bytes) -> tuple[int, int, np.ndarray]:
    """Width, height and [H, W, 3] pixels of an 8-bit RGB PNG written by encode_png."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    position, chunks = 8, {}
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        (crc,) = struct.unpack(">I", data[position + 8 + length : position + 12 + length])
        assert crc == zlib.crc32(kind + body)
        chunks[kind] = chunks.get(kind, b"") + body
        position += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, colour) == (8, 2) and b"IEND" in chunks
    raw = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), np.uint8).reshape(height, -1)
    assert (raw[:, 0] == 0).all()  # no filter
    return width, height, raw[:, 1:].reshape(height, width, 3)


def test_spectrogram_png_is_a_valid_image_of_the_asked_size():
    rate = 16000
    t = np.arange(rate * 2) / rate
    tone = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    width, height, pixels = read_png(spectrogram_png(tone, rate, height=96, max_width=300))
    assert height == 96 and 200 <= width <= 300
    brightness = pixels.astype(int).sum(axis=(1, 2))
    row = int(np.argmax(brightness))  # the 1 kHz line, low frequencies at the bottom
    assert 0.2 * height < row < 0.8 * height


def test_spectrogram_of_silence_and_of_a_tiny_clip():
    assert spectrogram_image(np.zeros(16000, np.float32), 16000).shape[0] == 128
    assert spectrogram_image(np.ones(3, np.float32), 16000).shape[:2] == (128, 1)


def test_encode_png_checks_its_input():
    with pytest.raises(ValueError):
        encode_png(np.zeros((2, 2), np.uint8))
    assert read_png(encode_png(np.full((2, 3, 3), 7, np.uint8)))[2].max() == 7


# ---------------------------------------------------------------------- schemas
@pytest.mark.parametrize(
    ("text", "value"),
    [("", None), ("  ", None), ("12", 12), ("0.5", 0.5), ("1e3", 1000.0), ("abc", "abc"),
     ("nan", "nan"), (3, 3)],
)  # fmt: skip
def test_form_value(text, value):
    result = form_value(text)
    if isinstance(value, str) and value == "nan":
        assert isinstance(result, float) and np.isnan(result)
    else:
        assert result == value and type(result) is type(value)


def test_bound_models_use_the_limits_they_are_given():
    small = Limits(max_seconds=2.0, max_steps=5)
    generate, edit = bind_limits(small)
    assert generate(prompt="x", seconds=2, steps=5).steps == 5
    with pytest.raises(Exception, match="at most 2"):
        generate(prompt="x", seconds=3)
    with pytest.raises(Exception, match=r"\[1, 5\]"):
        edit(prompt="x", mask_start="0", mask_length="1", steps="6")
    assert GenerateRequest(prompt="x", seconds=30).seconds == 30  # the default limits


@pytest.mark.parametrize(
    ("message", "field"),
    [
        ("steps must be an integer in [1, 1000], got 0", "steps"),
        ("negative_prompt is longer than 2000 characters (2001)", "negative_prompt"),
        ("mask_start 2 s is after the end of the audio (1.000 s)", "mask_start"),
        ("the edit region ends 3 s past the audio; at most 60 s can be outpainted",
         "mask_length"),
        ("something else entirely", "mask_length"),
    ],
)  # fmt: skip
def test_field_of_names_the_field_a_message_is_about(message, field):
    assert field_of(message, "mask_length") == field


def test_the_web_app_files_are_in_the_package():
    """They must ship with the package (package-data), or the server has no page."""
    from ezaudio.serve.webapp import STATIC

    assert {p.name for p in STATIC.iterdir()} >= {"index.html", "app.js", "style.css"}
    html = (STATIC / "index.html").read_text()
    assert '<script src="app.js"' in html and "<script>" not in html  # no inline script
