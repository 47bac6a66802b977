"""Reading YAML recipes made of dataclass sections, shared by the training commands.

``read_recipe_yaml`` applies ``--set section.key=value`` overrides to the raw YAML;
``section_from_dict`` builds one section refusing unknown keys by name; every failure
is a one-line :class:`InvalidInputError`. Used by the DiT and the VAE recipes.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Any, TypeVar

import yaml

from ezaudio.errors import InvalidInputError

S = TypeVar("S")


class _RecipeLoader(yaml.SafeLoader):
    """PyYAML's safe loader that also reads ``1e-4`` (no dot; YAML 1.2) as a float, not a
    string: learning rates are written that way."""


_RecipeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def load_yaml(text: str) -> Any:
    """``text`` parsed as YAML by the recipe loader (``1e-4`` is a float)."""
    return yaml.load(text, Loader=_RecipeLoader)  # a SafeLoader subclass: safe


def read_recipe_yaml(
    path: str | os.PathLike[str], overrides: list[str] | None = None
) -> dict[str, Any]:
    """The YAML mapping of ``path`` with ``section.key=value`` overrides (YAML values) applied."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"{path}: recipe file not found")
    try:
        data = load_yaml(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise InvalidInputError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from error
    if not isinstance(data, dict):
        raise InvalidInputError(f"{path}: expected a mapping at the top level")
    for override in overrides or []:
        key, sep, value = override.partition("=")
        if not sep or not key:
            raise InvalidInputError(f"override {override!r} must look like section.key=value")
        parts = key.split(".")
        target = data
        for part in parts[:-1]:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise InvalidInputError(f"override {override!r}: {part} is not a section")
        try:
            target[parts[-1]] = load_yaml(value)
        except yaml.YAMLError as error:
            raise InvalidInputError(f"override {override!r}: not a YAML value") from error
    return data


def section_from_dict(cls: type[S], values: Any, name: str, where: str) -> S:
    """Dataclass section ``cls`` from a mapping; lists become tuples; unknown keys refused."""
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise InvalidInputError(f"{where}: '{name}' must be a mapping")
    known = {f.name for f in dataclasses.fields(cls)}
    bad = sorted(set(values) - known)
    if bad:
        raise InvalidInputError(f"{where}: unknown keys in '{name}': {bad}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    try:
        return cls(**values)
    except TypeError as error:
        raise InvalidInputError(f"{where}: {name}: {error}") from error


def plain(value: Any) -> Any:
    """Tuples -> lists and dataclasses -> dicts, recursively (ready for YAML or JSON)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (tuple, list)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value
