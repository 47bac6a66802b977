"""The paper's evaluation protocol: AudioCaps-style manifest -> generated audio -> FD, KL, IS, CLAP.

**Manifest** (:func:`read_eval_manifest`), one clip per row / line:

* CSV or JSONL (``.csv``, ``.jsonl``, ``.ndjson``) with ``audio`` (the reference audio; a
  relative path is resolved against ``audio_root``, default the manifest's folder), ``id``
  (default: the audio file's stem) and one to five captions: ``caption_1`` ... ``caption_5``
  and/or ``caption`` (CSV or JSONL), or a ``captions`` list (JSONL). Empty captions are
  skipped; ids must be unique.
* The AudioCaps CSV layout (``audiocap_id,youtube_id,start_time,caption``, one row per
  caption, five rows per test clip): rows are grouped by ``youtube_id`` (the clip id). The
  reference file is the ``audio`` column when there is one, else ``audio_pattern`` formatted
  with ``youtube_id``, ``start_time`` and ``audiocap_id`` (the first row's) under
  ``audio_root``; with no pattern the names in :data:`AUDIOCAPS_PATTERNS` are tried in
  order. Missing reference files are an error before anything runs.

**Caption choice** (the paper picks one caption per clip at random): the caption of clip
``id`` with ``n`` captions is number ``int(sha256(f"ezaudio-caption|{seed}|{id}")[:8]) % n``
(big-endian), so it depends on the seed and the id only, not on the manifest's order or on
``limit``; the choices are written to ``results.json``.

**Generation** (:func:`generate_clips`): clip ``k`` of the manifest (0-based, after
``limit``) is generated from its chosen caption with seed ``seed + k`` (as ``ezaudio
generate --prompts-file``; a batch holds consecutive clips only, so batching changes a
clip by float rounding at most) into ``OUT/audio/<id>.wav``, written atomically.
``OUT/generation.json`` records the model (name and a sha256 of the DiT and VAE weights),
the sampler settings, the seeds and, per clip, the caption, seed and file. A re-run skips
every clip whose file is complete (the right rate and length) and whose record matches; it
refuses an output folder whose audio came from other settings.

**Metrics** (:func:`evaluate_model`): PANNs CNN14 features of the reference and the
generated files (:mod:`ezaudio.eval.features`, cached by content), then FD (embeddings),
KL (softmax, paired by id; the sigmoid variant as ``kl_sigmoid``), IS (generated logits,
10 splits; 1 split when there are fewer than 10 clips), and the CLAP score: mean cosine of
the chosen captions' and the generated clips' CLAP embeddings (``clap_reference``: the
same with the reference audio, the ceiling a perfect model would reach). Written to
``OUT/results.json`` (metrics, every setting, the model, seeds, caption choices, versions)
and ``OUT/results.md`` (the paper's columns FD, KL, IS, CLAP).

**Sweep** (:func:`run_sweep`): one protocol run per (guidance scale, rescale) cell under
``SWEEP/cfg{w}_rescale{phi}/``, sharing the feature cache (so the reference features are
computed once), then ``SWEEP/sweep.json``, ``sweep.md`` and ``sweep.png`` (FD and CLAP
against the guidance scale, one line per rescale factor, as the paper's Fig. 3).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import platform
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from ezaudio.data.manifest import jsonl_objects
from ezaudio.errors import AudioFileError, InvalidInputError
from ezaudio.eval.clap import ClapScorer
from ezaudio.eval.features import FeatureExtractor, FeatureSet, compute_features, file_sha256
from ezaudio.eval.metrics import clap_score, frechet_distance, inception_score, kl_divergence
from ezaudio.eval.prepare import PrepareSettings, read_channels
from ezaudio.nn.component import write_atomic
from ezaudio.validation import (
    LIMITS,
    check_eta,
    check_grid,
    check_guidance_rescale,
    check_guidance_scale,
    check_seconds,
    check_seed,
    check_steps,
)

MAX_CAPTIONS = 5
CAPTION_COLUMNS = tuple(f"caption_{i}" for i in range(1, MAX_CAPTIONS + 1))
CSV_SUFFIXES = (".csv",)
JSONL_SUFFIXES = (".jsonl", ".ndjson")
AUDIOCAPS_PATTERNS = tuple(
    f"{stem}.{ext}"
    for ext in ("wav", "flac")
    for stem in (
        "{youtube_id}",
        "Y{youtube_id}",
        "{youtube_id}_{start_time}",
        "Y{youtube_id}_{start_time}",
        "{audiocap_id}",
    )
)
"""File names tried under ``audio_root`` for AudioCaps rows when no pattern is given."""

IS_SPLITS = 10
GENERATION_FORMAT = 1
GENERATION_RECORD = "generation.json"
AUDIO_FOLDER = "audio"
MIN_CLIPS = 2

Log = Callable[[str], None]


# ---- manifest ------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvalClip:
    """One evaluation clip: its id, reference audio file and one to five captions."""

    id: str
    audio: Path
    captions: tuple[str, ...]


def read_eval_manifest(
    path: str | os.PathLike[str],
    audio_root: str | os.PathLike[str] | None = None,
    audio_pattern: str | None = None,
) -> list[EvalClip]:
    """Read an evaluation manifest (see the module docstring); every error is one line."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in CSV_SUFFIXES + JSONL_SUFFIXES:
        allowed = ", ".join(CSV_SUFFIXES + JSONL_SUFFIXES)
        raise InvalidInputError(f"{path}: manifest must end in one of {allowed}")
    if not path.is_file():
        raise InvalidInputError(
            f"{path}: manifest not found" + (" (it is a folder)" if path.is_dir() else "")
        )
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidInputError(f"{path}: cannot read manifest ({error})") from error
    if not text.strip():
        raise InvalidInputError(f"{path}: the manifest is empty")
    root = (Path(audio_root).expanduser() if audio_root is not None else path.parent).absolute()
    if audio_pattern is not None:
        _check_pattern(audio_pattern)
    if suffix in CSV_SUFFIXES:
        header, rows = _csv_rows(path, text)
        if "youtube_id" in header:
            clips = _audiocaps_clips(path, rows, root, audio_pattern)
        elif "audio" in header:
            clips = [_clip(path, line, row, root) for line, row in rows]
        else:
            found = ", ".join(name for name in header if name) or "none"
            raise InvalidInputError(
                f"{path}: needs an 'audio' column (or the AudioCaps 'youtube_id' and 'caption' "
                f"columns); found columns: {found}"
            )
    else:
        clips = [_clip(path, line, row, root) for line, row in _jsonl_rows(path, text)]
    if not clips:
        raise InvalidInputError(f"{path}: the manifest has no clips")
    seen: dict[str, int] = {}
    for index, clip in enumerate(clips):
        if clip.id in seen:
            raise InvalidInputError(f"{path}: duplicate clip id {clip.id!r}")
        seen[clip.id] = index
    missing = [clip for clip in clips if not clip.audio.is_file()]
    if missing:
        shown = ", ".join(str(clip.audio) for clip in missing[:3])
        more = f" (and {len(missing) - 3} more)" if len(missing) > 3 else ""
        raise InvalidInputError(
            f"{path}: {len(missing)} of {len(clips)} reference audio files not found: {shown}{more}"
        )
    return clips


