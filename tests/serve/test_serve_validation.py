"""Every input rule: 422 with the field named in ``loc`` and the shared rule's own message.

The expected messages come from calling :mod:`ezaudio.validation` directly, so these tests
fail if the server ever grows its own copy of a rule that drifts from the library's.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf
from serve_helpers import FAST, wav_bytes

from ezaudio.errors import InvalidInputError
from ezaudio.serve.settings import ServeSettings
from ezaudio.validation import (
    LIMITS,
    check_edit_region,
    check_eta,
    check_guidance_rescale,
    check_guidance_scale,
    check_prompts,
    check_seconds,
    check_seed,
    check_steps,
)


def rule(check, *args, **kwargs) -> str:
    """The message the shared rule gives for these arguments."""
    with pytest.raises(InvalidInputError) as raised:
        check(*args, **kwargs)
    return str(raised.value)


def assert_422(response, field: str, message: str | None = None) -> dict:
    assert response.status_code == 422, response.text
    body = response.json()
    errors = [item for item in body["detail"] if item["loc"][-1] == field]
    assert errors, f"{field} not named in {body['detail']}"
    if message is not None:
        assert errors[0]["msg"] == message
        assert message in body["message"]
    return errors[0]


LONG = "x" * (LIMITS.max_prompt_chars + 1)

# (field, JSON value, the shared rule's message for it)
GENERATE_CASES = [
    ("prompt", 5, "prompt must be a string"),
    ("prompt", ["a", "b"], "prompt must be a string"),
    ("prompt", LONG, rule(check_prompts, LONG)),
    ("negative_prompt", 3, "negative_prompt must be a string"),
    ("negative_prompt", LONG, rule(check_prompts, LONG, name="negative_prompt")),
    ("seconds", 0, rule(check_seconds, 0)),
    ("seconds", -1.5, rule(check_seconds, -1.5)),
    ("seconds", LIMITS.max_seconds + 1, rule(check_seconds, LIMITS.max_seconds + 1)),
    ("seconds", "2", rule(check_seconds, "2")),
    ("seconds", True, rule(check_seconds, True)),
    ("steps", 0, rule(check_steps, 0)),
    ("steps", LIMITS.max_steps + 1, rule(check_steps, LIMITS.max_steps + 1)),
    ("steps", 2.5, rule(check_steps, 2.5)),
    ("steps", "4", rule(check_steps, "4")),
    ("steps", True, rule(check_steps, True)),
    ("guidance_scale", -0.5, rule(check_guidance_scale, -0.5)),
    ("guidance_scale", 100.5, rule(check_guidance_scale, 100.5)),
    ("guidance_scale", "high", rule(check_guidance_scale, "high")),
    ("guidance_rescale", -0.1, rule(check_guidance_rescale, -0.1)),
    ("guidance_rescale", 1.5, rule(check_guidance_rescale, 1.5)),
    ("eta", -0.1, rule(check_eta, -0.1)),
    ("eta", 2, rule(check_eta, 2)),
    ("seed", -1, rule(check_seed, -1)),
    ("seed", 2**63, rule(check_seed, 2**63)),
    ("seed", 1.5, rule(check_seed, 1.5)),
    ("seed", "7", rule(check_seed, "7")),
    ("seed", True, rule(check_seed, True)),
    ("format", "mp3", None),
    ("output_path", "/etc/passwd", None),
]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    GENERATE_CASES,
    ids=[f"{c[0]}={c[1]!r:.12}" for c in GENERATE_CASES],
)
def test_generate_rule(client, field, value, message):
    body = {"prompt": "a dog", **FAST, field: value}
    assert_422(client.post("/v1/generate", json=body), field, message)


@pytest.mark.parametrize("field", ["seconds", "guidance_scale", "eta"])
@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_generate_rule_non_finite_numbers(client, field, literal):
    """Python's JSON reader accepts NaN/Infinity; the shared rule refuses them."""
    raw = f'{{"prompt": "x", "steps": 2, "{field}": {literal}}}'
    response = client.post(
        "/v1/generate", content=raw, headers={"content-type": "application/json"}
    )
    error = assert_422(response, field)
    assert error["msg"].startswith(f"{field} must be a finite number")


