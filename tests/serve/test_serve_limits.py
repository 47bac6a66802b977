"""Load behaviour, in-process: 413, 429 with Retry-After, the time limit, disconnects, the API
key, and batching. A :class:`GatedPipeline` holds the worker busy while the test fills the
queue; every generation is still the tiny model's real one."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import numpy as np
import pytest
from serve_helpers import FAST, read_audio_bytes, wav_bytes

from ezaudio.serve.app import create_app
from ezaudio.serve.settings import ServeSettings


def wait_until(condition, timeout: float = 30.0, message: str = "condition") -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, f"timed out waiting for {message}"
        time.sleep(0.01)


async def async_wait_until(condition, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out"
        await asyncio.sleep(0.01)


async def post_in_order(http, worker, requests: list[dict]) -> list[asyncio.Task]:
    """POST each JSON body to /v1/generate once the previous one is queued (a known order)."""
    tasks = []
    for body in requests:
        queued = worker.stats()["queued"]
        tasks.append(asyncio.create_task(http.post("/v1/generate", json=body)))
        await async_wait_until(lambda queued=queued: worker.stats()["queued"] == queued + 1)
    return tasks


def async_client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


# ---------------------------------------------------------------------------- 413
def test_json_body_over_the_limit_is_413(make_client):
    client = make_client(ServeSettings(max_json_bytes=1024))
    response = client.post("/v1/generate", json={"prompt": "x" * 2000, **FAST})
    assert response.status_code == 413
    assert response.json()["detail"] == "the request is larger than 1 KiB"


def test_upload_over_the_limit_is_413_before_decoding(make_client):
    client = make_client(ServeSettings(max_upload_bytes=2**20))
    big = wav_bytes(20.0, subtype="FLOAT")  # 1.28 MB
    assert len(big) > 2**20 + 64 * 2**10
    response = client.post(
        "/v1/edit",
        data={"prompt": "x", "mask_start": "0.1", "mask_length": "0.2"},
        files={"audio": ("big.wav", big, "audio/wav")},
    )
    assert response.status_code == 413
    assert response.json()["detail"] == "the request is larger than 1 MiB"


def test_upload_just_over_the_limit_is_413(make_client):
    """A file a little over the limit (inside the room left for form fields)."""
    client = make_client(ServeSettings(max_upload_bytes=80 * 2**10))
    clip = wav_bytes(2.0, subtype="PCM_24")  # 96 kB + header
    assert 80 * 2**10 < len(clip) < (80 + 64) * 2**10
    response = client.post(
        "/v1/edit",
        data={"prompt": "x", "mask_start": "0.1", "mask_length": "0.2"},
        files={"audio": ("a.wav", clip, "audio/wav")},
    )
    assert response.status_code == 413
    assert response.json()["detail"] == "the upload is larger than 80 KiB"


def test_chunked_upload_over_the_limit_is_413(pipeline):
    """No Content-Length: the body is counted as it arrives."""
    app = create_app(pipeline, ServeSettings(max_json_bytes=1024))

    async def scenario():
        async def chunks():
            yield b'{"prompt": "'
            for _ in range(10):
                yield b"x" * 200
            yield b'"}'

        async with async_client(app) as client:
            return await client.post(
                "/v1/generate", content=chunks(), headers={"content-type": "application/json"}
            )

    response = asyncio.run(scenario())
    assert response.status_code == 413
    app.state.worker.stop()


# --------------------------------------------------------------------------- auth
@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer wrong"}, 401),
        ({"Authorization": "Basic c2VjcmV0"}, 401),
        ({"Authorization": "secret"}, 401),
        ({"Authorization": "Bearer secret"}, 200),
        ({"Authorization": "bearer secret"}, 200),
    ],
)
def test_api_key(make_client, headers, status):
    client = make_client(ServeSettings(api_key="secret"))
    response = client.post("/v1/generate", json={"prompt": "x", **FAST}, headers=headers)
    assert response.status_code == status
    if status == 401:
        assert response.headers["www-authenticate"] == "Bearer"
        assert "API key" in response.json()["detail"]
    assert client.get("/v1/model", headers=headers).status_code == status
    edit = client.post(
        "/v1/edit", headers=headers,
        data={"prompt": "x", "mask_start": "0.1", "mask_length": "0.2", "steps": "2"},
        files={"audio": ("a.wav", wav_bytes(0.5), "audio/wav")},
    )  # fmt: skip
    assert edit.status_code == status


def test_api_key_is_checked_before_the_body(make_client):
    client = make_client(ServeSettings(api_key="secret"))
    assert client.post("/v1/generate", json={"steps": -1}).status_code == 401


def test_health_and_the_page_need_no_key(make_client):
    client = make_client(ServeSettings(api_key="secret"))
    assert client.get("/v1/health").status_code == 200
    assert client.get("/").status_code == 200
    assert client.get("/v1/model").json()["detail"].startswith("missing or wrong")


# ---------------------------------------------------------------------------- 429
def test_a_full_queue_answers_429_at_once_with_retry_after(make_client, gated):
    client = make_client(ServeSettings(queue_size=2, max_batch=1), pipe=gated)
    app = client.app
    worker = app.state.worker

    async def scenario():
        async with async_client(app) as http:
            body = {"prompt": "held", **FAST}
            running = asyncio.create_task(http.post("/v1/generate", json=body))
            await asyncio.to_thread(gated.wait_entered)  # the worker is busy now
            queued = [asyncio.create_task(http.post("/v1/generate", json=body)) for _ in range(2)]
            await async_wait_until(lambda: worker.stats()["queued"] == 2)
            started = time.monotonic()
            refused = await http.post("/v1/generate", json=body)
            refused_edit = await http.post(
                "/v1/edit",
                data={"prompt": "x", "mask_start": "0.1", "mask_length": "0.2", "steps": "2"},
                files={"audio": ("a.wav", wav_bytes(0.5), "audio/wav")},
            )
            refused_after = time.monotonic() - started
            gated.gate.set()
            answers = await asyncio.gather(running, *queued)
            return refused, refused_edit, refused_after, answers

    refused, refused_edit, refused_after, answers = asyncio.run(scenario())
    assert refused.status_code == 429 and refused_edit.status_code == 429
    assert refused_after < 2.0  # answered at once, not after the queue drained
    assert int(refused.headers["retry-after"]) >= 1
    assert "busy" in refused.json()["detail"]
    assert [answer.status_code for answer in answers] == [200, 200, 200]
    assert worker.stats()["queued"] == 0


# ---------------------------------------------------------------------- timeouts
def test_a_running_request_past_its_time_limit_is_504_and_stops_sampling(make_client):
    client = make_client(ServeSettings(timeout=1.0))
    worker = client.app.state.worker
    started = time.monotonic()
    response = client.post("/v1/generate", json={"prompt": "x", "seconds": 2, "steps": 1000})
    assert response.status_code == 504
    assert "time limit (1 s)" in response.json()["detail"]
    assert time.monotonic() - started < 5
    # The progress callback stopped the sampler: the worker is free for the next request.
    wait_until(lambda: not worker.stats()["busy"], 10)
    assert client.post("/v1/generate", json={"prompt": "y", **FAST}).status_code == 200


def test_a_queued_request_past_its_time_limit_is_504_and_never_runs(make_client, gated):
    client = make_client(ServeSettings(timeout=0.5, max_batch=1), pipe=gated)
    app = client.app

    async def scenario():
        async with async_client(app) as http:
            running = asyncio.create_task(http.post("/v1/generate", json={"prompt": "a", **FAST}))
            await asyncio.to_thread(gated.wait_entered)
            late = await http.post("/v1/generate", json={"prompt": "late", **FAST})
            gated.gate.set()
            return late, await running

    late, running = asyncio.run(scenario())
    assert late.status_code == 504
    assert running.status_code == 504  # held at the gate past its own limit too
    time.sleep(0.2)
    assert ["late"] not in gated.calls


def test_a_stream_past_its_time_limit_ends_with_an_error_event(make_client):
    client = make_client(ServeSettings(timeout=0.5))
    response = client.post(
        "/v1/generate?stream=true", json={"prompt": "x", "seconds": 2, "steps": 1000}
    )
    assert response.status_code == 200
    last = response.text.strip().split("\n\n")[-1]
    assert last.startswith("event: error")
    assert json.loads(last.split("data:", 1)[1])["status"] == 504


# ------------------------------------------------------------------- disconnects
async def call_and_disconnect(app, path: str, body: bytes, disconnect: asyncio.Event):
    """Drive the ASGI app as a server would, with a client that goes away on ``disconnect``."""
    messages: list[dict] = []
    sent_body = False

    async def receive():
        nonlocal sent_body
        if not sent_body:
            sent_body = True
            return {"type": "http.request", "body": body, "more_body": False}
        await disconnect.wait()
        return {"type": "http.disconnect"}

    async def send(message):
        messages.append(message)

    path, _, query = path.partition("?")
    scope = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1", "method": "POST", "scheme": "http", "path": path,
        "raw_path": path.encode(), "query_string": query.encode(), "root_path": "",
        "headers": [(b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()), (b"host", b"test")],
        "client": ("127.0.0.1", 50000), "server": ("test", 80),
    }  # fmt: skip
    await app(scope, receive, send)
    return messages


@pytest.mark.parametrize("stream", [False, True])
def test_a_queued_client_that_disconnects_frees_its_slot(make_client, gated, stream):
    client = make_client(ServeSettings(queue_size=1, max_batch=1), pipe=gated)
    app = client.app
    worker = app.state.worker
    body = json.dumps({"prompt": "gone", **FAST}).encode()
    path = "/v1/generate?stream=true" if stream else "/v1/generate"

    async def scenario():
        async with async_client(app) as http:
            running = asyncio.create_task(http.post("/v1/generate", json={"prompt": "a", **FAST}))
            await asyncio.to_thread(gated.wait_entered)
            disconnect = asyncio.Event()
            leaver = asyncio.create_task(call_and_disconnect(app, path, body, disconnect))
            await async_wait_until(lambda: worker.stats()["queued"] == 1)
            full = await http.post("/v1/generate", json={"prompt": "b", **FAST})
            disconnect.set()
            await asyncio.wait_for(leaver, 10)
            await async_wait_until(lambda: worker.stats()["queued"] == 0, 5)
            after = asyncio.create_task(http.post("/v1/generate", json={"prompt": "c", **FAST}))
            await async_wait_until(lambda: worker.stats()["queued"] == 1, 5)
            gated.gate.set()
            return full, await running, await after

    full, running, after = asyncio.run(scenario())
    assert full.status_code == 429  # the leaver held the only slot
    assert running.status_code == 200 and after.status_code == 200  # its slot was freed
    assert ["gone"] not in gated.calls  # and its job never ran
    assert gated.calls == [["a"], ["c"]]


def test_a_running_client_that_disconnects_stops_the_sampler(make_client):
    client = make_client(ServeSettings(timeout=60))
    app = client.app
    worker = app.state.worker
    body = json.dumps({"prompt": "long", "seconds": 2, "steps": 1000}).encode()

    async def scenario():
        disconnect = asyncio.Event()
        leaver = asyncio.create_task(call_and_disconnect(app, "/v1/generate", body, disconnect))
        await async_wait_until(lambda: worker.stats()["running"] == 1, 20)
        await asyncio.sleep(0.3)  # some steps in
        disconnect.set()
        started = time.monotonic()
        await asyncio.wait_for(leaver, 10)
        await async_wait_until(lambda: not worker.stats()["busy"], 10)
        return time.monotonic() - started

    stopped_after = asyncio.run(scenario())
    assert stopped_after < 5  # 1000 steps would take far longer
    assert client.post("/v1/generate", json={"prompt": "next", **FAST}).status_code == 200


# ---------------------------------------------------------------------- batching
def test_compatible_requests_are_batched_and_match_single_runs(make_client, gated, pipeline):
    client = make_client(ServeSettings(max_batch=4), pipe=gated)
    app = client.app
    worker = app.state.worker
    prompts = ["a dog barks", "rain on a roof", "a bell rings"]

    async def scenario():
        async with async_client(app) as http:
            first = asyncio.create_task(http.post("/v1/generate", json={"prompt": "x", **FAST}))
            await asyncio.to_thread(gated.wait_entered)
            # The odd one out arrives second: the batch skips it.
            bodies = [{"prompt": p, **FAST} for p in prompts]
            bodies.insert(1, {"prompt": "odd", "seconds": 0.25, "steps": 2})
            tasks = await post_in_order(http, worker, bodies)
            gated.gate.set()
            answers = await asyncio.gather(*tasks)
            return await first, [answers[0], *answers[2:]], answers[1]

    first, same, other = asyncio.run(scenario())
    assert first.headers["x-batch-size"] == "1" and other.headers["x-batch-size"] == "1"
    assert [r.headers["x-batch-size"] for r in same] == ["3", "3", "3"]
    seeds = [int(r.headers["x-seed"]) for r in same]
    assert seeds == [seeds[0], seeds[0] + 1, seeds[0] + 2]
    assert gated.calls == [["x"], prompts, ["odd"]]
    for prompt, response, seed in zip(prompts, same, seeds):
        wave, _ = read_audio_bytes(response.content)
        alone = pipeline.generate(prompt, seed=seed, progress=False, **FAST).waveforms[0]
        np.testing.assert_allclose(wave, alone, rtol=0, atol=1e-5)


def test_a_request_with_its_own_seed_joins_only_where_its_seed_is_next(make_client, gated):
    client = make_client(ServeSettings(max_batch=4), pipe=gated)
    app = client.app
    worker = app.state.worker

    async def scenario():
        async with async_client(app) as http:
            first = asyncio.create_task(http.post("/v1/generate", json={"prompt": "x", **FAST}))
            await asyncio.to_thread(gated.wait_entered)
            bodies = [{"prompt": p, "seed": s, **FAST} for p, s in (("s10", 10), ("s50", 50),
                                                                      ("s11", 11))]  # fmt: skip
            tasks = await post_in_order(http, worker, bodies)
            gated.gate.set()
            return await first, await asyncio.gather(*tasks)

    _, answers = asyncio.run(scenario())
    assert [r.headers["x-seed"] for r in answers] == ["10", "50", "11"]
    assert [r.headers["x-batch-size"] for r in answers] == ["2", "1", "2"]
    assert gated.calls[1:] == [["s10", "s11"], ["s50"]]


def test_edits_are_never_batched(make_client, gated):
    client = make_client(ServeSettings(max_batch=4), pipe=gated)
    app = client.app
    worker = app.state.worker
    form = {"prompt": "x", "mask_start": "0.1", "mask_length": "0.2", "steps": "2"}

    async def scenario():
        async with async_client(app) as http:
            first = asyncio.create_task(http.post("/v1/generate", json={"prompt": "x", **FAST}))
            await asyncio.to_thread(gated.wait_entered)
            edits = [
                asyncio.create_task(http.post(
                    "/v1/edit", data=form, files={"audio": ("a.wav", wav_bytes(0.5), "audio/wav")}
                ))
                for _ in range(2)
            ]  # fmt: skip
            await async_wait_until(lambda: worker.stats()["queued"] == 2)
            gated.gate.set()
            return await first, await asyncio.gather(*edits)

    _, edits = asyncio.run(scenario())
    assert [r.status_code for r in edits] == [200, 200]
    assert [r.headers["x-batch-size"] for r in edits] == ["1", "1"]


# ---------------------------------------------------------------------- shutdown
def test_shutdown_answers_waiting_requests(pipeline, gated):
    app = create_app(gated, ServeSettings())
    worker = app.state.worker

    async def scenario():
        async with async_client(app) as http:
            running = asyncio.create_task(http.post("/v1/generate", json={"prompt": "a", **FAST}))
            await asyncio.to_thread(gated.wait_entered)
            queued = asyncio.create_task(http.post("/v1/generate", json={"prompt": "b", **FAST}))
            await async_wait_until(lambda: worker.stats()["queued"] == 1)
            stopper = asyncio.create_task(asyncio.to_thread(worker.stop, 10))
            await async_wait_until(lambda: queued.done())
            gated.gate.set()
            await stopper
            return await running, await queued

    running, queued = asyncio.run(scenario())
    assert queued.status_code == 503 and running.status_code == 503
    assert not worker.stats()["worker_alive"]


# ------------------------------------------------------------------------ errors
class FailingOnce:
    """The real pipeline, whose first generate call fails unexpectedly."""

    def __init__(self, pipeline) -> None:
        self._pipeline = pipeline
        self.failed = False

    def __getattr__(self, name):
        return getattr(self._pipeline, name)

    def generate(self, *args, **kwargs):
        if not self.failed:
            self.failed = True
            raise RuntimeError("/secret/path/model.bin exploded")
        return self._pipeline.generate(*args, **kwargs)


def test_an_unexpected_failure_is_500_without_internals_and_the_worker_goes_on(
    make_client, pipeline, caplog
):
    client = make_client(pipe=FailingOnce(pipeline))
    with caplog.at_level("ERROR", logger="ezaudio.serve"):
        response = client.post("/v1/generate", json={"prompt": "x", **FAST})
    assert response.status_code == 500
    assert response.json()["detail"] == "generation failed (RuntimeError); see the server's log"
    assert "exploded" in caplog.text  # the traceback is in the server's log
    assert client.post("/v1/generate", json={"prompt": "x", **FAST}).status_code == 200