def _check_pattern(pattern: str) -> None:
    try:
        pattern.format(youtube_id="x", start_time="0", audiocap_id="0", id="x")
    except (KeyError, IndexError, ValueError) as error:
        raise InvalidInputError(
            f"audio pattern {pattern!r} may only use {{youtube_id}}, {{start_time}}, "
            f"{{audiocap_id}} and {{id}} ({error})"
        ) from None


def _csv_rows(path: Path, text: str) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    rows: list[tuple[int, dict[str, str]]] = []
    try:
        header = [name.strip() for name in next(reader)]
        header = ["audio" if name == "audio_path" else name for name in header]
        duplicated = sorted({name for name in header if name and header.count(name) > 1})
        if duplicated:
            raise InvalidInputError(f"{path}: columns given more than once: {duplicated}")
        previous_end = reader.line_num
        for values in reader:
            line = previous_end + 1
            previous_end = reader.line_num
            if not any(value.strip() for value in values):
                continue
            if len(values) > len(header):
                raise InvalidInputError(
                    f"{path}, line {line}: {len(values)} fields but the header has {len(header)}"
                )
            rows.append((line, dict(zip(header, values))))
    except csv.Error as error:
        raise InvalidInputError(f"{path}, line {reader.line_num}: bad CSV ({error})") from error
    return header, rows


def _jsonl_rows(path: Path, text: str) -> list[tuple[int, dict[str, Any]]]:
    rows = []
    for line, record in jsonl_objects(path, text):
        if "audio_path" in record and "audio" not in record:
            record["audio"] = record.pop("audio_path")
        rows.append((line, record))
    return rows


