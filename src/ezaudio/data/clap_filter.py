"""CLAP filtering of (audio, caption) pairs (paper II-C-2; issue 3, item 9).

EzAudio trains stage 2 on synthetic captions and keeps only the pairs whose CLAP
cosine similarity reaches 0.40. :func:`clap_filter` scores every pair of a manifest
with a CLAP model (:class:`ezaudio.eval.clap.ClapScorer`, by default
``laion/larger_clap_general`` from a folder or the Hugging Face cache) and writes:

- the manifest of the pairs scoring ``>= threshold`` (CSV or JSONL, by suffix);
- into the report folder: ``clap_scores.csv`` (one row per manifest entry: id, audio,
  caption, split, score -- full precision --, kept, skip reason), ``clap_report.json``
  (counts, threshold, model, score statistics and histogram) and
  ``clap_histogram.png`` when matplotlib is importable (else the JSON says why not).

Given ``scores`` (an earlier ``clap_scores.csv``) nothing is scored again: the same
manifest is re-thresholded from the stored scores. Missing, empty, unreadable and
silent files are skipped, logged and counted; they are never kept.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ezaudio.data.audio import read_audio, resample
from ezaudio.data.dataset import SILENCE_THRESHOLD, _failure_reason
from ezaudio.data.manifest import ManifestEntry, read_manifest, write_manifest
from ezaudio.errors import AudioFileError, InvalidInputError
from ezaudio.nn.component import write_atomic

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "laion/larger_clap_general"
PAPER_THRESHOLD = 0.40
CLAP_SAMPLE_RATE = 48000  # used when the scorer does not say its own rate
REPORT_NAME = "clap_report.json"
SCORES_NAME = "clap_scores.csv"
HISTOGRAM_NAME = "clap_histogram.png"
HISTOGRAM_BINS = 40  # over [-1, 1]: bins of 0.05
SCORE_FIELDS = ("id", "audio", "caption", "split", "score", "kept", "skipped")


def check_threshold(threshold: float) -> float:
    """A cosine-similarity threshold: a finite number in [-1, 1]."""
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise InvalidInputError(f"threshold must be a number, got {threshold!r}")
    if not math.isfinite(threshold) or not -1 <= threshold <= 1:
        raise InvalidInputError(f"threshold must be in [-1, 1] (a cosine), got {threshold}")
    return float(threshold)


def default_report_dir(out: str | os.PathLike[str]) -> Path:
    """``data/kept.jsonl`` -> ``data/kept.clap-report/``."""
    out = Path(out)
    return out.parent / f"{out.stem}.clap-report"


def score_entries(
    entries: Sequence[ManifestEntry], scorer: Any, batch_size: int = 16, progress: bool = True
) -> tuple[dict[str, float], dict[str, str]]:
    """CLAP score of every entry: ({id: cosine}, {id: skip reason} for unusable files).

    Only the part of a file that the scorer looks at is loaded and resampled (its first
    ``scorer.crop_seconds``); files are scored as they are, without peak normalisation.
    """
    rate = int(getattr(scorer, "sample_rate", CLAP_SAMPLE_RATE))
    seconds = getattr(scorer, "crop_seconds", None)
    scores: dict[str, float] = {}
    skipped: dict[str, str] = {}
    pending: list[tuple[ManifestEntry, np.ndarray]] = []

    def flush() -> None:
        if not pending:
            return
        values = np.asarray(
            scorer.score_pairs([a for _, a in pending], rate, [e.caption for e, _ in pending])
        ).reshape(-1)
        if len(values) != len(pending):
            raise RuntimeError(f"CLAP scorer gave {len(values)} scores for {len(pending)} pairs")
        for (entry, _), value in zip(pending, values):
            scores[entry.id] = float(value)
        bar.update(len(pending))
        pending.clear()

    bar = tqdm(total=len(entries), unit="pair", desc="CLAP scores", disable=not progress)
    try:
        for entry in entries:
            audio, reason = _load(entry, rate, seconds)
            if audio is None:
                skipped[entry.id] = reason
                bar.update(1)
                continue
            pending.append((entry, audio))
            if len(pending) == batch_size:
                flush()
        flush()
    finally:
        bar.close()
    return scores, skipped


def _load(entry: ManifestEntry, rate: int, seconds: float | None) -> tuple[np.ndarray | None, str]:
    """The file's first ``seconds`` (all of it for None) as mono float32 [n] at ``rate``."""
    try:
        audio, source_rate = read_audio(entry.audio)  # [n] mono float32
    except (AudioFileError, OSError) as error:
        reason = _failure_reason(entry.audio)
        logger.warning("skipping audio file %s (%s): %s", entry.audio, reason, error)
        return None, reason
    if seconds is not None:
        audio = audio[: math.ceil(seconds * source_rate)]
    audio = resample(audio, source_rate, rate)
    if audio.size == 0:
        reason = "empty"
    elif float(np.abs(audio).max()) < SILENCE_THRESHOLD:
        reason = "silent"
    else:
        return audio, ""
    logger.warning("skipping audio file %s (%s)", entry.audio, reason)
    return None, reason


