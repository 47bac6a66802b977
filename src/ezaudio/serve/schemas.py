"""Request models of the HTTP API. Their validators call :mod:`ezaudio.validation`, the rules
the library and the CLI use, so a bad value gets the same one-line message everywhere; the
server answers it with 422 and the field's name in ``loc``.

Each model reads its bounds from the class variable ``limits``; :func:`bind_limits` makes
subclasses bound to the loaded model's :class:`~ezaudio.validation.Limits`.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

from ezaudio.errors import InvalidInputError
from ezaudio.validation import (
    LIMITS,
    Limits,
    check_edit_region,
    check_eta,
    check_guidance_rescale,
    check_guidance_scale,
    check_prompts,
    check_seconds,
    check_seed,
    check_steps,
    finite_number,
)

SAMPLING_FIELDS = ("steps", "guidance_scale", "guidance_rescale", "eta", "seed")


def _describe_limits(schema: dict[str, Any], cls: type[BaseModel]) -> None:
    """Write the bound model's limits into the OpenAPI descriptions."""
    limits: Limits = getattr(cls, "limits", LIMITS)
    bounds = {
        "prompt": f"at most {limits.max_prompt_chars} characters; '' = unconditional",
        "negative_prompt": f"at most {limits.max_prompt_chars} characters",
        "seconds": f"in (0, {limits.max_seconds:g}]; default: the model's",
        "steps": f"integer in [1, {limits.max_steps}]; default: the model's",
        "guidance_scale": f"in [0, {limits.max_guidance_scale:g}]; default: the model's",
        "guidance_rescale": "in [0, 1]; default: the model's",
        "eta": "DDIM eta in [0, 1]; default: the model's",
        "seed": "integer in [0, 2^63 - 1]; default: random (returned in X-Seed)",
        "mask_start": "region start in seconds, >= 0 and not after the end of the audio",
        "mask_length": f"region length in seconds, in (0, {limits.max_seconds:g}]",
        "boundary": "context kept on each side of the region (s, >= 0); default: the model's",
    }
    for name, text in bounds.items():
        if name in schema.get("properties", {}):
            schema["properties"][name]["description"] = text


def form_value(value: object) -> object:
    """A multipart form value as JSON would carry it: '' -> None, '12' -> 12, '0.5' -> 0.5;
    anything else unchanged (so the shared rule names it in its message)."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if not text:
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return value


class SamplingOptions(BaseModel):
    """Options shared by generation and editing; None means the model's default."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_describe_limits)
    limits: ClassVar[Limits] = LIMITS
    from_form: ClassVar[bool] = False

    prompt: str
    negative_prompt: str = ""
    steps: int | None = None
    guidance_scale: float | None = None
    guidance_rescale: float | None = None
    eta: float | None = None
    seed: int | None = None
    format: Literal["wav", "flac"] = "wav"

    @field_validator("prompt", "negative_prompt", mode="before")
    @classmethod
    def _text(cls, value: object, info: ValidationInfo) -> object:
        if not isinstance(value, str):
            raise InvalidInputError(f"{info.field_name} must be a string")
        check_prompts(value, name=info.field_name, limits=cls.limits)
        return value

    @field_validator(*SAMPLING_FIELDS, mode="before")
    @classmethod
    def _sampling(cls, value: object, info: ValidationInfo) -> object:
        if cls.from_form:
            value = form_value(value)
        if value is None:
            return None
        name, limits = info.field_name, cls.limits
        if name == "steps":
            return check_steps(value, limits)
        if name == "guidance_scale":
            return check_guidance_scale(value, limits)
        if name == "guidance_rescale":
            return check_guidance_rescale(value)
        if name == "eta":
            return check_eta(value)
        return check_seed(value, limits)


class GenerateRequest(SamplingOptions):
    """``POST /v1/generate``: JSON body."""

    seconds: float | None = None

    @field_validator("seconds", mode="before")
    @classmethod
    def _seconds(cls, value: object) -> object:
        return None if value is None else check_seconds(value, limits=cls.limits)


class EditOptions(SamplingOptions):
    """``POST /v1/edit``: the form fields beside the audio file.

    Each region field is checked on its own here; :func:`check_region` checks them together
    against the uploaded audio's duration once it is decoded.
    """

    # The audio file arrives in the same form; other unknown fields are ignored.
    model_config = ConfigDict(extra="ignore", json_schema_extra=_describe_limits)
    from_form: ClassVar[bool] = True

    mask_start: float
    mask_length: float
    boundary: float | None = None

    @field_validator("mask_start", "mask_length", "boundary", mode="before")
    @classmethod
    def _region(cls, value: object, info: ValidationInfo) -> object:
        value = form_value(value)
        name = info.field_name
        if value is None:
            if name == "boundary":
                return None
            raise InvalidInputError(f"{name} is required")
        number = finite_number(name, value)
        # The shared rule with neutral values for the other two fields and an endless input.
        region = {"mask_start": 0.0, "mask_length": 1.0, "boundary": 0.0, name: number}
        check_edit_region(
            region["mask_start"], region["mask_length"], region["boundary"], math.inf, cls.limits
        )
        return number


def check_region(options: EditOptions, boundary: float, duration: float, limits: Limits) -> None:
    """The edit region against the decoded audio (``duration`` seconds)."""
    check_edit_region(options.mask_start, options.mask_length, boundary, duration, limits)


def bind_limits(limits: Limits) -> tuple[type[GenerateRequest], type[EditOptions]]:
    """Subclasses of the request models that check against ``limits``."""
    generate = type(
        "GenerateRequest", (GenerateRequest,), {"limits": limits, "__module__": __name__}
    )
    edit = type("EditOptions", (EditOptions,), {"limits": limits, "__module__": __name__})
    return generate, edit


__all__ = [
    "EditOptions",
    "GenerateRequest",
    "SamplingOptions",
    "bind_limits",
    "check_region",
    "form_value",
]
