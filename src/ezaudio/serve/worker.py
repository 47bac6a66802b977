"""The generation worker: one thread, one bounded queue, batches of compatible requests.

- :meth:`Worker.submit` never blocks: with ``queue_size`` requests already waiting it raises
  :class:`QueueFull` (the server answers 429 with ``Retry-After``).
- :meth:`Worker.cancel` (a client that went away, or its time limit) answers the job at once
  and frees its place in the queue; a running batch checks its jobs after every sampling
  step through the pipeline's progress callback, and stops when none of them is wanted.
- Generate jobs with identical settings (seconds, steps, guidance, rescale, eta) run as one
  ``generate`` call of up to ``max_batch`` prompts. Row i of a batch uses seed ``base + i``
  and does not depend on the other rows, so each job gets the audio it would get alone with
  the seed it is told: jobs without a seed take the next seed of the batch, and a job with a
  seed joins only where that seed is the next one. Edit jobs run one at a time (each has its
  own audio).
"""

from __future__ import annotations

import concurrent.futures
import logging
import math
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ezaudio.data.peak import EDIT_CEILING_DB, GENERATE_CEILING_DB, limit_peak

logger = logging.getLogger("ezaudio.serve")


class QueueFull(Exception):
    """The queue holds ``queue_size`` jobs; try again after ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"the queue is full; retry after {retry_after} s")
        self.retry_after = retry_after


class JobCancelled(Exception):
    """The job was dropped: ``reason`` is "timeout", "disconnected" or "shutdown"."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Abort(Exception):
    """Raised inside the progress callback to stop a batch nobody waits for."""


@dataclass
class JobResult:
    """One job's audio and how long it took."""

    waveform: np.ndarray  # [N] float32
    sample_rate: int
    seed: int
    queue_seconds: float
    run_seconds: float
    batch_size: int


@dataclass(eq=False)
class Job:
    """One request. ``options`` holds the resolved sampling settings (no None)."""

    kind: str  # "generate" or "edit"
    prompt: str
    negative_prompt: str
    options: dict[str, Any]
    seed: int | None = None
    audio: np.ndarray | None = None  # edit: mono [N] at audio_rate
    audio_rate: int | None = None
    timeout: float = 300.0
    created: float = field(default_factory=time.monotonic)
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)
    step: int = 0  # sampling steps done, for progress reports
    started: float | None = None

    @property
    def steps(self) -> int:
        return int(self.options["steps"])

    @property
    def deadline(self) -> float:
        return self.created + self.timeout

    def batch_key(self) -> tuple | None:
        """Jobs with equal keys may share a ``generate`` call; None: never batched."""
        if self.kind != "generate":
            return None
        return tuple(sorted(self.options.items()))