def _text(path: Path, line: int, field: str, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise InvalidInputError(
            f"{path}, line {line}: {field!r} must be text, got {type(value).__name__}"
        )
    return str(value).strip()


def _clip(path: Path, line: int, row: dict[str, Any], root: Path) -> EvalClip:
    audio_text = _text(path, line, "audio", row.get("audio"))
    if not audio_text:
        raise InvalidInputError(f"{path}, line {line}: empty or missing 'audio'")
    extra = sorted(
        name for name in row if re.fullmatch(r"caption_\d+", name) and name not in CAPTION_COLUMNS
    )
    if extra:
        raise InvalidInputError(
            f"{path}, line {line}: at most {MAX_CAPTIONS} captions (caption_1 .. caption_5); "
            f"found {', '.join(extra)}"
        )
    captions: list[str] = []
    listed = row.get("captions")
    if listed is not None:
        if not isinstance(listed, list):
            raise InvalidInputError(f"{path}, line {line}: 'captions' must be a list of strings")
        captions += [_text(path, line, "captions", item) for item in listed]
    captions += [_text(path, line, name, row.get(name)) for name in CAPTION_COLUMNS]
    captions.append(_text(path, line, "caption", row.get("caption")))
    captions = [caption for caption in captions if caption]
    audio = Path(audio_text).expanduser()
    if not audio.is_absolute():
        audio = root / audio
    clip_id = _text(path, line, "id", row.get("id")) or audio.stem
    _check_caption_count(path, line, clip_id, captions)
    return EvalClip(id=clip_id, audio=audio, captions=tuple(captions))


def _check_caption_count(path: Path, line: int, clip_id: str, captions: list[str]) -> None:
    if not captions:
        raise InvalidInputError(f"{path}, line {line}: clip {clip_id!r} has no caption")
    if len(captions) > MAX_CAPTIONS:
        raise InvalidInputError(
            f"{path}, line {line}: clip {clip_id!r} has {len(captions)} captions; "
            f"at most {MAX_CAPTIONS} are allowed"
        )


def _audiocaps_clips(
    path: Path, rows: list[tuple[int, dict[str, str]]], root: Path, pattern: str | None
) -> list[EvalClip]:
    groups: dict[str, dict[str, Any]] = {}
    for line, row in rows:
        youtube_id = (row.get("youtube_id") or "").strip()
        if not youtube_id:
            raise InvalidInputError(f"{path}, line {line}: empty 'youtube_id'")
        start = (row.get("start_time") or "").strip()
        group = groups.setdefault(
            youtube_id,
            {"line": line, "start_time": start, "captions": [], "audio": "",
             "audiocap_id": (row.get("audiocap_id") or "").strip()},
        )  # fmt: skip
        if start != group["start_time"]:
            raise InvalidInputError(
                f"{path}, line {line}: clip {youtube_id!r} has start_time {start!r} here and "
                f"{group['start_time']!r} on line {group['line']}"
            )
        caption = (row.get("caption") or "").strip()
        if caption:
            group["captions"].append(caption)
        audio = (row.get("audio") or "").strip()
        if audio and not group["audio"]:
            group["audio"] = audio
    clips = []
    for youtube_id, group in groups.items():
        _check_caption_count(path, group["line"], youtube_id, group["captions"])
        start = group["start_time"]
        if re.fullmatch(r"\d+\.0+", start):
            start = start.split(".")[0]
        fields = {"youtube_id": youtube_id, "start_time": start,
                  "audiocap_id": group["audiocap_id"], "id": youtube_id}  # fmt: skip
        if group["audio"]:
            audio = Path(group["audio"]).expanduser()
            audio = audio if audio.is_absolute() else root / audio
        else:
            names = [pattern] if pattern else list(AUDIOCAPS_PATTERNS)
            candidates = [root / name.format(**fields) for name in names]
            audio = next((c for c in candidates if c.is_file()), candidates[0])
        clips.append(EvalClip(id=youtube_id, audio=audio, captions=tuple(group["captions"])))
    return clips


def choose_caption(clip_id: str, count: int, seed: int) -> int:
    """Index of the caption used for clip ``clip_id`` out of ``count``, a function of ``seed``."""
    if count < 1:
        raise InvalidInputError(f"clip {clip_id!r} has no caption")
    digest = hashlib.sha256(f"ezaudio-caption|{seed}|{clip_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % count


def choose_captions(clips: Sequence[EvalClip], seed: int) -> list[dict[str, Any]]:
    """Per clip: ``{"id", "caption_index", "caption"}`` (index 0-based)."""
    check_seed(seed)
    choices = []
    for clip in clips:
        index = choose_caption(clip.id, len(clip.captions), seed)
        choices.append({"id": clip.id, "caption_index": index, "caption": clip.captions[index]})
    return choices


# ---- settings and file names ---------------------------------------------------------------


@dataclass(frozen=True)
class GenerationSettings:
    """Sampler settings of one protocol run (defaults resolved from the model)."""

    steps: int
    guidance_scale: float
    guidance_rescale: float
    eta: float
    seconds: float
    seed: int = 0
    caption_seed: int = 0

    def replace(self, **changes: Any) -> GenerationSettings:
        return GenerationSettings(**{**asdict(self), **changes})


def resolve_settings(
    pipe: Any,
    *,
    steps: int | None = None,
    guidance_scale: float | None = None,
    guidance_rescale: float | None = None,
    eta: float | None = None,
    seconds: float | None = None,
    seed: int | None = 0,
    caption_seed: int | None = 0,
) -> GenerationSettings:
    """Fill unset values from the model's sampling defaults and validate everything."""
    defaults = pipe.sampling
    return GenerationSettings(
        steps=check_steps(defaults.steps if steps is None else steps),
        guidance_scale=check_guidance_scale(
            defaults.guidance_scale if guidance_scale is None else guidance_scale
        ),
        guidance_rescale=check_guidance_rescale(
            defaults.guidance_rescale if guidance_rescale is None else guidance_rescale
        ),
        eta=check_eta(defaults.eta if eta is None else eta),
        seconds=check_seconds(defaults.seconds if seconds is None else seconds),
        seed=check_seed(0 if seed is None else seed),
        caption_seed=check_seed(0 if caption_seed is None else caption_seed),
    )


def output_names(ids: Sequence[str]) -> list[str]:
    """File stems for clip ids: the id itself when it is a safe file name, else a slug + hash.

    Names are unique even on case-insensitive file systems.
    """
    names = []
    for clip_id in ids:
        if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,119}", clip_id):
            names.append(clip_id)
        else:
            slug = re.sub(r"[^A-Za-z0-9._-]+", "_", clip_id).strip("._-")[:80] or "clip"
            names.append(f"{slug}-{_short_hash(clip_id)}")
    folded = [name.lower() for name in names]
    return [
        f"{name}-{_short_hash(clip_id)}" if folded.count(name.lower()) > 1 else name
        for name, clip_id in zip(names, ids)
    ]


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:10]


