"""The FastAPI application: the HTTP API under ``/v1`` and the web app at ``/``.

``create_app(pipeline, settings)`` serves one loaded :class:`~ezaudio.pipeline.EzAudio`.
Audio endpoints answer the audio bytes with the seed and timings in headers, or, with
``?stream=true``, server-sent events: ``progress`` while queued and at every sampling step,
then ``done`` (base64 audio and PNG spectrograms) or ``error``.
"""

# No ``from __future__ import annotations``: FastAPI reads the endpoint annotations at run
# time, and the request models are made per app (bound to the loaded model's limits).
import asyncio
import base64
import dataclasses
import json
import re
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import anyio
import numpy as np
from fastapi import Depends, FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ezaudio.errors import AudioFileError, InvalidInputError
from ezaudio.serve.audio_io import MEDIA_TYPES, UndecodableAudio, decode_audio, encode_audio
from ezaudio.serve.body_limit import BodyLimit, describe_size
from ezaudio.serve.schemas import bind_limits, check_region
from ezaudio.serve.settings import ServeSettings
from ezaudio.serve.spectrogram import spectrogram_png
from ezaudio.serve.webapp import STATIC, PageFiles
from ezaudio.serve.worker import Job, JobCancelled, JobResult, QueueFull, Worker, logger

FIELDS = (
    "negative_prompt", "prompt", "seconds", "steps", "guidance_scale", "guidance_rescale",
    "eta", "seed", "format", "mask_start", "mask_length", "boundary", "audio",
)  # fmt: skip
POLL_SECONDS = 0.1  # how often a waiting request checks its client, its time limit, progress
PING_SECONDS = 5.0  # keep-alive comment on a quiet event stream
FORM_ROOM = 64 * 2**10  # bytes allowed for an edit's form fields beside the file

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "an API key is set and the request has no or a wrong bearer token"},
    413: {"description": "the request body is larger than the server accepts"},
    422: {"description": "a value is out of range or malformed; `loc` names the field"},
    429: {"description": "the queue is full; retry after `Retry-After` seconds"},
    504: {"description": "the request took longer than the server's time limit"},
}


def _audio_response_doc(extra: dict[int | str, dict[str, Any]] | None = None) -> dict:
    responses: dict[int | str, dict[str, Any]] = {
        200: {
            "description": "the audio; headers X-Seed, X-Sample-Rate, X-Batch-Size, "
            "X-Queue-Seconds, X-Run-Seconds, X-Total-Seconds, Server-Timing. "
            "With ?stream=true: server-sent events progress, then done or error.",
            "content": {"audio/wav": {}, "audio/flac": {}, "text/event-stream": {}},
        },
        **ERROR_RESPONSES,
    }
    responses.update(extra or {})
    return responses


def field_of(message: str, default: str) -> str:
    """The request field an error message is about: the shared rules start their messages
    with the field's name; ``default`` for the few that do not."""
    words = re.findall(r"[a-z_]+", message)
    return words[0] if words and words[0] in FIELDS else default


def invalid(field: str, message: str) -> RequestValidationError:
    """A 422 naming ``field``, shaped like FastAPI's own."""
    return RequestValidationError(
        [{"type": "value_error", "loc": ("body", field), "msg": message, "input": None}]
    )


def _clean_errors(errors: Any) -> list[dict[str, Any]]:
    cleaned = []
    for error in errors:
        item = {
            "loc": list(error.get("loc", ())),
            "msg": str(error.get("msg", "")).removeprefix("Value error, "),
            "type": error.get("type", "value_error"),
        }
        value = error.get("input")
        if value is None or isinstance(value, (bool, int, float)):
            item["input"] = value if not isinstance(value, float) or np.isfinite(value) else None
        elif isinstance(value, str) and len(value) <= 200:
            item["input"] = value
        cleaned.append(item)
    return cleaned


