"""Training manifests: which audio files to use, with their captions, ids and splits.

A manifest is a CSV file (``.csv``) or a JSON-lines file (``.jsonl`` / ``.ndjson``), one
entry per row or line, with these columns / fields:

``audio``    path of the audio file (required); a relative path is resolved against the
             manifest's folder, or against ``audio_root`` when one is given.
``caption``  text describing the clip (optional, may be empty).
``id``       unique name of the entry (optional, default: the audio file's stem).
``split``    ``train``, ``val``, ``test``, ... (optional, default ``train``).

The official EzAudio meta CSV (``src/dataset/meta_example.csv``: ``audio_path,caption,
split``) reads as is: ``audio_path`` is taken as ``audio``. Its paths are relative to the
official ``data_dir``; pass that folder as ``audio_root``. Other columns (the official
``fine_tune_data``, ``audio_length``, ``absolute_index``, ...) are ignored.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ezaudio.errors import InvalidInputError
from ezaudio.nn.component import write_atomic

CSV_SUFFIXES = (".csv",)
JSONL_SUFFIXES = (".jsonl", ".ndjson")
FIELDS = ("audio", "caption", "id", "split")
DEFAULT_SPLIT = "train"
# Official EzAudio column name -> ours.
COLUMN_ALIASES = {"audio_path": "audio"}


@dataclass(frozen=True)
class ManifestEntry:
    """One audio clip of a manifest. An empty ``id`` becomes the stem of ``audio``."""

    audio: Path
    caption: str = ""
    id: str = ""
    split: str = DEFAULT_SPLIT

    def __post_init__(self) -> None:
        object.__setattr__(self, "audio", Path(self.audio))
        if not self.id:
            object.__setattr__(self, "id", self.audio.stem)
        if not self.split:
            object.__setattr__(self, "split", DEFAULT_SPLIT)


def read_manifest(
    path: str | os.PathLike[str],
    split: str | None = None,
    *,
    audio_root: str | os.PathLike[str] | None = None,
) -> list[ManifestEntry]:
    """Read a CSV or JSONL manifest (chosen by suffix); keep only ``split`` when given.

    Relative audio paths are resolved against ``audio_root`` (default: the manifest's
    folder). Ids must be unique over the whole file, all splits together. Raises
    :class:`InvalidInputError` naming the file and line for a missing file, an unknown
    suffix, an empty manifest, a missing ``audio`` column or value, a malformed JSON line
    and a duplicate id.
    """
    path = Path(path)
    rows = _read_rows(path)  # [(line number, {field: value})]
    root = (Path(audio_root).expanduser() if audio_root is not None else path.parent).absolute()
    entries: list[ManifestEntry] = []
    first_line_of_id: dict[str, int] = {}
    for line, row in rows:
        entry = _entry(path, line, row, root)
        if entry.id in first_line_of_id:
            raise InvalidInputError(
                f"{path}, line {line}: duplicate id {entry.id!r} "
                f"(first on line {first_line_of_id[entry.id]})"
            )
        first_line_of_id[entry.id] = line
        entries.append(entry)
    if split is not None:
        entries = [entry for entry in entries if entry.split == split]
    return entries


def write_manifest(path: str | os.PathLike[str], entries: Iterable[ManifestEntry]) -> Path:
    """Write ``entries`` as CSV or JSONL (chosen by suffix), atomically (temp file + rename).

    Audio paths inside the manifest's folder are written relative to it (so the folder
    can move); others are written as given. A relative path is written unchanged and so
    reads back relative to the manifest's folder.
    """
    path = Path(path)
    entries = list(entries)
    if not entries:
        raise InvalidInputError(f"{path}: refusing to write a manifest with no entries")
    records = [_record(entry, path.parent) for entry in entries]
    suffix = path.suffix.lower()
    if suffix in CSV_SUFFIXES:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
        text = buffer.getvalue()
    elif suffix in JSONL_SUFFIXES:
        text = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
    else:
        raise InvalidInputError(_suffix_message(path))
    write_atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return path


# ---- reading --------------------------------------------------------------------------------


def _read_rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    suffix = path.suffix.lower()
    if suffix not in CSV_SUFFIXES + JSONL_SUFFIXES:
        raise InvalidInputError(_suffix_message(path))
    if not path.is_file():
        raise InvalidInputError(f"{path}: manifest not found")
    try:
        text = path.read_text(encoding="utf-8-sig")  # tolerate a byte-order mark
    except UnicodeDecodeError as error:
        raise InvalidInputError(f"{path}: manifest is not UTF-8 text ({error.reason})") from error
    if not text.strip():
        raise InvalidInputError(f"{path}: the manifest is empty")
    rows = list(_csv_rows(path, text) if suffix in CSV_SUFFIXES else _jsonl_rows(path, text))
    if not rows:
        raise InvalidInputError(f"{path}: the manifest has no entries")
    return rows


def _csv_rows(path: Path, text: str) -> Iterator[tuple[int, dict[str, Any]]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [_canonical(name.strip()) for name in next(reader)]
        header_line = reader.line_num
        if "audio" not in header:
            found = ", ".join(name for name in header if name) or "none"
            raise InvalidInputError(
                f"{path}, line {header_line}: missing required column 'audio' "
                f"(or 'audio_path'); found columns: {found}"
            )
        _check_unique_columns(path, header_line, header)
        end_of_previous = header_line
        for values in reader:
            line = end_of_previous + 1  # a quoted caption may span several lines
            end_of_previous = reader.line_num
            if not any(value.strip() for value in values):
                continue  # blank line
            if len(values) > len(header):
                raise InvalidInputError(
                    f"{path}, line {line}: {len(values)} fields but the header has {len(header)}"
                )
            yield line, dict(zip(header, values))
    except csv.Error as error:
        raise InvalidInputError(f"{path}, line {reader.line_num}: bad CSV ({error})") from error


def jsonl_objects(path: Path, text: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, JSON object) for each non-blank line of a JSONL file's ``text``;
    a malformed line or one that is not an object raises a one-line error naming it."""
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except json.JSONDecodeError as error:
            raise InvalidInputError(
                f"{path}, line {line}: malformed JSON ({error.msg}, column {error.colno})"
            ) from error
        if not isinstance(record, dict):
            raise InvalidInputError(
                f"{path}, line {line}: expected a JSON object, got {type(record).__name__}"
            )
        yield line, record