def model_fingerprint(pipe: Any) -> str:
    """sha256 of the DiT and VAE weights and configs and the text encoder's description."""
    from ezaudio.eval.features import state_fingerprint

    parts = {
        "dit": state_fingerprint(pipe.dit, pipe.dit.config),
        "vae": state_fingerprint(pipe.vae, getattr(pipe.vae, "config", None)),
        "text_encoder": pipe.text_encoder.describe(),
        "latent": [pipe.latent_scale, pipe.latent_shift],
        "scheduler": asdict(pipe.scheduler_config),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode("utf-8")).hexdigest()


def _dtype_name(pipe: Any) -> str:
    return str(pipe.dtype).replace("torch.", "")


# ---- generation ----------------------------------------------------------------------------


def _write_json(path: Path, data: Any) -> None:
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    try:
        write_atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    except OSError as error:
        raise AudioFileError(f"{path}: cannot write ({error.strerror})") from error


def _read_record(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidInputError(f"{path}: unreadable generation record ({error})") from error
    if not isinstance(data, dict) or not isinstance(data.get("clips"), dict):
        raise InvalidInputError(f"{path}: not an ezaudio generation record")
    return data


def _settings_difference(old: dict[str, Any], new: dict[str, Any]) -> str:
    changed = []
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            if key == "model_fingerprint":
                changed.append("model weights differ")
            elif isinstance(new.get(key), dict) or isinstance(old.get(key), dict):
                changed.append(key)
            else:
                changed.append(f"{key} {new.get(key)!r} here, {old.get(key)!r} there")
    return "; ".join(changed)


def _complete(path: Path, sample_rate: int, frames: int) -> bool:
    import soundfile as sf

    if not path.is_file():
        return False
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError):
        return False
    return info.samplerate == sample_rate and info.frames == frames and info.channels == 1


@dataclass
class GenerationReport:
    """What :func:`generate_clips` did: the files in clip order, and how many were new."""

    files: list[Path]
    seeds: list[int]
    generated: int
    skipped: int
    seconds_taken: float


