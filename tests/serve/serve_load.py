"""A loopback load test of ``ezaudio serve``: rounds of concurrent clients, each request
answered with audio or 429, none hanging, none lost; the server's RSS read after each round.

Used by tests/serve/test_serve_loopback.py, and runnable on its own against a server that
is already up (the numbers in docs/serving.md come from here)::

    python tests/serve/serve_load.py --url http://127.0.0.1:7860 --pid PID --clients 32 --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf

REQUEST = {"prompt": "a dog barks", "seconds": 0.5, "steps": 4}
EDIT = {"prompt": "a door slams", "mask_start": "0.2", "mask_length": "0.4", "steps": "4"}


@dataclass
class Round:
    """What one round of concurrent requests got."""

    sent: int = 0
    audio: int = 0
    busy: int = 0  # 429
    other: list[str] = field(default_factory=list)  # anything else: a failure
    latencies: list[float] = field(default_factory=list)  # of requests answered with audio
    busy_latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0
    rss_mib: float | None = None


def rss_mib(pid: int) -> float | None:
    """Resident memory of ``pid`` in MiB (Linux), or None where /proc is missing."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def clip_bytes(seconds: float = 1.0, rate: int = 16000) -> bytes:
    t = np.arange(round(seconds * rate)) / rate
    buffer = io.BytesIO()
    sf.write(buffer, (0.4 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), rate, format="WAV")
    return buffer.getvalue()


async def one_request(
    http: httpx.AsyncClient, index: int, result: Round, clip: bytes, timeout: float
) -> None:
    started = time.monotonic()
    try:
        if index % 4 == 3:  # every fourth client edits
            response = await http.post(
                "/v1/edit", data=EDIT, files={"audio": ("clip.wav", clip, "audio/wav")},
                timeout=timeout,
            )  # fmt: skip
        else:
            response = await http.post("/v1/generate", json=REQUEST, timeout=timeout)
    except httpx.HTTPError as error:  # a hang shows up here as a timeout
        result.other.append(f"{type(error).__name__}: {error}")
        return
    elapsed = time.monotonic() - started
    if response.status_code == 200:
        wave, rate = sf.read(io.BytesIO(response.content), dtype="float32")
        expected = 8000 if index % 4 != 3 else 16000
        if rate != 16000 or len(wave) != expected or "x-seed" not in response.headers:
            result.other.append(f"bad audio: {rate} Hz, {len(wave)} samples")
            return
        result.audio += 1
        result.latencies.append(elapsed)
    elif response.status_code == 429 and int(response.headers.get("retry-after", "0")) >= 1:
        result.busy += 1
        result.busy_latencies.append(elapsed)
    else:
        result.other.append(f"HTTP {response.status_code}: {response.text[:200]}")


async def run_rounds(
    url: str, pid: int | None, clients: int = 32, rounds: int = 5, timeout: float = 120.0
) -> list[Round]:
    """``rounds`` rounds of ``clients`` simultaneous requests (a quarter of them edits)."""
    clip = clip_bytes()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    results = []
    async with httpx.AsyncClient(base_url=url, limits=limits) as http:
        for _ in range(rounds):
            result = Round(sent=clients)
            started = time.monotonic()
            await asyncio.gather(
                *(one_request(http, i, result, clip, timeout) for i in range(clients))
            )
            result.seconds = time.monotonic() - started
            # Let the worker finish what it was doing before reading memory.
            for _ in range(100):
                health = (await http.get("/v1/health")).json()
                if not health["busy"] and health["queued"] == 0:
                    break
                await asyncio.sleep(0.05)
            result.rss_mib = rss_mib(pid) if pid else None
            results.append(result)
    return results


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return float(np.percentile(np.asarray(values), q))


def summary(results: list[Round]) -> dict:
    audio = sum(r.audio for r in results)
    seconds = sum(r.seconds for r in results)
    latencies = [x for r in results for x in r.latencies]
    busy = [x for r in results for x in r.busy_latencies]
    return {
        "requests": sum(r.sent for r in results),
        "audio": audio,
        "busy_429": sum(r.busy for r in results),
        "failures": [x for r in results for x in r.other],
        "audio_per_second": audio / seconds if seconds else float("nan"),
        "requests_per_second": sum(r.sent for r in results) / seconds if seconds else float("nan"),
        "p50_seconds": percentile(latencies, 50),
        "p95_seconds": percentile(latencies, 95),
        "p95_429_seconds": percentile(busy, 95),
        "rss_mib": [None if r.rss_mib is None else round(r.rss_mib, 1) for r in results],
        "mean_round_seconds": statistics.fmean(r.seconds for r in results) if results else 0,
    }


def machine() -> str:
    """CPU model and count, for the report."""
    import os
    import platform

    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


def main() -> None:  # pragma: no cover - a tool
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:7860")
    parser.add_argument("--pid", type=int, help="server process id, for its memory")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    results = asyncio.run(run_rounds(args.url, args.pid, args.clients, args.rounds))
    report = summary(results)
    report["machine"] = machine()
    print(json.dumps(report, indent=2))


def start_server(
    model: Path, port: int, *options: str, log: Path | None = None
) -> subprocess.Popen:
    """``ezaudio serve`` (through the serve module's own parser) in a child process, its
    output going to ``log`` (or nowhere)."""
    code = (
        "import argparse, sys\n"
        "from ezaudio.serve.commands import register\n"
        "parser = argparse.ArgumentParser()\n"
        "register(parser.add_subparsers(dest='command'))\n"
        "args = parser.parse_args(['serve', *sys.argv[1:]])\n"
        "args.handler(args)\n"
    )
    argv = ["--model", str(model), "--port", str(port), "--device", "cpu",
            "--log-level", "warning", *options]  # fmt: skip
    output = open(log, "wb") if log is not None else subprocess.DEVNULL
    try:
        return subprocess.Popen(
            [sys.executable, "-c", code, *argv], stdout=output, stderr=subprocess.STDOUT
        )
    finally:
        if log is not None:
            output.close()  # the child keeps its own copy


if __name__ == "__main__":  # pragma: no cover
    main()