def create_app(pipeline: Any, settings: ServeSettings | None = None) -> FastAPI:
    """The server of ``pipeline``; the worker thread runs while the app's lifespan does."""
    from ezaudio import __version__

    settings = settings or ServeSettings()
    limits = pipeline.limits
    worker = Worker(pipeline, queue_size=settings.queue_size, max_batch=settings.max_batch)
    generate_model, edit_model = bind_limits(limits)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        worker.start()
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(worker.stop)

    app = FastAPI(
        title="EzAudio",
        version=__version__,
        lifespan=lifespan,
        description="Text-to-audio generation and editing with one loaded EzAudio model. "
        "The web app is at `/`.",
    )
    app.state.pipeline = pipeline
    app.state.worker = worker
    app.state.settings = settings

    def body_limit(path: str) -> tuple[int, int] | None:
        if path == "/v1/edit":  # the file plus room for the form fields
            return settings.max_upload_bytes + FORM_ROOM, settings.max_upload_bytes
        if path.startswith("/v1/"):
            return settings.max_json_bytes, settings.max_json_bytes
        return None

    app.add_middleware(BodyLimit, limit_for=body_limit)

    # ----------------------------------------------------------- errors
    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        detail = _clean_errors(error.errors())
        message = "; ".join(f"{item['loc'][-1]}: {item['msg']}" for item in detail if item["loc"])
        return JSONResponse({"detail": detail, "message": message}, status_code=422)

    def error_response(error: BaseException) -> JSONResponse:
        status, detail = describe_error(error)
        if status == 422:
            return JSONResponse(
                {
                    "detail": [
                        {"loc": ["body", detail[0]], "msg": detail[1], "type": "value_error"}
                    ],
                    "message": f"{detail[0]}: {detail[1]}",
                },
                status_code=422,
            )
        return JSONResponse({"detail": detail}, status_code=status)

    def describe_error(error: BaseException) -> tuple[int, Any]:
        if isinstance(error, JobCancelled):
            if error.reason == "timeout":
                return 504, f"the request took longer than the time limit ({settings.timeout:g} s)"
            if error.reason == "shutdown":
                return 503, "the server is shutting down"
            return 499, "the client went away"
        if isinstance(error, InvalidInputError):
            message = str(error)
            return 422, (field_of(message, "prompt"), message)
        if isinstance(error, AudioFileError):
            return 422, ("audio", str(error))
        # The worker logged the traceback; the client gets no internals (paths, say).
        return 500, f"generation failed ({type(error).__name__}); see the server's log"

    # ------------------------------------------------------------- auth
    bearer = HTTPBearer(auto_error=False, description="the key given to `ezaudio serve`")

    def require_key(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> None:
        if settings.api_key is None:
            return
        token = credentials.credentials if credentials is not None else ""
        if not secrets.compare_digest(token.encode(), settings.api_key.encode()):
            raise HTTPException(
                401,
                "missing or wrong API key (send Authorization: Bearer KEY)",
                headers={"WWW-Authenticate": "Bearer"},
            )

    protected = [Depends(require_key)]

    # ---------------------------------------------------------- waiting
    async def wait_for(request: Request, job: Job) -> JobResult:
        """The job's result; cancels it when the client leaves or its time is up."""
        future = asyncio.wrap_future(job.future)
        try:
            while True:
                remaining = job.deadline - time.monotonic()
                if remaining <= 0:
                    worker.cancel(job, "timeout")
                done, _ = await asyncio.wait(
                    {future}, timeout=max(0.0, min(POLL_SECONDS, remaining))
                )
                if done:
                    return future.result()
                if await request.is_disconnected():
                    worker.cancel(job, "disconnected")
        finally:
            if not job.future.done():  # the handler itself was cancelled
                worker.cancel(job, "disconnected")

    def submit(job: Job) -> JSONResponse | None:
        try:
            worker.submit(job)
        except QueueFull as full:
            return JSONResponse(
                {"detail": f"the server is busy: {full}"},
                status_code=429,
                headers={"Retry-After": str(full.retry_after)},
            )
        except JobCancelled as error:
            return error_response(error)
        return None

    def headers_for(result: JobResult, fmt: str, encode_seconds: float) -> dict[str, str]:
        total = result.queue_seconds + result.run_seconds + encode_seconds
        return {
            "X-Seed": str(result.seed),
            "X-Sample-Rate": str(result.sample_rate),
            "X-Batch-Size": str(result.batch_size),
            "X-Queue-Seconds": f"{result.queue_seconds:.3f}",
            "X-Run-Seconds": f"{result.run_seconds:.3f}",
            "X-Total-Seconds": f"{total:.3f}",
            "Server-Timing": f"queue;dur={result.queue_seconds * 1e3:.1f}, "
            f"run;dur={result.run_seconds * 1e3:.1f}, encode;dur={encode_seconds * 1e3:.1f}",
            "Content-Disposition": f'inline; filename="ezaudio-{result.seed}.{fmt}"',
            "Cache-Control": "no-store",
        }

    async def answer(
        request: Request, job: Job, fmt: str, stream: bool, original: tuple | None = None
    ) -> Response:
        refused = submit(job)
        if refused is not None:
            return refused
        if stream:
            return JobStream(
                job,
                worker,
                events(job, fmt, original),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
            )
        try:
            result = await wait_for(request, job)
        except Exception as error:
            return error_response(error)
        started = time.monotonic()
        body = await anyio.to_thread.run_sync(
            encode_audio, result.waveform, result.sample_rate, fmt
        )
        headers = headers_for(result, fmt, time.monotonic() - started)
        return Response(body, media_type=MEDIA_TYPES[fmt], headers=headers)

    def finished_event(result: JobResult, fmt: str, original: tuple | None) -> dict[str, Any]:
        started = time.monotonic()
        audio = encode_audio(result.waveform, result.sample_rate, fmt)
        event = {
            "seed": result.seed,
            "sample_rate": result.sample_rate,
            "seconds": len(result.waveform) / result.sample_rate,
            "format": fmt,
            "media_type": MEDIA_TYPES[fmt],
            "audio": base64.b64encode(audio).decode(),
            "spectrogram": _png_data(spectrogram_png(result.waveform, result.sample_rate)),
            "batch_size": result.batch_size,
        }
        if original is not None:
            event["original_spectrogram"] = _png_data(spectrogram_png(*original))
        encode = time.monotonic() - started
        event["timings"] = {
            "queue": round(result.queue_seconds, 3),
            "run": round(result.run_seconds, 3),
            "encode": round(encode, 3),
            "total": round(result.queue_seconds + result.run_seconds + encode, 3),
        }
        return event

    async def events(job: Job, fmt: str, original: tuple | None) -> AsyncIterator[str]:
        future = asyncio.wrap_future(job.future)
        last: tuple | None = None
        quiet_since = time.monotonic()
        try:
            while not future.done():
                position = worker.position(job)
                state = ("queued", position, 0) if position else ("running", 0, job.step)
                if state != last:
                    last, quiet_since = state, time.monotonic()
                    yield _sse(
                        "progress",
                        {"state": state[0], "position": state[1], "step": state[2],
                         "steps": job.steps},
                    )  # fmt: skip
                elif time.monotonic() - quiet_since > PING_SECONDS:
                    quiet_since = time.monotonic()
                    yield ": ping\n\n"
                remaining = job.deadline - time.monotonic()
                if remaining <= 0:
                    worker.cancel(job, "timeout")
                await asyncio.wait({future}, timeout=max(0.0, min(POLL_SECONDS, remaining)))
            try:
                result = future.result()
            except Exception as error:
                status, detail = describe_error(error)
                if status == 422:
                    yield _sse("error", {"status": 422, "field": detail[0], "detail": detail[1]})
                else:
                    yield _sse("error", {"status": status, "detail": detail})
                return
            yield _sse("progress", {"state": "encoding", "step": job.steps, "steps": job.steps})
            payload = await anyio.to_thread.run_sync(finished_event, result, fmt, original)
            yield _sse("done", payload)
        finally:
            if not job.future.done():  # the client closed the stream
                worker.cancel(job, "disconnected")

    # -------------------------------------------------------- endpoints
    @app.get("/v1/health", tags=["server"])
    async def health() -> dict[str, Any]:
        """Liveness and the queue's state (no API key needed)."""
        return {"status": "ok", **worker.stats()}

    @app.get("/v1/model", tags=["server"], dependencies=protected, responses=ERROR_RESPONSES)
    async def model() -> dict[str, Any]:
        """What is loaded: name, sample rate, sampling defaults and every limit."""
        return {
            "name": pipeline.name,
            "sample_rate": pipeline.sample_rate,
            "latent_rate": pipeline.latent_rate,
            "device": str(pipeline.device),
            "dtype": str(pipeline.dtype).removeprefix("torch."),
            "dit_parameters": pipeline.dit.num_parameters(),
            "text_encoder": getattr(pipeline.text_encoder, "name", ""),
            "defaults": dataclasses.asdict(pipeline.sampling),
            "limits": {
                **{k: v for k, v in dataclasses.asdict(limits).items() if k != "max_batch"},
                "max_upload_bytes": settings.max_upload_bytes,
                "max_audio_seconds": settings.max_audio_seconds,
                "timeout_seconds": settings.timeout,
            },
            "queue": {"queue_size": settings.queue_size, "max_batch": worker.max_batch},
            "formats": list(MEDIA_TYPES),
            "api_key_required": settings.api_key is not None,
        }

    @app.post(
        "/v1/generate", tags=["audio"], dependencies=protected, response_class=Response,
        responses=_audio_response_doc(),
    )  # fmt: skip
    async def generate(request: Request, body: generate_model, stream: bool = False) -> Response:  # type: ignore[valid-type]
        """Generate audio from text (JSON body). Answers the audio bytes, or events with
        ``?stream=true``."""
        sampling = pipeline.sampling
        options = {
            "seconds": _pick(body.seconds, sampling.seconds),
            "steps": _pick(body.steps, sampling.steps),
            "guidance_scale": _pick(body.guidance_scale, sampling.guidance_scale),
            "guidance_rescale": _pick(body.guidance_rescale, sampling.guidance_rescale),
            "eta": _pick(body.eta, sampling.eta),
        }
        job = Job(
            "generate", body.prompt, body.negative_prompt, options, seed=body.seed,
            timeout=settings.timeout,
        )  # fmt: skip
        return await answer(request, job, body.format, stream)

    @app.post(
        "/v1/edit", tags=["audio"], dependencies=protected, response_class=Response,
        responses=_audio_response_doc(
            {415: {"description": "the uploaded file is not audio the server can decode"}}
        ),
    )  # fmt: skip
    async def edit(
        request: Request,
        options: Annotated[edit_model, Form()],  # type: ignore[valid-type]
        audio: Annotated[UploadFile, File(description="the audio to edit (WAV, FLAC, OGG, MP3)")],
        stream: bool = False,
    ) -> Response:
        """Regenerate ``mask_length`` seconds from ``mask_start`` of an uploaded clip
        (multipart form). Answers the whole clip with the region replaced."""
        data = await audio.read()
        if len(data) > settings.max_upload_bytes:  # within the form's room for fields
            return JSONResponse(
                {"detail": f"the upload is larger than {describe_size(settings.max_upload_bytes)}"},
                status_code=413,
            )
        try:
            wave, rate = await anyio.to_thread.run_sync(
                decode_audio, data, settings.max_audio_seconds
            )
        except UndecodableAudio as error:
            return JSONResponse({"detail": str(error)}, status_code=415)
        except InvalidInputError as error:
            raise invalid("audio", str(error)) from None
        finally:
            del data
        sampling = pipeline.sampling
        boundary = _pick(options.boundary, sampling.boundary)
        try:
            check_region(options, boundary, len(wave) / rate, limits)
        except InvalidInputError as error:
            raise invalid(field_of(str(error), "mask_length"), str(error)) from None
        settings_ = {
            "mask_start": options.mask_start,
            "mask_length": options.mask_length,
            "boundary": boundary,
            "steps": _pick(options.steps, sampling.steps),
            "guidance_scale": _pick(options.guidance_scale, sampling.edit_guidance_scale),
            "guidance_rescale": _pick(options.guidance_rescale, sampling.edit_guidance_rescale),
            "eta": _pick(options.eta, sampling.eta),
        }
        job = Job(
            "edit", options.prompt, options.negative_prompt, settings_, seed=options.seed,
            audio=wave, audio_rate=rate, timeout=settings.timeout,
        )  # fmt: skip
        original = (wave, rate) if stream else None
        return await answer(request, job, options.format, stream, original)

    if (STATIC / "index.html").is_file():
        app.mount("/", PageFiles(), name="webapp")
    else:  # an install without the package's data files: the API still works
        logger.warning("the web app's files are missing from %s; serving the API only", STATIC)
    return app


class JobStream(StreamingResponse):
    """An event stream that drops its job however the response ends, even when the client
    leaves before the stream's generator has started."""

    def __init__(self, job: Job, worker: Worker, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.job, self.worker = job, worker

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            if not self.job.future.done():
                self.worker.cancel(self.job, "disconnected")


def _pick(value: Any, default: Any) -> Any:
    return default if value is None else value


def _png_data(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def _sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"