def generate_clips(
    pipe: Any,
    clips: Sequence[EvalClip],
    captions: Sequence[str],
    out_dir: str | os.PathLike[str],
    settings: GenerationSettings,
    *,
    batch_size: int = 8,
    progress: bool = True,
    model_name: str = "",
    fingerprint: str | None = None,
) -> GenerationReport:
    """Generate ``captions[k]`` for clip ``k`` with seed ``settings.seed + k`` (resumable)."""
    from tqdm.auto import tqdm

    from ezaudio.data.audio import write_audio

    if len(captions) != len(clips):
        raise InvalidInputError(f"{len(clips)} clips but {len(captions)} captions")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidInputError(f"batch_size must be a positive integer, got {batch_size!r}")
    batch_size = min(batch_size, LIMITS.max_batch)
    out = Path(out_dir)
    audio_dir = out / AUDIO_FOLDER
    record_path = out / GENERATION_RECORD
    rate = int(pipe.sample_rate)
    frames = round(settings.seconds * rate)
    header = {  # the model by its weights, not by its name or path
        "model_fingerprint": fingerprint or model_fingerprint(pipe),
        "dtype": _dtype_name(pipe),
        "sample_rate": rate,
        **asdict(settings),
    }
    record = _read_record(record_path)
    if record is not None:
        if record.get("format") != GENERATION_FORMAT or record.get("settings") != header:
            why = _settings_difference(record.get("settings") or {}, header)
            raise InvalidInputError(
                f"{out}: holds audio generated with other settings ({why}); "
                "use another --out-dir or delete that one"
            )
    elif audio_dir.is_dir() and any(audio_dir.iterdir()):
        raise InvalidInputError(
            f"{audio_dir}: holds files but no {GENERATION_RECORD}; use another --out-dir"
        )
    else:
        record = {"format": GENERATION_FORMAT, "settings": header, "clips": {}}
    record["model"] = model_name or getattr(pipe, "name", "")  # for people; not compared
    _write_json(record_path, record)

    names = output_names([clip.id for clip in clips])
    files = [audio_dir / f"{name}.wav" for name in names]
    max_seed = LIMITS.max_seed + 1
    seeds = [(settings.seed + k) % max_seed for k in range(len(clips))]
    wanted = [
        {"caption": caption, "seed": seed, "file": f"{AUDIO_FOLDER}/{file.name}"}
        for caption, seed, file in zip(captions, seeds, files)
    ]
    pending = [
        k
        for k, clip in enumerate(clips)
        if record["clips"].get(clip.id) != wanted[k] or not _complete(files[k], rate, frames)
    ]
    batches: list[list[int]] = []
    for k in pending:  # consecutive clips only, so row i's seed seed + first + i is clip k's
        if batches and batches[-1][-1] == k - 1 and len(batches[-1]) < batch_size:
            batches[-1].append(k)
        else:
            batches.append([k])
    started = time.perf_counter()
    bar = tqdm(total=len(pending), desc="generate", unit="clip", disable=not progress, leave=False)
    for batch in batches:
        result = pipe.generate(
            [captions[k] for k in batch],
            seconds=settings.seconds,
            steps=settings.steps,
            guidance_scale=settings.guidance_scale,
            guidance_rescale=settings.guidance_rescale,
            eta=settings.eta,
            seed=seeds[batch[0]],
            progress=False,
        )
        if [int(seed) for seed in result.seeds] != [seeds[k] for k in batch]:
            raise InvalidInputError("the pipeline did not use the seeds asked for")  # defensive
        for row, k in enumerate(batch):
            write_audio(files[k], result.waveforms[row], result.sample_rate)
            record["clips"][clips[k].id] = wanted[k]
        _write_json(record_path, record)
        bar.update(len(batch))
    bar.close()
    return GenerationReport(
        files=files,
        seeds=seeds,
        generated=len(pending),
        skipped=len(clips) - len(pending),
        seconds_taken=time.perf_counter() - started,
    )


# ---- features and metrics ------------------------------------------------------------------


