"""The offline sound world: N captioned clips on disk, with splits, manifests and metadata.

``write_world(out_dir, clips, seed)`` writes::

    out_dir/
      audio/synth_000000.wav ...  16-bit PCM mono clips
      train.jsonl valid.jsonl test.jsonl    manifests with the clean captions
      test_paraphrase.jsonl       the test clips, captioned by the paraphrase templates
      train_noisy.jsonl           the train clips, a known share of captions wrong/incomplete
      all.jsonl                   every clip with its clean caption (encode once, all splits)
      metadata.jsonl              per clip: id, split, events, captions, caption noise
      world.json                  the settings, counts per split and per caption noise

Clip ``i`` is drawn from ``numpy.random.default_rng([seed, i, stream])`` alone (audio,
captions and the two candidate noisy captions each from their own stream), so it does not
depend on how many clips are made; the same seed gives byte-identical files (same machine
and library versions). Which clips go to which split and which training captions are
noisy is drawn from the seed too, with exact counts (so that part depends on N).
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import soundfile as sf

from ezaudio.errors import InvalidInputError
from ezaudio.synth import captions as cap
from ezaudio.synth.scenes import MIN_SECONDS, Scene, make_scene
from ezaudio.synth.sources import CLASSES

GENERATOR_VERSION = 1
SPLITS = ("train", "valid", "test")
NOISE_KINDS = ("none", "wrong", "incomplete")
# Random streams of one clip: default_rng([seed, index, stream]).
AUDIO, CAPTION, PARAPHRASE, WRONG, INCOMPLETE = range(5)
# World-level streams: default_rng([seed, WORLD, stream]).
WORLD = 2**32 - 1
SPLIT_STREAM, NOISE_STREAM = 0, 1


def classes() -> list[str]:
    """The names of the event classes, in a fixed order."""
    return [event.name for event in CLASSES]


def clip_id(index: int) -> str:
    return f"synth_{index:06d}"


@dataclass
class Clip:
    """One generated clip: its audio and everything said about it."""

    index: int
    scene: Scene
    caption: str  # clean, from the training templates
    paraphrase: str  # clean, from the paraphrase templates (test prompts)
    wrong: tuple[str, dict]  # a caption with one class swapped, and what was swapped
    incomplete: tuple[str, dict] | None  # a caption with one event dropped (None: 1 event)

    @property
    def id(self) -> str:
        return clip_id(self.index)

    @property
    def audio(self) -> np.ndarray:
        return self.scene.audio

    def metadata(self) -> dict:
        """JSON-ready description (split and caption noise are added by the world)."""
        scene = self.scene
        return {
            "id": self.id,
            "index": self.index,
            "audio": f"audio/{self.id}.wav",
            "sample_rate": scene.sample_rate,
            "seconds": round(scene.audio.shape[0] / scene.sample_rate, 4),
            "relation": scene.relation,
            "background": scene.background,
            "events": [event.to_json() for event in scene.events],
            "caption": self.caption,
            "paraphrase": self.paraphrase,
            "wrong_caption": {"caption": self.wrong[0], **self.wrong[1]},
            "incomplete_caption": (
                None if self.incomplete is None
                else {"caption": self.incomplete[0], **self.incomplete[1]}
            ),
        }  # fmt: skip


def _rng(seed: int, index: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, index, stream])


def make_clip(seed: int, index: int, sample_rate: int = 16000, seconds: float = 10.0) -> Clip:
    """Clip ``index`` of the world of ``seed`` (independent of any other clip)."""
    scene = make_scene(_rng(seed, index, AUDIO), sample_rate, seconds)
    views = [cap.EventView.of(event) for event in scene.events]
    clean = cap.caption(views, scene.relation, _rng(seed, index, CAPTION), cap.TRAIN)
    paraphrase = cap.caption(views, scene.relation, _rng(seed, index, PARAPHRASE), cap.PARAPHRASE)
    rng = _rng(seed, index, WRONG)
    wrong_views, wrong_detail = cap.wrong_views(views, rng)
    wrong = (cap.caption(wrong_views, scene.relation, rng, cap.TRAIN), wrong_detail)
    rng = _rng(seed, index, INCOMPLETE)
    dropped = cap.incomplete_views(views, rng)
    incomplete = None
    if dropped is not None:
        kept, detail = dropped
        incomplete = (cap.caption(kept, scene.relation, rng, cap.TRAIN), detail)
    return Clip(index, scene, clean, paraphrase, wrong, incomplete)


def _file_mode() -> int:
    """rw for whoever the umask allows (a temporary file is created 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _write_atomic(path: Path, write: Callable[[str], object]) -> Path:
    """``write(tmp)`` then rename onto ``path``: no half-written file is ever seen."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def write_wav(path: Path, audio: np.ndarray, sample_rate: int) -> Path:
    """16-bit PCM WAV, atomically. (A float WAV holds a time stamp, so it is not
    byte-reproducible; 16-bit PCM is, and half the size.)"""
    pcm = np.round(np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16)
    return _write_atomic(
        path, lambda tmp: sf.write(tmp, pcm, sample_rate, format="WAV", subtype="PCM_16")
    )


def _write_text(path: Path, text: str) -> Path:
    return _write_atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def _write_jsonl(path: Path, records: list[dict]) -> Path:
    return _write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def _render_and_write(index: int, *, seed: int, sample_rate: int, seconds: float,
                      audio_dir: str) -> dict:  # fmt: skip
    clip = make_clip(seed, index, sample_rate, seconds)
    write_wav(Path(audio_dir) / f"{clip.id}.wav", clip.audio, sample_rate)
    return clip.metadata()


def _round_half_up(value: float) -> int:
    return math.floor(value + 0.5)


def split_counts(clips: int, splits: Sequence[float]) -> dict[str, int]:
    """Exact clips per split: valid and test rounded (half up), train takes the rest."""
    valid = _round_half_up(clips * splits[1])
    test = _round_half_up(clips * splits[2])
    if valid + test > clips:
        test = clips - valid
    return {"train": clips - valid - test, "valid": valid, "test": test}


def assign_splits(seed: int, clips: int, splits: Sequence[float]) -> list[str]:
    """The split of each clip (exact counts; which clips is drawn from the seed)."""
    counts = split_counts(clips, splits)
    order = np.random.default_rng([seed, WORLD, SPLIT_STREAM]).permutation(clips)
    assigned = ["train"] * clips
    for position, index in enumerate(order):
        if position < counts["test"]:
            assigned[index] = "test"
        elif position < counts["test"] + counts["valid"]:
            assigned[index] = "valid"
    return assigned


def assign_noise(
    seed: int, records: list[dict], noisy_share: float, incomplete_share: float
) -> dict[int, str]:
    """Caption noise of each train clip: exactly round(noisy_share * train clips) noisy,
    of which round(incomplete_share * noisy) incomplete where the clip has two or more
    events (the others wrong)."""
    train = [record["index"] for record in records if record["split"] == "train"]
    noisy = _round_half_up(noisy_share * len(train))
    rng = np.random.default_rng([seed, WORLD, NOISE_STREAM])
    chosen = [train[position] for position in rng.permutation(len(train))[:noisy]]
    by_index = {record["index"]: record for record in records}
    want_incomplete = _round_half_up(incomplete_share * noisy)
    noise = dict.fromkeys(train, "none")
    for index in chosen:
        can_drop = by_index[index]["incomplete_caption"] is not None
        if want_incomplete > 0 and can_drop:
            noise[index] = "incomplete"
            want_incomplete -= 1
        else:
            noise[index] = "wrong"
    return noise


def _check(clips, seed, sample_rate, seconds, splits, noisy_share, incomplete_share, workers):
    if isinstance(clips, bool) or not isinstance(clips, int) or clips < 1:
        raise InvalidInputError(f"clips must be a whole number >= 1, got {clips!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InvalidInputError(f"seed must be a whole number >= 0, got {seed!r}")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate < 8000:
        raise InvalidInputError(f"sample_rate must be a whole number >= 8000, got {sample_rate!r}")
    if not (isinstance(seconds, (int, float)) and math.isfinite(seconds)) or seconds < MIN_SECONDS:
        raise InvalidInputError(f"seconds must be at least {MIN_SECONDS}, got {seconds!r}")
    if len(splits) != 3 or any(not math.isfinite(s) or s < 0 for s in splits):
        raise InvalidInputError(f"splits must be three shares >= 0 (train, valid, test): {splits}")
    if abs(sum(splits) - 1.0) > 1e-6:
        raise InvalidInputError(f"splits must add up to 1, got {list(splits)} = {sum(splits)}")
    for name, value in (("noisy_share", noisy_share), ("incomplete_share", incomplete_share)):
        if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
            raise InvalidInputError(f"{name} must be between 0 and 1, got {value!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InvalidInputError(f"workers must be a whole number >= 1, got {workers!r}")


def write_world(
    out_dir: str | os.PathLike[str],
    clips: int,
    seed: int,
    sample_rate: int = 16000,
    seconds: float = 10.0,
    splits: Sequence[float] = (0.8, 0.1, 0.1),
    noisy_share: float = 0.3,
    workers: int = 1,
    *,
    incomplete_share: float = 0.5,
    progress: bool = True,
) -> dict:
    """Write ``clips`` clips of the world of ``seed`` to ``out_dir``; returns world.json's
    content (settings, counts per split and per caption noise, files written)."""
    _check(clips, seed, sample_rate, seconds, splits, noisy_share, incomplete_share, workers)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InvalidInputError(f"{out}: exists and is not a folder")
    audio_dir = out / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    render = partial(
        _render_and_write, seed=seed, sample_rate=sample_rate, seconds=float(seconds),
        audio_dir=str(audio_dir),
    )  # fmt: skip
    records = _run(render, clips, workers, progress)

    split_of = assign_splits(seed, clips, splits)
    for record in records:
        record["split"] = split_of[record["index"]]
    noise = assign_noise(seed, records, noisy_share, incomplete_share)
    for record in records:
        kind = noise.get(record["index"], "none")
        record["caption_noise"] = kind
        if kind == "wrong":
            record["noisy_caption"] = record["wrong_caption"]["caption"]
        elif kind == "incomplete":
            record["noisy_caption"] = record["incomplete_caption"]["caption"]
        else:
            record["noisy_caption"] = record["caption"]

    files = _write_manifests(out, records)
    ordered = [_ordered(record) for record in records]
    _write_jsonl(out / "metadata.jsonl", ordered)
    summary = {
        "generator": "ezaudio.synth",
        "version": GENERATOR_VERSION,
        "seed": seed,
        "clips": clips,
        "sample_rate": sample_rate,
        "seconds": float(seconds),
        "splits": dict(zip(SPLITS, (float(s) for s in splits))),
        "noisy_share": float(noisy_share),
        "incomplete_share": float(incomplete_share),
        "counts": {split: split_of.count(split) for split in SPLITS},
        "caption_noise": {
            kind: sum(1 for r in records if r["split"] == "train" and r["caption_noise"] == kind)
            for kind in NOISE_KINDS
        },
        "classes": classes(),
        "events_per_class": {
            name: sum(1 for r in records for event in r["events"] if event["class"] == name)
            for name in classes()
        },
        "files": [*files, "metadata.jsonl"],
    }
    _write_text(out / "world.json", json.dumps(summary, indent=2) + "\n")
    return summary


def _run(render: Callable[[int], dict], clips: int, workers: int, progress: bool) -> list[dict]:
    from tqdm.auto import tqdm

    bar = tqdm(total=clips, desc="synth", unit="clip", disable=not progress)
    try:
        if workers == 1:
            records = []
            for index in range(clips):
                records.append(render(index))
                bar.update()
            return records
        context = _context()
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            records = []
            chunk = max(1, min(16, clips // (workers * 4)))
            for record in pool.map(render, range(clips), chunksize=chunk):
                records.append(record)
                bar.update()
            return records
    finally:
        bar.close()


def _context():
    """A fork server that imports this module once (children fork from it, already
    loaded), where the platform has one; spawn elsewhere."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__])
        return context
    return multiprocessing.get_context("spawn")


def _manifest_row(record: dict, caption: str, **extra) -> dict:
    return {"audio": record["audio"], "caption": caption, "id": record["id"],
            "split": record["split"], **extra}  # fmt: skip


def _write_manifests(out: Path, records: list[dict]) -> list[str]:
    """The manifests (only those with rows: a manifest may not be empty)."""
    tables: dict[str, list[dict]] = {
        "all.jsonl": [_manifest_row(r, r["caption"]) for r in records],
    }
    for split in SPLITS:
        rows = [r for r in records if r["split"] == split]
        if split == "test":
            tables["test.jsonl"] = [_manifest_row(r, r["caption"], paraphrase=r["paraphrase"])
                                    for r in rows]  # fmt: skip
            tables["test_paraphrase.jsonl"] = [_manifest_row(r, r["paraphrase"]) for r in rows]
        else:
            tables[f"{split}.jsonl"] = [_manifest_row(r, r["caption"]) for r in rows]
        if split == "train":
            tables["train_noisy.jsonl"] = [
                _manifest_row(r, r["noisy_caption"], caption_noise=r["caption_noise"]) for r in rows
            ]
    written = []
    for name, rows in tables.items():
        if rows:
            _write_jsonl(out / name, rows)
            written.append(name)
        elif (out / name).exists():
            (out / name).unlink()  # an earlier world's file would not match this one
    return written


METADATA_ORDER = (
    "id", "index", "split", "audio", "sample_rate", "seconds", "relation", "background",
    "events", "caption", "paraphrase", "caption_noise", "noisy_caption", "wrong_caption",
    "incomplete_caption",
)  # fmt: skip


def _ordered(record: dict) -> dict:
    return {key: record[key] for key in METADATA_ORDER}


def read_metadata(path: str | os.PathLike[str]) -> list[dict]:
    """The records of a world's metadata.jsonl (a folder means its metadata.jsonl)."""
    path = Path(path)
    if path.is_dir():
        path = path / "metadata.jsonl"
    if not path.is_file():
        raise InvalidInputError(f"{path}: metadata file not found")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