def test_generate_needs_a_prompt_and_a_json_object(client):
    assert_422(client.post("/v1/generate", json={"steps": 2}), "prompt")
    response = client.post(
        "/v1/generate", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422


def test_several_bad_fields_are_all_named(client):
    response = client.post("/v1/generate", json={"prompt": "x", "steps": 0, "seed": -1, "eta": 9})
    named = {item["loc"][-1] for item in response.json()["detail"]}
    assert response.status_code == 422 and named == {"steps", "seed", "eta"}


def test_null_means_the_model_default(client):
    body = {"prompt": "x", "seconds": 0.25, "steps": 2, "seed": None, "eta": None}
    assert client.post("/v1/generate", json=body).status_code == 200


# ------------------------------------------------------------------------- edit
def edit(client, audio: bytes | None = None, **fields):
    data = {"prompt": "rain", "mask_start": "0.2", "mask_length": "0.3", "steps": "2"}
    data.update({k: str(v) for k, v in fields.items() if v is not None})
    for name in [k for k, v in fields.items() if v is None]:
        data.pop(name)
    files = {"audio": ("clip.wav", wav_bytes(1.0) if audio is None else audio, "audio/wav")}
    return client.post("/v1/edit", data=data, files=files)


def region_rule(name: str, value: float, duration: float = math.inf) -> str:
    region = {"mask_start": 0.0, "mask_length": 1.0, "boundary": 0.0, name: value}
    return rule(check_edit_region, *region.values(), duration)


EDIT_CASES = [
    ("mask_start", "-1", region_rule("mask_start", -1.0)),
    ("mask_start", "abc", rule(check_edit_region, "abc", 1.0, 0.0, 1.0)),
    ("mask_start", "nan", region_rule("mask_start", math.nan)),
    ("mask_length", "0", region_rule("mask_length", 0.0)),
    ("mask_length", "-0.5", region_rule("mask_length", -0.5)),
    (
        "mask_length",
        str(LIMITS.max_seconds + 1),
        region_rule("mask_length", LIMITS.max_seconds + 1),
    ),
    ("mask_length", "inf", region_rule("mask_length", math.inf)),
    ("boundary", "-0.5", region_rule("boundary", -0.5)),
    ("steps", "0", rule(check_steps, 0)),
    ("steps", "two", rule(check_steps, "two")),
    ("guidance_scale", "-1", rule(check_guidance_scale, -1)),
    ("guidance_rescale", "2", rule(check_guidance_rescale, 2)),
    ("eta", "1.5", rule(check_eta, 1.5)),
    ("seed", "1.5", rule(check_seed, 1.5)),
    ("seed", "-3", rule(check_seed, -3)),
    ("prompt", LONG, rule(check_prompts, LONG)),
    ("format", "ogg", None),
]


@pytest.mark.parametrize(
    ("field", "value", "message"), EDIT_CASES, ids=[f"{c[0]}={c[1]:.12}" for c in EDIT_CASES]
)
def test_edit_rule(client, field, value, message):
    assert_422(edit(client, **{field: value}), field, message)


@pytest.mark.parametrize("field", ["prompt", "mask_start", "mask_length"])
def test_edit_required_fields(client, field):
    assert_422(edit(client, **{field: None}), field)


def test_edit_region_is_checked_against_the_uploaded_audio(client):
    # A region that starts after the end of a 1 s clip.
    message = rule(check_edit_region, 1.5, 0.3, 2.0, 1.0)
    assert_422(edit(client, mask_start="1.5"), "mask_start", message)


def test_edit_region_shorter_than_a_latent_frame_is_refused_by_the_pipeline(client, pipeline):
    error = assert_422(edit(client, mask_length="0.001"), "mask_length")
    assert "latent frame" in error["msg"]
    stream = client.post(
        "/v1/edit?stream=true",
        data={"prompt": "x", "mask_start": "0.2", "mask_length": "0.001", "steps": "2"},
        files={"audio": ("a.wav", wav_bytes(1.0), "audio/wav")},
    )
    assert stream.status_code == 200  # accepted into the queue; the pipeline refuses it
    assert "event: error" in stream.text and '"field":"mask_length"' in stream.text


# ------------------------------------------------------------------------ audio
def test_edit_needs_an_audio_file(client):
    response = client.post(
        "/v1/edit", data={"prompt": "x", "mask_start": "0.1", "mask_length": "0.2"}
    )
    assert_422(response, "audio")


def test_undecodable_audio_is_415(client):
    response = edit(client, audio=b"this is not audio at all" * 10)
    assert response.status_code == 415
    assert "cannot decode" in response.json()["detail"]


def test_empty_audio_is_422(client):
    error = assert_422(edit(client, audio=b""), "audio")
    assert "empty" in error["msg"]


def test_audio_with_no_samples_is_422(client):
    assert_422(edit(client, audio=wav_bytes(0.0)), "audio")


def test_audio_with_nan_samples_is_422(client):
    import io

    buffer = io.BytesIO()
    wave = np.full(8000, np.nan, dtype=np.float32)
    sf.write(buffer, wave, 16000, format="WAV", subtype="FLOAT")
    error = assert_422(edit(client, audio=buffer.getvalue()), "audio")
    assert "NaN" in error["msg"]


def test_audio_longer_than_the_limit_is_422_before_decoding(make_client):
    client = make_client(ServeSettings(max_audio_seconds=2.0))
    error = assert_422(edit(client, audio=wav_bytes(3.0)), "audio")
    assert "at most 2 s" in error["msg"]
    assert edit(client, audio=wav_bytes(1.5)).status_code == 200