class Evaluator:
    """Feature models of a protocol run: PANNs (cached on disk) and CLAP (memoised in memory).

    One evaluator shared by several runs (a sweep) computes the reference features once.
    """

    def __init__(
        self,
        extractor: FeatureExtractor,
        clap: ClapScorer | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        batch_size: int = 8,
        progress: bool = True,
    ) -> None:
        if not isinstance(extractor, FeatureExtractor):
            raise InvalidInputError(
                "extractor must have sample_rate, name, fingerprint() and __call__(waveform)"
            )
        self.extractor = extractor
        self.clap = clap
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.batch_size = batch_size
        self.progress = progress
        self.prepare = PrepareSettings(sample_rate=int(extractor.sample_rate))
        self._reference_clap: dict[tuple[str, str], np.ndarray] = {}
        self._text: dict[str, np.ndarray] = {}
        self._descriptions: dict[str, Any] | None = None

    def panns(self, paths: Sequence[Path], desc: str) -> FeatureSet:
        return compute_features(
            paths, self.extractor, self.cache_dir, settings=self.prepare,
            batch_size=self.batch_size, progress=self.progress, desc=desc,
        )  # fmt: skip

    def clap_audio(self, paths: Sequence[Path], remember: bool = False) -> np.ndarray:
        """CLAP audio embeddings [N, D] of files (first channel, at the file's rate)."""
        assert self.clap is not None
        keys = [(str(Path(p).resolve()), file_sha256(p)) if remember else None for p in paths]
        out: list[np.ndarray | None] = [
            self._reference_clap.get(key) if key is not None else None for key in keys
        ]
        todo = [i for i, row in enumerate(out) if row is None]
        step = self.clap.batch_size
        for first in range(0, len(todo), step):
            chunk = todo[first : first + step]
            by_rate: dict[int, list[tuple[int, np.ndarray]]] = {}
            for i in chunk:
                audio, rate = read_channels(paths[i])
                by_rate.setdefault(rate, []).append((i, audio[:, 0]))
            for rate, items in by_rate.items():
                embeddings = self.clap.audio_embeddings([wave for _, wave in items], rate)
                for (i, _), row in zip(items, embeddings):
                    out[i] = row
                    if keys[i] is not None:
                        self._reference_clap[keys[i]] = row
        return np.stack(out)  # type: ignore[arg-type]

    def clap_text(self, texts: Sequence[str]) -> np.ndarray:
        """CLAP text embeddings [N, D], memoised per text."""
        assert self.clap is not None
        missing = sorted({text for text in texts if text not in self._text})
        if missing:
            for text, row in zip(missing, self.clap.text_embeddings(missing)):
                self._text[text] = row
        return np.stack([self._text[text] for text in texts])

    def describe(self) -> dict[str, Any]:
        if self._descriptions is None:
            self._descriptions = {
                "panns": {
                    "name": self.extractor.name,
                    "fingerprint": self.extractor.fingerprint(),
                    "sample_rate": int(self.extractor.sample_rate),
                },
                "prepare": self.prepare.to_dict(),
                "clap": self.clap.describe() if self.clap is not None else None,
                "cache_dir": str(self.cache_dir) if self.cache_dir is not None else None,
            }
        return self._descriptions


def compute_metrics(
    ids: Sequence[str],
    reference: FeatureSet,
    generated: FeatureSet,
    text_clap: np.ndarray | None = None,
    generated_clap: np.ndarray | None = None,
    reference_clap: np.ndarray | None = None,
) -> dict[str, Any]:
    """FD, KL (softmax and sigmoid), IS (mean, std, splits) and the CLAP scores."""
    n = len(ids)
    if n < MIN_CLIPS:
        raise InvalidInputError(f"the metrics need at least {MIN_CLIPS} clips, got {n}")
    reference_logits = dict(zip(ids, reference.logits))
    generated_logits = dict(zip(ids, generated.logits))
    splits = IS_SPLITS if n >= IS_SPLITS else 1
    is_mean, is_std = inception_score(generated.logits, splits=splits)
    metrics: dict[str, Any] = {
        "fd": frechet_distance(reference.embeddings, generated.embeddings),
        "kl": kl_divergence(reference_logits, generated_logits, kind="softmax"),
        "kl_sigmoid": kl_divergence(reference_logits, generated_logits, kind="sigmoid"),
        "is": is_mean,
        "is_std": is_std,
        "is_splits": splits,
        "clap": None,
        "clap_reference": None,
        "clips": n,
    }
    if text_clap is not None and generated_clap is not None:
        metrics["clap"] = clap_score(text_clap, generated_clap)
    if text_clap is not None and reference_clap is not None:
        metrics["clap_reference"] = clap_score(text_clap, reference_clap)
    return metrics


