"""``ezaudio serve``: the HTTP API and the web app for one loaded model (uvicorn)."""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys

from ezaudio.errors import InvalidInputError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
KEY_VARIABLE = "EZAUDIO_API_KEY"


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``serve`` to the ``ezaudio`` parser."""
    serve = commands.add_parser(
        "serve",
        help="serve the HTTP API and the web app",
        description="Serve one model: the HTTP API under /v1 and the web app at /.",
    )
    serve.add_argument(
        "--model", help="model folder, 'ezaudio-l', 'ezaudio-xl' or a hub id (default: bundled)"
    )
    serve.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help=f"address to bind (default: {DEFAULT_HOST}, this machine only)",
    )
    serve.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default: {DEFAULT_PORT})"
    )
    serve.add_argument(
        "--api-key",
        default=None,
        help=f"require 'Authorization: Bearer KEY' (default: ${KEY_VARIABLE})",
    )
    serve.add_argument(
        "--queue-size",
        type=int,
        default=16,
        help="requests that may wait; more get 429 (default: 16)",
    )
    serve.add_argument(
        "--max-batch",
        type=int,
        default=4,
        help="generate requests with equal settings run together (default: 4)",
    )
    serve.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        help="seconds a request may take, queueing included (default: 300)",
    )
    serve.add_argument(
        "--max-upload-mb",
        type=float,
        default=20.0,
        help="largest audio upload for /v1/edit in MiB (default: 20)",
    )
    serve.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, mps or auto")
    serve.add_argument("--dtype", default="float32", help="DiT precision: float32, bf16, fp16")
    serve.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads for the model (default: torch's; fewer leave cores for HTTP)",
    )
    serve.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )
    serve.set_defaults(handler=run_serve)


def settings_from_args(args: argparse.Namespace):
    """The :class:`~ezaudio.serve.settings.ServeSettings` the arguments ask for."""
    from ezaudio.serve.settings import ServeSettings

    if not 0 <= args.port <= 65535:
        raise InvalidInputError(f"--port must be in [0, 65535], got {args.port}")
    if args.threads is not None and args.threads < 1:
        raise InvalidInputError(f"--threads must be at least 1, got {args.threads}")
    if not args.max_upload_mb > 0:
        raise InvalidInputError(f"--max-upload-mb must be positive, got {args.max_upload_mb:g}")
    key = args.api_key if args.api_key is not None else os.environ.get(KEY_VARIABLE) or None
    return ServeSettings(
        queue_size=args.queue_size,
        timeout=args.timeout,
        max_batch=args.max_batch,
        max_upload_bytes=int(args.max_upload_mb * 2**20),
        api_key=key,
    )


def run_serve(args: argparse.Namespace) -> None:
    settings = settings_from_args(args)  # bad options fail before a model is loaded
    try:
        import uvicorn

        from ezaudio.serve.app import create_app
    except ImportError as error:
        raise InvalidInputError(
            f"ezaudio serve needs the serve extra: pip install 'ezaudio[serve]' ({error.name})"
        ) from None
    import torch

    from ezaudio.pipeline import EzAudio

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    pipeline = EzAudio.from_pretrained(args.model, device=args.device, dtype=args.dtype)
    app = create_app(pipeline, settings)
    if settings.api_key is None and not _is_loopback(args.host):
        print(
            f"ezaudio: warning: serving on {args.host} without an API key "
            f"(set --api-key or ${KEY_VARIABLE})",
            file=sys.stderr,
        )
    print(
        f"ezaudio: serving {pipeline.name} on http://{_url_host(args.host)}:{args.port}/ "
        f"(API under /v1, schema at /docs)",
        file=sys.stderr,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
