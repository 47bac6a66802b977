"""The server's knobs, set once when the app is made."""

from __future__ import annotations

from dataclasses import dataclass

from ezaudio.errors import InvalidInputError


@dataclass(frozen=True)
class ServeSettings:
    """How much work the server accepts, and from whom.

    ``queue_size``: requests waiting for the worker (running ones excluded); one more
    gets 429. ``timeout``: seconds a request may take from arrival to its answer,
    queueing included (504 after). ``max_batch``: queued generate requests with the
    same sampling settings run as one batch of at most this many. ``max_upload_bytes``:
    the largest audio upload (413 above). ``max_audio_seconds``: the longest audio
    accepted for editing. ``api_key``: when set, every ``/v1`` endpoint but
    ``/v1/health`` needs ``Authorization: Bearer KEY``.
    """

    queue_size: int = 16
    timeout: float = 300.0
    max_batch: int = 4
    max_upload_bytes: int = 20 * 2**20
    max_json_bytes: int = 64 * 2**10
    max_audio_seconds: float = 120.0
    api_key: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.queue_size, int) or self.queue_size < 1:
            raise InvalidInputError(f"queue size must be at least 1, got {self.queue_size!r}")
        if not self.timeout > 0:
            raise InvalidInputError(f"timeout must be positive, got {self.timeout!r}")
        if not isinstance(self.max_batch, int) or self.max_batch < 1:
            raise InvalidInputError(f"max batch must be at least 1, got {self.max_batch!r}")
        if self.max_upload_bytes < 1 or self.max_json_bytes < 1:
            raise InvalidInputError("upload limits must be positive")
        if not self.max_audio_seconds > 0:
            raise InvalidInputError(
                f"max audio seconds must be positive, got {self.max_audio_seconds!r}"
            )
        if self.api_key is not None and not self.api_key.strip():
            raise InvalidInputError("the API key is empty")