def versions() -> dict[str, str]:
    """Versions of Python and the packages the numbers depend on."""
    found = {"python": platform.python_version()}
    for package in ("ezaudio", "torch", "transformers", "numpy", "soxr", "soundfile"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def _fmt(value: Any, digits: int) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def results_markdown(results: dict[str, Any]) -> str:
    """The paper's Table II columns for one run, with the settings underneath."""
    m, s = results["metrics"], results["sampler"]
    name = results["model"]["name"] or "model"
    lines = [
        f"# Evaluation: {name}",
        "",
        "| Model | FD ↓ | KL ↓ | IS ↑ | CLAP ↑ |",
        "|---|---:|---:|---:|---:|",
        f"| {name} | {_fmt(m['fd'], 2)} | {_fmt(m['kl'], 2)} | {_fmt(m['is'], 2)} | "
        f"{_fmt(m['clap'], 3)} |",
        "",
        f"{m['clips']} clips from `{results['manifest']['path']}`; {s['steps']} DDIM steps, "
        f"guidance scale {s['guidance_scale']:g}, rescale {s['guidance_rescale']:g}, "
        f"eta {s['eta']:g}, {s['seconds']:g} s, seed {s['seed']} (+ clip index), "
        f"caption seed {s['caption_seed']}.",
        "",
        f"KL (sigmoid) {_fmt(m['kl_sigmoid'], 3)}; IS std {_fmt(m['is_std'], 3)} over "
        f"{m['is_splits']} split(s); CLAP of the captions with the reference audio "
        f"{_fmt(m['clap_reference'], 3)}.",
        "",
        f"PANNs: {results['features']['panns']['name']} "
        f"(sha256 {results['features']['panns']['fingerprint'][:12]}); CLAP: "
        + (
            f"{results['features']['clap']['name']} "
            f"(sha256 {results['features']['clap']['fingerprint'][:12]})"
            if results["features"]["clap"]
            else "not computed"
        )
        + ".",
        "",
    ]
    return "\n".join(lines)


def evaluate_model(
    clips: Sequence[EvalClip],
    pipe: Any,
    out_dir: str | os.PathLike[str],
    evaluator: Evaluator,
    settings: GenerationSettings,
    *,
    batch_size: int = 8,
    progress: bool = True,
    model_name: str = "",
    fingerprint: str | None = None,
    manifest: str | os.PathLike[str] | None = None,
    log: Log | None = None,
) -> dict[str, Any]:
    """Run the protocol for ``clips``: choose captions, generate, compute the metrics, write
    ``results.json`` and ``results.md`` into ``out_dir``; returns the results."""
    log = log or (lambda message: None)
    if len(clips) < MIN_CLIPS:
        raise InvalidInputError(f"the protocol needs at least {MIN_CLIPS} clips, got {len(clips)}")
    out = Path(out_dir)
    choices = choose_captions(clips, settings.caption_seed)
    captions = [choice["caption"] for choice in choices]
    fingerprint = fingerprint or model_fingerprint(pipe)
    report = generate_clips(
        pipe, clips, captions, out, settings, batch_size=batch_size, progress=progress,
        model_name=model_name, fingerprint=fingerprint,
    )  # fmt: skip
    log(f"{out}: generated {report.generated} clips, {report.skipped} already there")
    ids = [clip.id for clip in clips]
    started = time.perf_counter()
    reference = evaluator.panns([clip.audio for clip in clips], "reference features")
    generated = evaluator.panns(report.files, "generated features")
    text_clap = generated_clap = reference_clap = None
    if evaluator.clap is not None:
        text_clap = evaluator.clap_text(captions)
        generated_clap = evaluator.clap_audio(report.files)
        reference_clap = evaluator.clap_audio([clip.audio for clip in clips], remember=True)
    metrics = compute_metrics(ids, reference, generated, text_clap, generated_clap, reference_clap)
    feature_seconds = time.perf_counter() - started
    for choice, seed, file in zip(choices, report.seeds, report.files):
        choice["seed"] = seed
        choice["file"] = f"{AUDIO_FOLDER}/{file.name}"
    manifest_info = {"path": str(manifest) if manifest is not None else None, "sha256": None}
    if manifest is not None and Path(manifest).is_file():
        manifest_info["sha256"] = file_sha256(manifest)
    results = {
        "metrics": metrics,
        "model": {
            "name": model_name or getattr(pipe, "name", ""),
            "fingerprint": fingerprint,
            "dtype": _dtype_name(pipe),
            "device": str(pipe.device),
            "sample_rate": int(pipe.sample_rate),
        },
        "sampler": asdict(settings),
        "manifest": {**manifest_info, "clips": len(clips)},
        "features": evaluator.describe(),
        "generation": {
            "generated": report.generated,
            "skipped": report.skipped,
            "seconds": round(report.seconds_taken, 3),
        },
        "feature_cache": {
            "reference": {"computed": reference.computed, "cached": reference.cached},
            "generated": {"computed": generated.computed, "cached": generated.cached},
        },
        "feature_seconds": round(feature_seconds, 3),
        "versions": versions(),
        "command": " ".join(sys.argv) if sys.argv else "",
        "clips": choices,
    }
    _write_json(out / "results.json", results)
    markdown = results_markdown(results)
    write_atomic(out / "results.md", lambda tmp: Path(tmp).write_text(markdown, encoding="utf-8"))
    return results


# ---- sweep ---------------------------------------------------------------------------------


def cell_name(guidance_scale: float, rescale: float) -> str:
    """Folder of one sweep cell, e.g. ``cfg5_rescale0.75``."""
    return f"cfg{guidance_scale:g}_rescale{rescale:g}"


def plot_sweep(rows: Sequence[dict[str, Any]], path: str | os.PathLike[str]) -> Path:
    """FD and CLAP against the guidance scale, one line per rescale factor (paper Fig. 3)."""
    try:
        import matplotlib
    except ImportError as error:
        raise InvalidInputError(
            "the sweep plot needs matplotlib: pip install 'ezaudio[eval]'"
        ) from error
    matplotlib.use("Agg", force=True)
    from matplotlib import pyplot as plt

    panels = [("fd", "FD ↓")]
    if any(row["clap"] is not None for row in rows):
        panels.append(("clap", "CLAP ↑"))
    figure, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.8), squeeze=False)
    rescales = list(dict.fromkeys(row["guidance_rescale"] for row in rows))
    for axis, (key, label) in zip(axes[0], panels):
        for phi in rescales:
            points = sorted(
                (row["guidance_scale"], row[key])
                for row in rows
                if row["guidance_rescale"] == phi and row[key] is not None
            )
            if points:
                xs, ys = zip(*points)
                axis.plot(xs, ys, marker="o", label=f"rescale {phi:g}")
        axis.set_xlabel("guidance scale")
        axis.set_ylabel(label)
        axis.grid(True, alpha=0.3)
        axis.legend()
    figure.tight_layout()
    path = Path(path)
    try:
        write_atomic(path, lambda tmp: figure.savefig(tmp, format="png", dpi=120))
    finally:
        plt.close(figure)
    return path