def read_scores(path: str | os.PathLike[str]) -> tuple[dict[str, float], dict[str, str]]:
    """Scores and skip reasons of a ``clap_scores.csv`` written by :func:`clap_filter`."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"{path}: scores file not found")
    scores: dict[str, float] = {}
    skipped: dict[str, str] = {}
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not {"id", "score", "skipped"} <= set(reader.fieldnames):
            raise InvalidInputError(f"{path}: not a {SCORES_NAME} (needs id, score, skipped)")
        for line, row in enumerate(reader, start=2):
            if row["skipped"]:
                skipped[row["id"]] = row["skipped"]
                continue
            try:
                scores[row["id"]] = float(row["score"])
            except ValueError as error:
                bad = f"{path}, line {line}: bad score {row['score']!r}"
                raise InvalidInputError(bad) from error
    return scores, skipped


def clap_filter(
    manifest: str | os.PathLike[str],
    out: str | os.PathLike[str],
    clap: str | os.PathLike[str] = DEFAULT_MODEL,
    threshold: float = PAPER_THRESHOLD,
    report_dir: str | os.PathLike[str] | None = None,
    batch_size: int = 16,
    device: str = "auto",
    *,
    scores: str | os.PathLike[str] | None = None,
    scorer: Any = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Write the manifest of the pairs of ``manifest`` with CLAP score >= ``threshold``.

    Scores with ``scorer`` if given, else loads ``ClapScorer.from_pretrained(clap)``;
    with ``scores`` (an earlier ``clap_scores.csv``) reuses those. Writes the report
    (see the module doc) before the manifest; raises :class:`InvalidInputError` when
    no pair is kept (the report is still written). Returns the report dict.
    """
    threshold = check_threshold(threshold)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidInputError(f"batch size must be a positive integer, got {batch_size!r}")
    out = Path(out)
    if out.is_dir():
        raise InvalidInputError(f"{out}: is a folder, expected a manifest file name")
    if out.suffix.lower() not in (".csv", ".jsonl", ".ndjson"):
        raise InvalidInputError(f"{out}: the output manifest must end in .csv or .jsonl")
    if out.absolute() == Path(manifest).absolute():
        raise InvalidInputError(f"{out}: refusing to overwrite the input manifest")
    entries = read_manifest(manifest)
    report_dir = Path(report_dir) if report_dir else default_report_dir(out)

    model_info: dict[str, Any] | None = None
    if scores is not None:
        by_id, skipped = read_scores(scores)
        missing = [e.id for e in entries if e.id not in by_id and e.id not in skipped]
        if missing:
            raise InvalidInputError(
                f"{scores}: no score for {len(missing)} entries of {manifest} (e.g. "
                f"{missing[0]!r}); score them again without --scores"
            )
        model, model_info = _previous_model(Path(scores), str(clap))
    else:
        if scorer is None:
            from ezaudio.eval.clap import ClapScorer

            scorer = ClapScorer.from_pretrained(str(clap), device=device, batch_size=batch_size)
        by_id, skipped = score_entries(entries, scorer, batch_size, progress)
        model = str(getattr(scorer, "name", "") or clap)
        if hasattr(scorer, "describe"):
            model_info = scorer.describe()  # name, weights fingerprint, crop, padding, rates

    kept = [e for e in entries if e.id in by_id and by_id[e.id] >= threshold]
    report = _write_report(
        report_dir, manifest, out, (model, model_info), threshold, entries, by_id, skipped
    )
    if not kept:
        best = max(by_id.values(), default=float("nan"))
        raise InvalidInputError(
            f"{manifest}: no pair reaches CLAP score {threshold} (best {best:.3f}); "
            f"scores in {report_dir / SCORES_NAME}"
        )
    write_manifest(out, kept)
    return report


