"""The one set of input rules shared by the library, the CLI and the server.

Each check raises :class:`~ezaudio.errors.InvalidInputError` with a one-line
message that names the field.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ezaudio.errors import AudioFileError, InvalidInputError


@dataclass(frozen=True)
class Limits:
    """Bounds on user-facing sampling options."""

    max_seconds: float = 60.0
    max_steps: int = 1000
    max_guidance_scale: float = 100.0
    max_seed: int = 2**63 - 1
    max_prompt_chars: int = 2000
    max_batch: int = 64


LIMITS = Limits()


def finite_number(name: str, value: object) -> float:
    """``value`` as a finite float, or an error naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInputError(f"{name} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise InvalidInputError(f"{name} must be a finite number, got {value!r}")
    return number


def check_seconds(value: object, name: str = "seconds", limits: Limits = LIMITS) -> float:
    seconds = finite_number(name, value)
    if seconds <= 0:
        raise InvalidInputError(f"{name} must be positive, got {seconds:g}")
    if seconds > limits.max_seconds:
        raise InvalidInputError(f"{name} must be at most {limits.max_seconds:g}, got {seconds:g}")
    return seconds


def check_steps(value: object, limits: Limits = LIMITS) -> int:
    steps = finite_number("steps", value)
    if steps != int(steps) or not 1 <= steps <= limits.max_steps:
        raise InvalidInputError(
            f"steps must be an integer in [1, {limits.max_steps}], got {value!r}"
        )
    return int(steps)


def check_guidance_scale(value: object, limits: Limits = LIMITS) -> float:
    scale = finite_number("guidance_scale", value)
    if not 0 <= scale <= limits.max_guidance_scale:
        raise InvalidInputError(
            f"guidance_scale must be in [0, {limits.max_guidance_scale:g}], got {scale:g}"
        )
    return scale


def check_guidance_rescale(value: object) -> float:
    rescale = finite_number("guidance_rescale", value)
    if not 0 <= rescale <= 1:
        raise InvalidInputError(f"guidance_rescale must be in [0, 1], got {rescale:g}")
    return rescale


def check_grid(guidance_scales: Sequence[float], rescales: Sequence[float]) -> tuple[list, list]:
    """Validated, de-duplicated (order kept) guidance scales and rescale factors."""
    if not guidance_scales:
        raise InvalidInputError("give at least one guidance scale")
    if not rescales:
        raise InvalidInputError("give at least one rescale factor")
    scales = _each("guidance_scales", "guidance_scale", check_guidance_scale, guidance_scales)
    factors = _each("rescales", "guidance_rescale", check_guidance_rescale, rescales)
    return scales, factors


def _each(name: str, field: str, check: Callable[[object], float], values: Sequence[float]) -> list:
    """``check`` every value, de-duplicated in order; an error names the list ``name``."""
    try:
        return list(dict.fromkeys(check(value) for value in values))
    except InvalidInputError as error:
        detail = str(error).replace(field, "every value", 1)
        raise InvalidInputError(f"{name}: {detail}") from None


def check_eta(value: object) -> float:
    eta = finite_number("eta", value)
    if not 0 <= eta <= 1:
        raise InvalidInputError(f"eta must be in [0, 1], got {eta:g}")
    return eta


def check_seed(value: object, limits: Limits = LIMITS) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(f"seed must be an integer, got {value!r}")
    if not 0 <= value <= limits.max_seed:
        raise InvalidInputError(f"seed must be in [0, 2^63 - 1], got {value}")
    return value


def check_prompts(prompts: object, name: str = "prompt", limits: Limits = LIMITS) -> list[str]:
    """A prompt or a list of prompts -> list[str]. Empty text is allowed (unconditional)."""
    items = [prompts] if isinstance(prompts, str) else prompts
    if not isinstance(items, (list, tuple)) or not all(isinstance(p, str) for p in items):
        raise InvalidInputError(f"{name} must be a string or a list of strings")
    if not items:
        raise InvalidInputError(f"{name} list is empty")
    if len(items) > limits.max_batch:
        raise InvalidInputError(f"at most {limits.max_batch} prompts at once, got {len(items)}")
    for text in items:
        if len(text) > limits.max_prompt_chars:
            raise InvalidInputError(
                f"{name} is longer than {limits.max_prompt_chars} characters ({len(text)})"
            )
    return list(items)


def check_edit_region(
    mask_start: object,
    mask_length: object,
    boundary: object,
    duration: float,
    limits: Limits = LIMITS,
) -> tuple[float, float, float]:
    """Validate an edit region (seconds) against an input of ``duration`` seconds."""
    start = finite_number("mask_start", mask_start)
    length = finite_number("mask_length", mask_length)
    margin = finite_number("boundary", boundary)
    if start < 0:
        raise InvalidInputError(f"mask_start must not be negative, got {start:g}")
    if length <= 0:
        raise InvalidInputError(f"mask_length must be positive, got {length:g}")
    if margin < 0:
        raise InvalidInputError(f"boundary must not be negative, got {margin:g}")
    if start > duration:
        raise InvalidInputError(
            f"mask_start {start:g} s is after the end of the audio ({duration:.3f} s)"
        )
    if start + length > duration + limits.max_seconds:
        raise InvalidInputError(
            f"the edit region ends {start + length - duration:g} s past the audio; "
            f"at most {limits.max_seconds:g} s can be outpainted"
        )
    if length + 2 * margin > limits.max_seconds + 2 * margin and length > limits.max_seconds:
        raise InvalidInputError(f"mask_length must be at most {limits.max_seconds:g} s")
    return start, length, margin


def ensure_writable_folder(folder: str | os.PathLike[str]) -> Path:
    """Create ``folder`` if needed and check that files can be written into it."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InvalidInputError(f"{folder}: exists and is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise AudioFileError(f"{folder}: cannot create folder ({error.strerror})") from error
    if not os.access(folder, os.W_OK | os.X_OK):
        raise AudioFileError(f"{folder}: folder is not writable")
    return folder