def sweep_markdown(rows: Sequence[dict[str, Any]], model_name: str) -> str:
    lines = [
        f"# Guidance sweep: {model_name or 'model'}",
        "",
        "| Guidance scale | Rescale | FD ↓ | KL ↓ | IS ↑ | CLAP ↑ |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['guidance_scale']:g} | {row['guidance_rescale']:g} | {_fmt(row['fd'], 2)} | "
            f"{_fmt(row['kl'], 2)} | {_fmt(row['is'], 2)} | {_fmt(row['clap'], 3)} |"
        )
    return "\n".join([*lines, ""])


def run_sweep(
    clips: Sequence[EvalClip],
    pipe: Any,
    sweep_dir: str | os.PathLike[str],
    evaluator: Evaluator,
    settings: GenerationSettings,
    guidance_scales: Sequence[float],
    rescales: Sequence[float],
    *,
    batch_size: int = 8,
    progress: bool = True,
    model_name: str = "",
    manifest: str | os.PathLike[str] | None = None,
    log: Log | None = None,
) -> dict[str, Any]:
    """One protocol run per (guidance scale, rescale) cell; writes sweep.json/.md/.png."""
    log = log or (lambda message: None)
    scales, factors = check_grid(guidance_scales, rescales)
    folder = Path(sweep_dir)
    fingerprint = model_fingerprint(pipe)
    rows = []
    for phi in factors:
        for w in scales:
            cell = settings.replace(guidance_scale=w, guidance_rescale=phi)
            results = evaluate_model(
                clips, pipe, folder / cell_name(w, phi), evaluator, cell,
                batch_size=batch_size, progress=progress, model_name=model_name,
                fingerprint=fingerprint, manifest=manifest, log=log,
            )  # fmt: skip
            m = results["metrics"]
            rows.append({
                "guidance_scale": w, "guidance_rescale": phi, "fd": m["fd"], "kl": m["kl"],
                "is": m["is"], "clap": m["clap"], "folder": cell_name(w, phi),
            })  # fmt: skip
            log(f"guidance {w:g}, rescale {phi:g}: FD {m['fd']:.2f}, CLAP {_fmt(m['clap'], 3)}")
    table = {
        "model": {"name": model_name or getattr(pipe, "name", ""), "fingerprint": fingerprint},
        "guidance_scales": scales,
        "rescales": factors,
        "sampler": {
            k: v
            for k, v in asdict(settings).items()
            if k not in ("guidance_scale", "guidance_rescale")
        },
        "manifest": str(manifest) if manifest is not None else None,
        "features": evaluator.describe(),
        "versions": versions(),
        "cells": rows,
    }
    _write_json(folder / "sweep.json", table)
    markdown = sweep_markdown(rows, table["model"]["name"])
    write_atomic(folder / "sweep.md", lambda tmp: Path(tmp).write_text(markdown, encoding="utf-8"))
    plot_sweep(rows, folder / "sweep.png")
    return table