def _previous_model(scores: Path, default: str) -> tuple[str, dict[str, Any] | None]:
    """Model name and description from the report next to an earlier scores file."""
    try:
        report = json.loads((scores.parent / REPORT_NAME).read_text(encoding="utf-8"))
        return str(report.get("model") or default), report.get("model_info")
    except (OSError, ValueError, AttributeError):
        return default, None


def _write_report(
    folder: Path,
    manifest: str | os.PathLike[str],
    out: Path,
    model_and_info: tuple[str, dict[str, Any] | None],
    threshold: float,
    entries: Sequence[ManifestEntry],
    scores: dict[str, float],
    skipped: dict[str, str],
) -> dict[str, Any]:
    model, model_info = model_and_info
    folder.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SCORE_FIELDS, lineterminator="\n")
    writer.writeheader()
    for entry in entries:
        score = scores.get(entry.id)
        writer.writerow({
            "id": entry.id, "audio": str(entry.audio), "caption": entry.caption,
            "split": entry.split, "score": "" if score is None else repr(score),
            "kept": int(score is not None and score >= threshold),
            "skipped": skipped.get(entry.id, ""),
        })  # fmt: skip
    text = buffer.getvalue()
    write_atomic(folder / SCORES_NAME, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))

    values = np.array([scores[e.id] for e in entries if e.id in scores], dtype=np.float64)
    counts, edges = np.histogram(np.clip(values, -1, 1), bins=HISTOGRAM_BINS, range=(-1, 1))
    kept = int((values >= threshold).sum())
    report: dict[str, Any] = {
        "manifest": str(Path(manifest).absolute()),
        "output": str(out.absolute()),
        "report_dir": str(folder),
        "model": model,
        "model_info": model_info,
        "threshold": threshold,
        "counts": {
            "pairs": len(entries),
            "scored": len(values),
            "kept": kept,
            "dropped": len(values) - kept,
            "skipped": len(skipped),
        },
        "skipped": dict(sorted(Counter(skipped.values()).items())),
        "scores": _statistics(values),
        "histogram": {"bin_edges": [round(float(e), 4) for e in edges], "counts": counts.tolist()},
        "scores_csv": SCORES_NAME,
    }
    report["png"], report["png_note"] = _histogram_png(folder, values, threshold, model)
    text = json.dumps(report, indent=1, ensure_ascii=False) + "\n"
    write_atomic(folder / REPORT_NAME, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return report


def _statistics(values: np.ndarray) -> dict[str, float | None]:
    if not len(values):
        return {"mean": None, "median": None, "min": None, "max": None}
    return {
        "mean": float(values.mean()),
        "median": float(np.median(values)),
        "min": float(values.min()),
        "max": float(values.max()),
    }


def _histogram_png(
    folder: Path, values: np.ndarray, threshold: float, model: str
) -> tuple[str | None, str]:
    """Draw the histogram with matplotlib if it is importable: (file name or None, note)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None, "matplotlib is not importable: no PNG histogram written"
    figure, axes = plt.subplots(figsize=(6, 3.5))
    axes.hist(values, bins=HISTOGRAM_BINS, range=(-1, 1), color="tab:blue")
    axes.axvline(threshold, color="tab:red", linestyle="--", label=f"threshold {threshold}")
    axes.set_xlabel("CLAP cosine similarity")
    axes.set_ylabel("pairs")
    axes.set_title(f"{len(values)} pairs, {model}", fontsize=9)
    axes.legend()
    figure.tight_layout()
    write_atomic(folder / HISTOGRAM_NAME, lambda tmp: figure.savefig(tmp, format="png", dpi=100))
    plt.close(figure)
    return HISTOGRAM_NAME, "histogram drawn with matplotlib"


__all__ = [
    "DEFAULT_MODEL",
    "PAPER_THRESHOLD",
    "check_threshold",
    "clap_filter",
    "default_report_dir",
    "read_scores",
    "score_entries",
]