class Worker:
    """Runs jobs on ``pipeline`` (an :class:`~ezaudio.pipeline.EzAudio`) in one thread."""

    def __init__(self, pipeline: Any, queue_size: int = 16, max_batch: int = 4) -> None:
        self.pipeline = pipeline
        self.queue_size = queue_size
        self.max_batch = max(1, min(max_batch, pipeline.limits.max_batch))
        self._lock = threading.Condition()
        self._queue: deque[Job] = deque()
        self._running: list[Job] = []
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._batch_seconds: deque[float] = deque(maxlen=16)
        self.completed = 0  # jobs answered with audio
        self.batches = 0  # generate/edit calls made

    # -------------------------------------------------------------- control
    def start(self) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stopping = False
            self._thread = threading.Thread(target=self._loop, name="ezaudio-worker", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Answer every job with ``JobCancelled("shutdown")`` and end the thread."""
        with self._lock:
            self._stopping = True
            for job in [*self._queue, *self._running]:
                self._finish(job, error=JobCancelled("shutdown"))
            self._queue.clear()
            self._lock.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def submit(self, job: Job) -> Job:
        """Queue ``job``, or raise :class:`QueueFull` at once."""
        self.start()
        with self._lock:
            if self._stopping:
                raise JobCancelled("shutdown")
            if len(self._queue) >= self.queue_size:
                raise QueueFull(self.retry_after())
            self._queue.append(job)
            self._lock.notify()
        return job

    def cancel(self, job: Job, reason: str) -> None:
        """Drop ``job``: it leaves the queue now, or its batch stops needing it."""
        with self._lock:
            if job in self._queue:
                self._queue.remove(job)
            self._finish(job, error=JobCancelled(reason))

    # ---------------------------------------------------------------- state
    def position(self, job: Job) -> int:
        """0 while running (or done), else 1 + the jobs ahead of it."""
        with self._lock:
            try:
                return self._queue.index(job) + 1
            except ValueError:
                return 0

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "queued": len(self._queue),
                "running": sum(not job.future.done() for job in self._running),
                "busy": bool(self._running),  # the thread is inside a generate/edit call
                "queue_size": self.queue_size,
                "max_batch": self.max_batch,
                "completed": self.completed,
                "batches": self.batches,
                "worker_alive": self._thread is not None and self._thread.is_alive(),
            }

    def retry_after(self) -> int:
        """Seconds until a place in the queue is likely free (at least 1)."""
        per_batch = (
            sum(self._batch_seconds) / len(self._batch_seconds) if self._batch_seconds else 1.0
        )
        batches = math.ceil((len(self._queue) + 1) / self.max_batch)
        return max(1, min(3600, math.ceil(per_batch * batches)))

    # --------------------------------------------------------------- thread
    def _finish(self, job: Job, result: JobResult | None = None, error: Exception | None = None):
        """Answer ``job`` once (later answers are dropped). Call with the lock held."""
        if job.future.done():
            return
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(result)
            self.completed += 1

    def _loop(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._stopping:
                    self._lock.wait()
                if self._stopping:
                    return
                batch, base_seed = self._take_batch()
                self._running = batch
            try:
                self._run(batch, base_seed)
            except Exception as error:  # pragma: no cover - _run answers its own errors
                logger.exception("worker: unexpected error")
                with self._lock:
                    for job in batch:
                        self._finish(job, error=error)
            finally:
                with self._lock:
                    self._running = []

    def _take_batch(self) -> tuple[list[Job], int]:
        """The first job and the queued jobs that can join it. Call with the lock held."""
        first = self._queue.popleft()
        max_seed = self.pipeline.limits.max_seed
        base = first.seed if first.seed is not None else secrets.randbelow(2**31)
        batch = [first]
        key = first.batch_key()
        if key is not None:
            for job in list(self._queue):
                if len(batch) >= self.max_batch:
                    break
                next_seed = (base + len(batch)) % (max_seed + 1)
                if job.batch_key() == key and job.seed in (None, next_seed):
                    self._queue.remove(job)
                    batch.append(job)
        return batch, base

    def _run(self, batch: list[Job], base_seed: int) -> None:
        start = time.monotonic()
        for job in batch:
            job.started = start
        with self._lock:
            for job in batch:
                if start > job.deadline:
                    self._finish(job, error=JobCancelled("timeout"))
            if all(job.future.done() for job in batch):
                return

        def callback(step: int, steps: int) -> None:
            now = time.monotonic()
            with self._lock:
                for job in batch:
                    job.step = step
                    if now > job.deadline:
                        self._finish(job, error=JobCancelled("timeout"))
                if self._stopping or all(job.future.done() for job in batch):
                    raise _Abort

        first = batch[0]
        options = dict(first.options)
        try:
            if first.kind == "generate":
                output = self.pipeline.generate(
                    [job.prompt for job in batch],
                    negative_prompt=[job.negative_prompt for job in batch],
                    seed=base_seed, progress=False, callback=callback, **options,
                )  # fmt: skip
            else:
                output = self.pipeline.edit(
                    first.audio, first.prompt, sample_rate=first.audio_rate,
                    negative_prompt=first.negative_prompt, seed=base_seed, progress=False,
                    callback=callback, **options,
                )  # fmt: skip
        except _Abort:
            return
        except Exception as error:
            if not isinstance(error, ValueError):  # InvalidInputError is a ValueError
                logger.exception("worker: %s failed", first.kind)
            with self._lock:
                for job in batch:
                    self._finish(job, error=error)
            return
        finally:
            self.batches += 1
            self._batch_seconds.append(time.monotonic() - start)
        done = time.monotonic()
        # The files ``ezaudio generate`` / ``edit`` would write: turned down under the ceiling.
        ceiling = GENERATE_CEILING_DB if first.kind == "generate" else EDIT_CEILING_DB
        with self._lock:
            for row, job in enumerate(batch):
                result = JobResult(
                    waveform=limit_peak(output.waveforms[row], ceiling)[0],
                    sample_rate=output.sample_rate,
                    seed=output.seeds[row],
                    queue_seconds=start - job.created,
                    run_seconds=done - start,
                    batch_size=len(batch),
                )
                self._finish(job, result=result)
