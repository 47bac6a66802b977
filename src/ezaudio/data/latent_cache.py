"""Latent cache: a manifest's clips encoded once by the frozen VAE (issue 3, item 2).

``ezaudio data encode`` runs every clip of a manifest through the VAE encoder and
stores its *posterior* -- ``mean`` and ``std``, not a sample -- so that training draws
``latent = mean + std * noise`` afresh at every step (from the trainer's seeded
generator), exactly as when it encodes raw audio, without paying for the encoder.

Layout of a cache folder::

    index.json               what is where (see below); rewritten after every shard
    shard-00000.safetensors  clips 0 .. S-1 of the manifest (S = shard size)
    shard-00001.safetensors  clips S .. 2S-1, ...

Shard ``k`` always covers manifest positions ``[k * S, (k + 1) * S)`` (after the
``split`` filter), so a shard is either complete or absent. Each clip at position
``p`` is stored under key ``"%08d" % p`` as three tensors: ``<key>.mean`` and
``<key>.std`` ([C, L], ``dtype``: float32 by default, exact; float16 halves the disk
and costs ~1e-3 relative rounding, far below any posterior std) and ``<key>.valid``
([L] bool, frames holding real audio). The shard's safetensors metadata (key
``ezaudio_latent_shard``) repeats its clips, its skipped files and the VAE fingerprint,
so ``index.json`` can always be rebuilt from the shards alone.

``index.json`` holds ``format``/``version``; ``vae``: ``fingerprint`` (SHA-256 of the
VAE config and of every weight tensor, see :func:`vae_fingerprint`), ``sample_rate``,
``hop_length``, ``latent_dim``, ``latent_rate``, ``folder``; ``dtype``; ``settings``
(manifest, split, shard_size, max_seconds); ``shards`` (total, complete); ``complete``;
``clips``: per clip ``id``, ``caption``, ``split``, ``shard`` (file name), ``key``,
``frames``; ``skipped`` (reason -> count) and ``skipped_files`` (id, audio, reason).

Whole clips are encoded -- no random crop; ``max_seconds`` keeps only the first
seconds of a long file -- each peak-normalised as a whole (``x / (max|x| + 1e-9)``,
as the official loader does per crop), so training crops in latent space
(:class:`LatentClipDataset`). Clips of equal length are batched together; a clip of a
length of its own is encoded alone, so every cached posterior equals
``vae.encode_distribution`` of that file by itself (no batch padding at its end).

Re-captioning without encoding again: ``reuse=`` another complete cache made by the same
VAE with the same ``max_seconds`` and ``dtype`` (``ezaudio data encode --reuse CACHE``).
A clip whose id and audio file (as its manifest resolves it) are in that cache takes its
posterior from there, bit for bit; the others are encoded. So a manifest of new captions
for already-encoded audio (CLAP-filtered captions at several thresholds, say) costs file
copies, not encoder passes. Shards record how many clips they reused.

Resuming: shards are written atomically (temp file + rename) and a re-run skips every
shard already on disk (after checking it was made by the same VAE for the same
manifest ids) and encodes only the rest. A cache made with another VAE, or other
settings, is refused with a one-line error. Unreadable, missing, empty and silent
files are skipped, logged and counted (a skipped file in a finished shard stays
skipped: delete that shard to retry it).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ezaudio.data.audio import read_audio
from ezaudio.data.dataset import PEAK_EPS, SILENCE_THRESHOLD, _failure_reason, collate_skipping
from ezaudio.data.manifest import ManifestEntry, read_manifest
from ezaudio.errors import AudioFileError, CheckpointError, InvalidInputError
from ezaudio.nn.component import config_to_dict, write_atomic
from ezaudio.nn.oobleck import WaveformVAE

logger = logging.getLogger(__name__)

FORMAT = "ezaudio-latent-cache"
VERSION = 1
INDEX_NAME = "index.json"
SHARD_PREFIX = "shard-"
SHARD_SUFFIX = ".safetensors"
METADATA_KEY = "ezaudio_latent_shard"
DTYPES = {"float32": torch.float32, "float16": torch.float16}
# Settings that must stay the same for a re-run to resume an existing cache.
RESUME_SETTINGS = ("split", "shard_size", "max_seconds")


def shard_name(number: int) -> str:
    """File name of shard ``number``: ``shard-00000.safetensors``."""
    return f"{SHARD_PREFIX}{number:05d}{SHARD_SUFFIX}"


def vae_fingerprint(vae: WaveformVAE) -> str:
    """SHA-256 (hex) of the VAE's config and of every weight (name, dtype, shape, bytes).

    Two VAEs have the same fingerprint exactly when they encode alike; the cache
    records it and training refuses a cache made by another VAE.
    """
    digest = hashlib.sha256()
    digest.update(json.dumps(config_to_dict(vae.config), sort_keys=True).encode())
    for name, tensor in sorted(vae.state_dict().items()):
        tensor = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


# ---- encoding -------------------------------------------------------------------------------


def encode_manifest(
    manifest: str | os.PathLike[str],
    vae_folder: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    clip_seconds: float | None = None,
    batch_size: int = 8,
    shard_size: int = 256,
    device: str | torch.device = "cpu",
    split: str | None = None,
    *,
    dtype: str = "float32",
    progress: bool = True,
    reuse: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Encode the clips of ``manifest`` (only ``split`` when given) into a latent cache.

    ``clip_seconds`` caps each file at its first seconds (None: whole files). ``reuse``:
    a cache of the same VAE and settings whose posteriors are copied for the clips it
    holds (same id and audio file) instead of encoding them again.
    Resumes a cache already in ``out_dir``; returns the index (as in ``index.json``).
    """
    from ezaudio.pipeline import resolve_device

    if not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidInputError(f"batch size must be a positive integer, got {batch_size!r}")
    if not isinstance(shard_size, int) or shard_size < 1:
        raise InvalidInputError(f"shard size must be a positive integer, got {shard_size!r}")
    if clip_seconds is not None and not (math.isfinite(clip_seconds) and clip_seconds > 0):
        raise InvalidInputError(f"max seconds must be positive, got {clip_seconds!r}")
    if dtype not in DTYPES:
        raise InvalidInputError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    entries = read_manifest(manifest, split=split)
    if not entries:
        raise InvalidInputError(f"{manifest}: no clips in split {split!r}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InvalidInputError(f"{out}: exists and is not a folder")

    vae = WaveformVAE.from_pretrained(vae_folder).eval()
    vae.requires_grad_(False)
    header = {
        "format": FORMAT,
        "version": VERSION,
        "vae": {
            "folder": str(Path(vae_folder).absolute()),
            "fingerprint": vae_fingerprint(vae),
            "sample_rate": vae.sample_rate,
            "hop_length": vae.hop_length,
            "latent_dim": vae.latent_dim,
            "latent_rate": vae.latent_rate,
        },
        "dtype": dtype,
        "settings": {
            "manifest": str(Path(manifest).absolute()),
            "split": split,
            "shard_size": shard_size,
            "max_seconds": clip_seconds,
        },
    }
    _check_existing_index(out, header)
    reused = ReusablePosteriors(reuse, header) if reuse is not None else None
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(f".{SHARD_PREFIX}*.tmp"):  # left by a killed write
        stale.unlink()

    shards = [entries[i : i + shard_size] for i in range(0, len(entries), shard_size)]
    done = _finished_shards(out, shards, shard_size, header)
    index = _write_index(out, header, done, len(shards))
    pending = [number for number in range(len(shards)) if number not in done]
    if not pending:
        return index
    vae.to(resolve_device(device))
    max_samples = None if clip_seconds is None else max(1, round(clip_seconds * vae.sample_rate))
    bar = tqdm(
        total=sum(len(shards[n]) for n in pending), unit="clip", desc="encoding",
        disable=not progress,
    )  # fmt: skip
    try:
        for number in pending:
            done[number] = _encode_shard(
                out, number, number * shard_size, shards[number], vae, header,
                batch_size, max_samples, DTYPES[dtype], bar, reused,
            )  # fmt: skip
            index = _write_index(out, header, done, len(shards))
    finally:
        bar.close()
    return index


def _check_existing_index(out: Path, header: dict[str, Any]) -> None:
    path = out / INDEX_NAME
    if not path.is_file():
        return
    old = read_index(out, require_complete=False)
    old_print, new_print = old["vae"]["fingerprint"], header["vae"]["fingerprint"]
    if old_print != new_print:
        raise InvalidInputError(
            f"{out}: this latent cache was encoded with another VAE (fingerprint "
            f"{old_print[:12]}, {header['vae']['folder']} has {new_print[:12]}); "
            "use a new output folder or delete this one"
        )
    for name, before, now in _setting_changes(old, header, (*RESUME_SETTINGS, "dtype")):
        raise InvalidInputError(
            f"{out}: this latent cache was encoded with {name}={before!r}, not {now!r}; "
            "re-run with the same settings to resume, or use a new output folder"
        )


def _setting_changes(
    old: dict[str, Any], header: dict[str, Any], names: Sequence[str]
) -> list[tuple[str, Any, Any]]:
    """(name, old value, new value) of each setting in ``names`` (``dtype`` or a
    ``settings`` key) that differs between an existing index and this run's header."""
    changes = []
    for name in names:
        before = old["dtype"] if name == "dtype" else old["settings"].get(name)
        now = header["dtype"] if name == "dtype" else header["settings"][name]
        if before != now:
            changes.append((name, before, now))
    return changes


def _finished_shards(
    out: Path, shards: list[list[ManifestEntry]], shard_size: int, header: dict[str, Any]
) -> dict[int, dict[str, Any]]:
    """Metadata of the shards already on disk, checked against this run."""
    done: dict[int, dict[str, Any]] = {}
    for path in sorted(out.glob(f"{SHARD_PREFIX}*{SHARD_SUFFIX}")):
        number_text = path.name[len(SHARD_PREFIX) : -len(SHARD_SUFFIX)]
        if not number_text.isdigit():
            continue
        number = int(number_text)
        if number >= len(shards):
            raise InvalidInputError(
                f"{path}: shard beyond the {sum(map(len, shards))} clips of the manifest "
                "(the manifest changed?); use a new output folder"
            )
        meta = read_shard_metadata(path)
        if meta["fingerprint"] != header["vae"]["fingerprint"]:
            raise InvalidInputError(
                f"{path}: encoded with another VAE (fingerprint {meta['fingerprint'][:12]}); "
                "use a new output folder or delete this one"
            )
        ids = [entry.id for entry in shards[number]]
        if meta["ids"] != ids or meta["first"] != number * shard_size:
            raise InvalidInputError(
                f"{path}: holds other clips than the manifest's positions "
                f"{number * shard_size}..{number * shard_size + len(ids) - 1} "
                "(the manifest changed?); use a new output folder"
            )
        done[number] = meta
    return done


def read_shard_metadata(path: Path) -> dict[str, Any]:
    """The ``ezaudio_latent_shard`` metadata of a shard file (one-line errors)."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        return json.loads(metadata[METADATA_KEY])
    except (SafetensorError, OSError, KeyError, ValueError) as error:
        raise CheckpointError(
            f"{path}: not a readable latent-cache shard ({type(error).__name__}); delete it "
            "and re-run to encode it again"
        ) from error


def _load_clip(entry: ManifestEntry, rate: int, max_samples: int | None):
    """(audio [n] float32 peak-normalised, None) or (None, (reason, detail))."""
    try:
        audio, _ = read_audio(entry.audio, rate)
    except (AudioFileError, OSError) as error:
        return None, (_failure_reason(entry.audio), str(error))
    if max_samples is not None:
        audio = audio[:max_samples]
    if audio.size == 0:
        return None, ("empty", "no samples left after resampling")
    peak = float(np.abs(audio).max())
    if peak < SILENCE_THRESHOLD:
        return None, ("silent", f"peak {peak:.1e} below {SILENCE_THRESHOLD:.0e}")
    return (audio / (peak + PEAK_EPS)).astype(np.float32), None


@torch.no_grad()
def _encode_shard(
    out: Path,
    number: int,
    first: int,
    entries: list[ManifestEntry],
    vae: WaveformVAE,
    header: dict[str, Any],
    batch_size: int,
    max_samples: int | None,
    dtype: torch.dtype,
    bar: tqdm,
    reused: ReusablePosteriors | None = None,
) -> dict[str, Any]:
    device = next(vae.parameters()).device
    by_length: dict[int, list[tuple[int, ManifestEntry, np.ndarray]]] = defaultdict(list)
    skipped = []
    tensors: dict[str, torch.Tensor] = {}
    clips = []
    for position, entry in enumerate(entries, start=first):
        stored = reused.take(entry) if reused is not None else None
        if stored is not None:  # the same file's posterior from the other cache
            key = f"{position:08d}"
            for part, tensor in stored.items():
                tensors[f"{key}.{part}"] = tensor
            clips.append({
                "id": entry.id, "caption": entry.caption, "split": entry.split,
                "shard": shard_name(number), "key": key, "frames": stored["mean"].shape[-1],
            })  # fmt: skip
            bar.update(1)
            continue
        audio, failure = _load_clip(entry, vae.sample_rate, max_samples)
        if audio is None:
            reason, detail = failure
            logger.warning("skipping audio file %s (%s): %s", entry.audio, reason, detail)
            skipped.append({"id": entry.id, "audio": str(entry.audio), "reason": reason})
            bar.update(1)
            continue
        if len(audio) < vae.hop_length:  # the encoder needs one frame of samples
            audio = np.pad(audio, (0, vae.hop_length - len(audio)))
        by_length[len(audio)].append((position, entry, audio))

    reused_here = len(clips)
    for length in sorted(by_length):
        group = by_length[length]
        for start in range(0, len(group), batch_size):
            batch = group[start : start + batch_size]
            audio = torch.from_numpy(np.stack([item[2] for item in batch]))[:, None]  # [B, 1, N]
            mean, std = vae.encode_distribution(audio.to(device))  # [B, C, L] each
            for (position, entry, _), clip_mean, clip_std in zip(batch, mean, std):
                key = f"{position:08d}"
                frames = clip_mean.shape[-1]
                tensors[f"{key}.mean"] = clip_mean.to("cpu", dtype).contiguous()
                tensors[f"{key}.std"] = clip_std.to("cpu", dtype).contiguous()
                tensors[f"{key}.valid"] = torch.ones(frames, dtype=torch.bool)
                clips.append({
                    "id": entry.id, "caption": entry.caption, "split": entry.split,
                    "shard": shard_name(number), "key": key, "frames": frames,
                })  # fmt: skip
            bar.update(len(batch))
    clips.sort(key=lambda clip: clip["key"])
    meta = {
        "fingerprint": header["vae"]["fingerprint"],
        "first": first,
        "ids": [entry.id for entry in entries],
        "clips": clips,
        "skipped": skipped,
        "reused": reused_here,
    }
    metadata = {METADATA_KEY: json.dumps(meta, ensure_ascii=False)}
    write_atomic(out / shard_name(number), lambda tmp: save_file(tensors, tmp, metadata=metadata))
    return meta


def _write_index(
    out: Path, header: dict[str, Any], done: dict[int, dict[str, Any]], total: int
) -> dict[str, Any]:
    clips = [clip for number in sorted(done) for clip in done[number]["clips"]]
    skipped_files = [item for number in sorted(done) for item in done[number]["skipped"]]
    index = {
        **header,
        "shards": {"total": total, "complete": [shard_name(n) for n in sorted(done)]},
        "complete": len(done) == total,
        "skipped": dict(sorted(Counter(item["reason"] for item in skipped_files).items())),
        "skipped_files": skipped_files,
        "reused": sum(done[number].get("reused", 0) for number in done),
        "clips": clips,
    }
    text = json.dumps(index, indent=1, ensure_ascii=False) + "\n"
    write_atomic(out / INDEX_NAME, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return index


def read_index(folder: str | os.PathLike[str], require_complete: bool = True) -> dict[str, Any]:
    """Read and check a cache's ``index.json``; by default refuse an unfinished cache."""
    folder = Path(folder)
    path = folder / INDEX_NAME
    if not path.is_file():
        raise InvalidInputError(
            f"{folder}: not a latent cache (no {INDEX_NAME}); make one with `ezaudio data encode`"
        )
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidInputError(f"{path}: unreadable latent-cache index ({error})") from error
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise InvalidInputError(f"{path}: not an ezaudio latent-cache index")
    if index.get("version") != VERSION:
        raise InvalidInputError(
            f"{path}: latent-cache version {index.get('version')!r}, this ezaudio reads {VERSION}"
        )
    if require_complete and not index.get("complete"):
        shards = index.get("shards", {})
        raise InvalidInputError(
            f"{folder}: unfinished latent cache ({len(shards.get('complete', []))} of "
            f"{shards.get('total')} shards); re-run `ezaudio data encode` to finish it"
        )
    return index


class ReusablePosteriors:
    """The posteriors of a finished cache, looked up by clip id and audio file.

    Refuses (:class:`InvalidInputError`) a cache of another VAE, ``max_seconds`` or
    ``dtype`` than ``header``'s, and one whose manifest cannot be read any more (its audio
    files are what identifies a clip)."""

    def __init__(self, folder: str | os.PathLike[str], header: dict[str, Any]) -> None:
        self.folder = Path(folder)
        index = read_index(self.folder)
        if index["vae"]["fingerprint"] != header["vae"]["fingerprint"]:
            raise InvalidInputError(
                f"{self.folder}: cannot reuse a cache encoded with another VAE "
                f"(fingerprint {index['vae']['fingerprint'][:12]})"
            )
        for name, before, now in _setting_changes(index, header, ("max_seconds", "dtype")):
            raise InvalidInputError(
                f"{self.folder}: cannot reuse a cache encoded with {name}={before!r} "
                f"for {name}={now!r}"
            )
        settings = index["settings"]
        audio = {
            entry.id: entry.audio.resolve()
            for entry in read_manifest(settings["manifest"], split=settings["split"])
        }
        self.clips = {
            (clip["id"], audio[clip["id"]]): clip for clip in index["clips"] if clip["id"] in audio
        }
        self._handles: dict[str, Any] = {}

    def take(self, entry: ManifestEntry) -> dict[str, torch.Tensor] | None:
        """``mean``, ``std`` [C, L] and ``valid`` [L] of ``entry``'s file, or None."""
        clip = self.clips.get((entry.id, entry.audio.resolve()))
        if clip is None:
            return None
        if clip["shard"] not in self._handles:
            self._handles[clip["shard"]] = safe_open(
                str(self.folder / clip["shard"]), framework="pt"
            )
        handle = self._handles[clip["shard"]]
        return {
            part: handle.get_tensor(f"{clip['key']}.{part}") for part in ("mean", "std", "valid")
        }


# ---- reading --------------------------------------------------------------------------------


class LatentClipDataset(Dataset):
    """Fixed-length latent crops of a latent cache, as a torch ``Dataset``.

    Item ``index`` is a dict: ``mean`` and ``std`` float32 [C, F] (F = ``clip_frames``),
    ``valid`` bool [F] (False on zero-padding), ``caption`` and ``id``. A clip longer
    than F frames is cropped at a start drawn from ``(seed, epoch, index)`` alone
    (``random_crop=False``: its first F frames); a shorter one is zero-padded at the end
    (mean = std = 0 there, so a sampled latent is 0 on padding). ``split`` keeps only
    that split's clips. ``skipped`` counts the files the encoder skipped, by reason.
    """

    def __init__(
        self,
        index_dir: str | os.PathLike[str],
        clip_frames: int,
        seed: int = 0,
        *,
        split: str | None = None,
        random_crop: bool = True,
    ) -> None:
        if not isinstance(clip_frames, int) or clip_frames < 1:
            raise InvalidInputError(f"clip_frames must be a positive integer, got {clip_frames!r}")
        if seed < 0:
            raise InvalidInputError(f"seed must be >= 0, got {seed}")
        self.folder = Path(index_dir)
        self.index = read_index(self.folder)
        vae = self.index["vae"]
        self.fingerprint: str = vae["fingerprint"]
        self.sample_rate: int = vae["sample_rate"]
        self.hop_length: int = vae["hop_length"]
        self.latent_dim: int = vae["latent_dim"]
        self.clips = [c for c in self.index["clips"] if split is None or c["split"] == split]
        self.clip_frames = clip_frames
        self.seed = seed
        self.random_crop = random_crop
        self.epoch = 0
        self.skipped: Counter[str] = Counter(self.index.get("skipped", {}))
        self._handles: dict[str, Any] = {}
        self._pid = os.getpid()

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch the crops are drawn for (before each epoch's iteration)."""
        if epoch < 0:
            raise InvalidInputError(f"epoch must be >= 0, got {epoch}")
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.clips)

    def crop_start(self, frames: int, index: int) -> int:
        """First frame of the crop of a clip of ``frames`` frames at ``index`` this epoch."""
        excess = frames - self.clip_frames
        if excess <= 0 or not self.random_crop:
            return 0
        rng = np.random.default_rng([self.seed, self.epoch, index])
        return int(rng.integers(0, excess + 1))

    def __getitem__(self, index: int) -> dict[str, Any]:
        clip = self.clips[index]
        start = self.crop_start(clip["frames"], index)
        end = min(start + self.clip_frames, clip["frames"])
        handle = self._handle(clip["shard"])
        key = clip["key"]
        mean = torch.zeros(self.latent_dim, self.clip_frames)  # [C, F]
        std = torch.zeros(self.latent_dim, self.clip_frames)  # [C, F]
        valid = torch.zeros(self.clip_frames, dtype=torch.bool)  # [F]
        mean[:, : end - start] = handle.get_slice(f"{key}.mean")[:, start:end].float()
        std[:, : end - start] = handle.get_slice(f"{key}.std")[:, start:end].float()
        valid[: end - start] = handle.get_slice(f"{key}.valid")[start:end]
        return {"mean": mean, "std": std, "valid": valid, "caption": clip["caption"],
                "id": clip["id"]}  # fmt: skip

    def _handle(self, shard: str):
        if self._pid != os.getpid():  # a DataLoader worker: open its own files
            self._handles, self._pid = {}, os.getpid()
        if shard not in self._handles:
            path = self.folder / shard
            try:
                self._handles[shard] = safe_open(str(path), framework="pt")
            except (SafetensorError, OSError) as error:
                message = f"{path}: cannot read latent-cache shard ({error})"
                raise CheckpointError(message) from error
        return self._handles[shard]

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_handles"] = {}  # open files do not travel to worker processes
        return state


def collate_latents(batch: Sequence[dict[str, Any] | None]) -> dict[str, Any] | None:
    """Collate :class:`LatentClipDataset` items: ``mean``/``std`` [B, C, F], ``valid``
    [B, F], ``caption`` and ``id`` lists (Nones dropped; None if none is left)."""
    return collate_skipping(batch)


__all__ = [
    "INDEX_NAME",
    "LatentClipDataset",
    "collate_latents",
    "encode_manifest",
    "read_index",
    "read_shard_metadata",
    "shard_name",
    "vae_fingerprint",
]
