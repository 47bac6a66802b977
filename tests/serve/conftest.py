"""Fixtures of the server tests: a tiny random model made with ``ezaudio init``, apps over it,
and a pipeline whose calls can be held back to fill the queue on purpose."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed")
pytest.importorskip("httpx", reason="httpx (the test client) is not installed")

import httpx
from fastapi.testclient import TestClient
from serve_helpers import FAST, GatedPipeline
from serve_load import start_server

from ezaudio.cli import main
from ezaudio.serve.app import create_app
from ezaudio.serve.settings import ServeSettings


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random tiny model folder, written by ``ezaudio init`` (16 kHz)."""
    folder = tmp_path_factory.mktemp("serve-models") / "tiny"
    assert main(["init", "--output", str(folder)]) == 0
    return folder


@pytest.fixture(scope="session")
def pipeline(tiny_model_dir: Path):
    """The tiny model loaded once, warmed up by one generation. Do not mutate."""
    from ezaudio.pipeline import EzAudio

    pipe = EzAudio.from_pretrained(tiny_model_dir, device="cpu")
    pipe.generate("warm up", progress=False, **FAST)
    return pipe


@pytest.fixture
def gated(pipeline) -> Iterator[GatedPipeline]:
    gate = GatedPipeline(pipeline)
    yield gate
    gate.gate.set()  # never leave a worker waiting


@pytest.fixture
def make_client(pipeline) -> Iterator[Callable[..., TestClient]]:
    """``make_client(settings=None, pipe=None)``: a started TestClient (worker running)."""
    clients: list[TestClient] = []

    def make(settings: ServeSettings | None = None, pipe: Any = None) -> TestClient:
        client = TestClient(create_app(pipe or pipeline, settings))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client) -> TestClient:
    return make_client()


# ------------------------------------------------------- a real server on loopback
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def server(tiny_model_dir, tmp_path_factory) -> Iterator[tuple[str, int]]:
    """(base URL, pid) of a running server: queue 16, batches of 4, 60 s limit, one model
    thread (on a busy 2-core machine more threads make every round erratic)."""
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    process = start_server(
        tiny_model_dir, port, "--queue-size", "16", "--max-batch", "4", "--timeout", "60",
        "--threads", "1", log=log,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        if process.poll() is not None:
            output = log.read_text(errors="replace")
            pytest.fail(f"the server exited ({process.returncode}): {output[-2000:]}")
        try:
            if httpx.get(url + "/v1/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "the server did not start within 120 s"
        time.sleep(0.2)
    # Warm up: the first generation pays for lazy initialisation.
    httpx.post(url + "/v1/generate", json={"prompt": "warm", "seconds": 0.5, "steps": 2},
               timeout=60)  # fmt: skip
    yield url, process.pid
    process.terminate()
    try:
        process.wait(20)
    except Exception:  # pragma: no cover
        process.kill()
