"""Every endpoint of the HTTP API, in-process (FastAPI's TestClient), on the tiny model."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from serve_helpers import FAST, SlowSteps, read_audio_bytes, wav_bytes

from ezaudio.serve.settings import ServeSettings


def events(text: str) -> list[tuple[str, dict]]:
    """Parse a server-sent event stream into (event, data) pairs (comments skipped)."""
    parsed = []
    for block in text.strip().split("\n\n"):
        lines = [line for line in block.splitlines() if not line.startswith(":")]
        if not lines:
            continue
        name = next(line[6:].strip() for line in lines if line.startswith("event:"))
        data = "".join(line[5:].strip() for line in lines if line.startswith("data:"))
        parsed.append((name, json.loads(data)))
    return parsed


# ------------------------------------------------------------------ health/model
def test_health_reports_the_queue(client):
    response = client.get("/v1/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["worker_alive"] is True
    assert body["queued"] == 0 and body["running"] == 0 and body["queue_size"] == 16


def test_model_describes_what_is_loaded(client, pipeline):
    body = client.get("/v1/model").json()
    assert body["name"] == pipeline.name == "random-tiny"
    assert body["sample_rate"] == pipeline.sample_rate == 16000
    assert body["device"] == "cpu" and body["dtype"] == "float32"
    assert body["defaults"]["steps"] == pipeline.sampling.steps
    limits = body["limits"]
    assert limits["max_seconds"] == pipeline.limits.max_seconds
    assert limits["max_steps"] == pipeline.limits.max_steps
    assert limits["max_upload_bytes"] == ServeSettings().max_upload_bytes
    assert body["queue"] == {"queue_size": 16, "max_batch": 4}
    assert body["formats"] == ["wav", "flac"] and body["api_key_required"] is False


# --------------------------------------------------------------------- generate
def test_generate_returns_wav_with_seed_and_timing_headers(client, pipeline):
    response = client.post("/v1/generate", json={"prompt": "a dog barks", "seed": 11, **FAST})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "audio/wav"
    assert response.headers["x-seed"] == "11"
    assert response.headers["x-sample-rate"] == "16000"
    assert response.headers["x-batch-size"] == "1"
    for name in ("x-queue-seconds", "x-run-seconds", "x-total-seconds"):
        assert float(response.headers[name]) >= 0
    assert "run;dur=" in response.headers["server-timing"]
    wave, rate = read_audio_bytes(response.content)
    assert rate == 16000 and wave.shape == (8000,)
    # The same audio as the library with the same settings (float32 WAV is lossless).
    expected = pipeline.generate("a dog barks", seed=11, progress=False, **FAST).waveforms[0]
    np.testing.assert_allclose(wave, expected, rtol=0, atol=1e-6)


class LoudPipeline:
    """The real pipeline with its output 100x louder (peaks far above full scale)."""

    def __init__(self, pipeline) -> None:
        self._pipeline = pipeline

    def __getattr__(self, name: str):
        return getattr(self._pipeline, name)

    def generate(self, prompt, **kwargs):
        output = self._pipeline.generate(prompt, **kwargs)
        output.waveforms = output.waveforms * 100.0
        return output

    def edit(self, audio, prompt, **kwargs):
        output = self._pipeline.edit(audio, prompt, **kwargs)
        output.waveforms = output.waveforms * 100.0
        return output


def test_loud_clips_are_turned_down_under_the_ceiling_as_the_cli_does(make_client, pipeline):
    client = make_client(pipe=LoudPipeline(pipeline))
    response = client.post("/v1/generate", json={"prompt": "a dog barks", "seed": 11, **FAST})
    assert response.status_code == 200, response.text
    wave, _ = read_audio_bytes(response.content)
    expected = pipeline.generate("a dog barks", seed=11, progress=False, **FAST).waveforms[0]
    peak = np.abs(wave).max()
    assert 20 * np.log10(peak) == pytest.approx(-1.0, abs=1e-3)  # ezaudio generate's ceiling
    np.testing.assert_allclose(
        wave, expected * (peak / np.abs(expected).max()), rtol=1e-4, atol=1e-6
    )
    response = client.post(
        "/v1/edit", data={"prompt": "a door slams", "mask_start": "0.25", "mask_length": "0.5",
                          "steps": "2", "seed": "5"},
        files={"audio": ("clip.wav", wav_bytes(1.0), "audio/wav")},
    )  # fmt: skip
    assert response.status_code == 200, response.text
    edited, _ = read_audio_bytes(response.content)
    assert 20 * np.log10(np.abs(edited).max()) == pytest.approx(0.0, abs=1e-3)  # ezaudio edit's


def test_generate_flac_and_a_random_seed_that_reproduces(client):
    first = client.post("/v1/generate", json={"prompt": "rain", "format": "flac", **FAST})
    assert first.status_code == 200 and first.headers["content-type"] == "audio/flac"
    assert first.content[:4] == b"fLaC"
    seed = int(first.headers["x-seed"])
    again = client.post("/v1/generate", json={"prompt": "rain", "format": "flac", "seed": seed,
                                              **FAST})  # fmt: skip
    assert again.content == first.content


def test_generate_uses_the_model_defaults_for_missing_options(client, pipeline):
    response = client.post("/v1/generate", json={"prompt": "", "steps": 2, "seconds": 0.25})
    assert response.status_code == 200  # empty prompt: unconditional
    wave, _ = read_audio_bytes(response.content)
    assert wave.shape == (4000,)


def test_generate_stream_follows_the_steps_then_sends_the_audio(make_client, pipeline):
    client = make_client(pipe=SlowSteps(pipeline, delay=0.05))  # 8 steps: 0.4 s or more
    response = client.post(
        "/v1/generate?stream=true", json={"prompt": "birds", "seconds": 0.5, "steps": 8, "seed": 3}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    parsed = events(response.text)
    kinds = [name for name, _ in parsed]
    assert kinds[-1] == "done" and set(kinds[:-1]) == {"progress"}
    # Progress is sampled every 0.1 s: several steps are seen, only going up, then the
    # report of the finished sampling.
    steps = [data["step"] for name, data in parsed if data.get("state") == "running"]
    assert len(steps) >= 2 and steps == sorted(steps) and steps[-1] > 0
    assert all(data["steps"] == 8 for _, data in parsed[:-1])
    assert parsed[-2][1] == {"state": "encoding", "step": 8, "steps": 8}
    done = parsed[-1][1]
    assert done["seed"] == 3 and done["seconds"] == 0.5 and done["media_type"] == "audio/wav"
    wave, rate = read_audio_bytes(base64.b64decode(done["audio"]))
    assert rate == 16000 and wave.shape == (8000,)
    assert done["spectrogram"].startswith("data:image/png;base64,")
    assert base64.b64decode(done["spectrogram"].split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(done["timings"]) == {"queue", "run", "encode", "total"}


# ------------------------------------------------------------------------- edit
def test_edit_returns_the_whole_clip_with_the_region_replaced(client, pipeline):
    clip = wav_bytes(1.0)
    response = client.post(
        "/v1/edit",
        data={"prompt": "a door slams", "mask_start": "0.25", "mask_length": "0.5",
              "boundary": "0.1", "steps": "2", "seed": "5"},
        files={"audio": ("clip.wav", clip, "audio/wav")},
    )  # fmt: skip
    assert response.status_code == 200, response.text
    assert response.headers["x-seed"] == "5" and response.headers["content-type"] == "audio/wav"
    edited, rate = read_audio_bytes(response.content)
    original, _ = read_audio_bytes(clip)
    assert rate == 16000 and edited.shape == original.shape
    # Outside [start - boundary, end + boundary] the input comes back unchanged.
    np.testing.assert_array_equal(edited[:2000], original[:2000])
    np.testing.assert_array_equal(edited[14000:], original[14000:])
    assert not np.allclose(edited[4000:12000], original[4000:12000])
    expected = pipeline.edit(original, "a door slams", 0.25, 0.5, boundary=0.1, sample_rate=rate,
                             steps=2, seed=5, progress=False).waveforms[0]  # fmt: skip
    np.testing.assert_allclose(edited, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize(("fmt", "subtype"), [("FLAC", "PCM_16"), ("OGG", "VORBIS")])
def test_edit_accepts_compressed_uploads_at_other_rates(client, fmt, subtype):
    clip = wav_bytes(1.0, rate=22050, fmt=fmt, subtype=subtype)
    response = client.post(
        "/v1/edit",
        data={"prompt": "rain", "mask_start": "0.2", "mask_length": "0.3", "steps": "2",
              "format": "flac"},
        files={"audio": ("clip.bin", clip, "application/octet-stream")},
    )  # fmt: skip
    assert response.status_code == 200, response.text
    edited, rate = read_audio_bytes(response.content)
    assert rate == 16000 and abs(len(edited) - 16000) <= 1  # resampled to the model's rate


def test_edit_stream_carries_both_spectrograms(client):
    response = client.post(
        "/v1/edit?stream=true",
        data={"prompt": "rain", "mask_start": "0.2", "mask_length": "0.3", "steps": "3"},
        files={"audio": ("clip.wav", wav_bytes(1.0), "audio/wav")},
    )
    assert response.status_code == 200
    name, done = events(response.text)[-1]
    assert name == "done"
    assert done["original_spectrogram"].startswith("data:image/png;base64,")
    assert done["spectrogram"] != done["original_spectrogram"]


# ------------------------------------------------------------------ web app/docs
def test_the_web_app_is_served_at_the_root_with_a_strict_policy(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'id="gen-form"' in page.text and 'id="edit-form"' in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    for asset, kind in (("/app.js", "javascript"), ("/style.css", "text/css")):
        response = client.get(asset)
        assert response.status_code == 200 and kind in response.headers["content-type"]
    assert client.get("/../pyproject.toml").status_code == 404
    assert client.get("/%2e%2e/app.py").status_code == 404


def test_openapi_documents_every_endpoint_and_field(client):
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    assert {"/v1/generate", "/v1/edit", "/v1/health", "/v1/model"} <= set(paths)
    generate = paths["/v1/generate"]["post"]
    assert {"200", "413", "422", "429", "504"} <= set(generate["responses"])
    assert "415" in paths["/v1/edit"]["post"]["responses"]
    fields = schema["components"]["schemas"]["GenerateRequest"]["properties"]
    assert set(fields) == {"prompt", "negative_prompt", "seconds", "steps", "guidance_scale",
                           "guidance_rescale", "eta", "seed", "format"}  # fmt: skip
    assert "60" in fields["seconds"]["description"]  # the loaded model's limit
    edit_fields = schema["components"]["schemas"]["EditOptions"]["properties"]
    assert {"mask_start", "mask_length", "boundary"} <= set(edit_fields)
    assert client.get("/docs").status_code == 200


def test_no_request_field_names_a_path(client):
    """Unknown JSON fields are refused, and no field is ever used as a file name."""
    response = client.post("/v1/generate", json={"prompt": "x", "output": "/tmp/x.wav", **FAST})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "output"]
    # The upload's own file name is ignored: a hostile one changes nothing.
    response = client.post(
        "/v1/edit",
        data={"prompt": "x", "mask_start": "0.1", "mask_length": "0.2", "steps": "2"},
        files={"audio": ("../../../../etc/passwd", wav_bytes(0.5), "audio/wav")},
    )
    assert response.status_code == 200
    assert "passwd" not in response.headers["content-disposition"]