def _jsonl_rows(path: Path, text: str) -> Iterator[tuple[int, dict[str, Any]]]:
    for line, record in jsonl_objects(path, text):
        names = [_canonical(str(name)) for name in record]
        _check_unique_columns(path, line, names)
        if "audio" not in names:
            raise InvalidInputError(
                f"{path}, line {line}: missing required field 'audio' (or 'audio_path')"
            )
        yield line, dict(zip(names, record.values()))


def _canonical(name: str) -> str:
    return COLUMN_ALIASES.get(name, name)


def _check_unique_columns(path: Path, line: int, names: list[str]) -> None:
    for field in FIELDS:
        if names.count(field) > 1:
            aliases = [alias for alias, target in COLUMN_ALIASES.items() if target == field]
            spelled = " / ".join([repr(field), *map(repr, aliases)])
            raise InvalidInputError(f"{path}, line {line}: column {spelled} given more than once")


def _entry(path: Path, line: int, row: dict[str, Any], root: Path) -> ManifestEntry:
    values = {field: _text(path, line, field, row.get(field)) for field in FIELDS}
    if not values["audio"]:
        raise InvalidInputError(f"{path}, line {line}: empty 'audio' path")
    audio = Path(values["audio"]).expanduser()
    if not audio.is_absolute():
        audio = root / audio
    return ManifestEntry(
        audio=audio, caption=values["caption"], id=values["id"], split=values["split"]
    )


def _text(path: Path, line: int, field: str, value: Any) -> str:
    """A field as text: None (absent / JSON null / short CSV row) is empty; numbers are ok."""
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise InvalidInputError(
            f"{path}, line {line}: {field!r} must be text, got {type(value).__name__}"
        )
    text = str(value)
    return text if field == "caption" else text.strip()


# ---- writing --------------------------------------------------------------------------------


def _record(entry: ManifestEntry, folder: Path) -> dict[str, str]:
    audio = entry.audio
    if audio.is_absolute():
        try:
            audio = audio.relative_to(folder.absolute())
        except ValueError:
            pass  # outside the manifest's folder: keep absolute
    return {
        "audio": audio.as_posix(),
        "caption": entry.caption,
        "id": entry.id,
        "split": entry.split,
    }


def _suffix_message(path: Path) -> str:
    allowed = ", ".join(CSV_SUFFIXES + JSONL_SUFFIXES)
    return f"{path}: manifest must end in one of {allowed}"
