"""PANNs features of audio files, with a content-keyed cache that can never go stale.

:func:`compute_features` turns a list of audio files into an embedding matrix [N, D] and a
logit matrix [N, C] with any :class:`FeatureExtractor` (``PannsExtractor`` wraps the CNN14
of :mod:`ezaudio.eval.panns`; a small test network fits the same interface).

**Cache key.** Each file's features are stored under ``cache_dir`` in a file named by
``sha256`` of the JSON of

* the extractor's :meth:`~FeatureExtractor.fingerprint` (for a torch module: sha256 of its
  class, config and every state-dict tensor's name, dtype, shape and bytes);
* the sha256 of the audio file's bytes (not its name or modification time);
* the preparation settings (:class:`~ezaudio.eval.prepare.PrepareSettings`: rate, channel,
  DC removal, padding, resampler);
* :data:`FEATURE_FORMAT` (bumped whenever this code computes features differently).

Any change to any of these is a different file name, so a changed file, a changed model or
changed preparation misses the cache rather than reading old numbers (``audioldm_eval``
keys its cache by folder name only). The key's parts are stored inside the entry too and
checked on every read; an unreadable entry is recomputed and overwritten. Entries are
written atomically (temp file + rename).

**Batching.** Clips go through the extractor in batches of equal prepared length only
(generated clips all have one length), so a batch never pads a clip and every feature is
what the extractor gives that clip alone.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from ezaudio.errors import AudioFileError, CheckpointError, InvalidInputError
from ezaudio.eval.prepare import PrepareSettings, read_for_eval
from ezaudio.nn.component import write_atomic

FEATURE_FORMAT = 1
"""Version of the feature computation; part of every cache key."""

READ_CHUNK = 64
"""Files read and prepared at a time (bounds memory; batches form within a chunk)."""


@runtime_checkable
class FeatureExtractor(Protocol):
    """What :func:`compute_features` needs of a feature model.

    ``sample_rate``: the rate waveforms are prepared at. ``name``: for display only.
    ``fingerprint()``: a string that changes whenever the model's outputs may change
    (config or weights). ``__call__(waveform [B, N] float32 tensor)`` returns
    ``(embedding [B, D], logits [B, C])`` as tensors or arrays.
    """

    @property
    def sample_rate(self) -> int: ...

    @property
    def name(self) -> str: ...

    def fingerprint(self) -> str: ...

    def __call__(self, waveform: torch.Tensor) -> tuple[Any, Any]: ...


def _config_json(config: Any) -> Any:
    if config is None:
        return None
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return dataclasses.asdict(config)
    if hasattr(config, "to_dict"):
        return config.to_dict()
    return repr(config)


def state_fingerprint(module: nn.Module, config: Any = None, extra: Any = None) -> str:
    """sha256 (hex) of ``module``'s class, ``config``, ``extra`` and every state-dict tensor.

    Tensors are hashed by name, dtype, shape and raw bytes, in sorted key order.
    """
    digest = hashlib.sha256()
    header = {
        "class": f"{type(module).__module__}.{type(module).__qualname__}",
        "config": _config_json(config),
        "extra": extra,
    }
    digest.update(json.dumps(header, sort_keys=True, default=repr).encode("utf-8"))
    for key, tensor in sorted(module.state_dict().items()):
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"\n{key}|{flat.dtype}|{list(tensor.shape)}\n".encode())
        if flat.numel():
            digest.update(flat.view(torch.uint8).numpy().data)
    return digest.hexdigest()


class PannsExtractor:
    """:class:`FeatureExtractor` around a :class:`~ezaudio.eval.panns.Cnn14` (eval mode).

    The fingerprint (a quarter of a second for CNN14's 81 M parameters) is memoised
    against a stamp of every state tensor's storage address and autograd version counter,
    so weights replaced, moved or changed in place (``load_state_dict``, ``p.add_()``,
    an optimiser step) are hashed again. Writing through ``p.data`` bypasses the version
    counter: after that, wrap the model in a new extractor.
    """

    def __init__(self, model: nn.Module, name: str = "panns-cnn14-16k", device: Any = None):
        self.model = model.eval()
        if device is not None:
            self.model.to(torch.device(device))
        self._name = str(name)
        self._memo: tuple[Any, str] | None = None

    @property
    def sample_rate(self) -> int:
        return int(self.model.config.sample_rate)

    @property
    def name(self) -> str:
        return self._name

    def _stamp(self) -> tuple[Any, ...]:
        state = self.model.state_dict(keep_vars=True)
        return tuple(
            (key, tensor.data_ptr(), tensor._version, tensor.dtype, tuple(tensor.shape))
            for key, tensor in state.items()
        )

    def fingerprint(self) -> str:
        stamp = self._stamp()
        if self._memo is None or self._memo[0] != stamp:
            config = self.model.config
            self._memo = (stamp, state_fingerprint(self.model, config, {"format": FEATURE_FORMAT}))
        return self._memo[1]

    @torch.no_grad()
    def __call__(self, waveform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        device = next(self.model.parameters()).device
        output = self.model(waveform.to(device, torch.float32))
        return output.embedding, output.logits


def load_panns(path: str | os.PathLike[str], device: Any = "cpu") -> PannsExtractor:
    """CNN14 from the official ``.pth`` file or a Cnn14 component folder, as an extractor."""
    from ezaudio.eval.panns import Cnn14

    path = Path(path).expanduser()
    if not path.exists():
        raise CheckpointError(f"{path}: PANNs checkpoint not found")
    model = Cnn14.from_pretrained(path) if path.is_dir() else Cnn14.from_official(path)
    return PannsExtractor(model, name=path.name, device=device)


@dataclass
class FeatureSet:
    """Features of ``paths`` in order: ``embeddings`` [N, D] and ``logits`` [N, C] (float32).

    ``computed`` files went through the extractor in this call, ``cached`` came from the
    cache; ``fingerprint`` is the extractor's.
    """

    paths: list[Path]
    embeddings: np.ndarray
    logits: np.ndarray
    fingerprint: str
    computed: int = 0
    cached: int = 0


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 (hex) of a file's bytes; one-line :class:`AudioFileError` when unreadable."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except FileNotFoundError as error:
        raise AudioFileError(f"{path}: file not found") from error
    except IsADirectoryError as error:
        raise AudioFileError(f"{path}: is a folder, expected an audio file") from error
    except OSError as error:
        raise AudioFileError(f"{path}: cannot read ({error.strerror})") from error
    return digest.hexdigest()


def cache_key(fingerprint: str, audio_sha256: str, settings: PrepareSettings) -> tuple[str, str]:
    """``(key, key_json)``: the cache entry's name and the JSON it is the sha256 of."""
    parts = {
        "format": FEATURE_FORMAT,
        "extractor": fingerprint,
        "audio_sha256": audio_sha256,
        "prepare": settings.to_dict(),
    }
    text = json.dumps(parts, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest(), text


def _entry_path(cache_dir: Path, key: str) -> Path:
    return cache_dir / key[:2] / f"{key}.npz"


def _read_entry(path: Path, key_json: str) -> tuple[np.ndarray, np.ndarray] | None:
    """The cached (embedding [D], logits [C]), or None when absent, unreadable or not ours."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["key"]) != key_json:
                return None
            embedding = np.asarray(data["embedding"], dtype=np.float32)
            logits = np.asarray(data["logits"], dtype=np.float32)
    except (OSError, ValueError, KeyError, EOFError):
        return None
    if embedding.ndim != 1 or logits.ndim != 1:
        return None
    if not (np.isfinite(embedding).all() and np.isfinite(logits).all()):
        return None
    return embedding, logits


def _write_entry(path: Path, key_json: str, embedding: np.ndarray, logits: np.ndarray) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as handle:
            np.savez(handle, key=np.array(key_json), embedding=embedding, logits=logits)

    try:
        write_atomic(path, write)
    except OSError as error:
        raise AudioFileError(f"{path}: cannot write feature cache ({error.strerror})") from error


def _as_rows(name: str, value: Any, batch: int) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().to("cpu", torch.float32).numpy()
    array = np.asarray(value, dtype=np.float32)
    if array.ndim != 2 or array.shape[0] != batch:
        raise InvalidInputError(
            f"feature extractor returned {name} of shape {array.shape}, expected [{batch}, D]"
        )
    if not np.isfinite(array).all():
        raise InvalidInputError(f"feature extractor returned non-finite {name}")
    return array


def compute_features(
    paths: Sequence[str | os.PathLike[str]],
    extractor: FeatureExtractor,
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    settings: PrepareSettings | None = None,
    batch_size: int = 8,
    progress: bool = True,
    desc: str = "features",
) -> FeatureSet:
    """Embeddings and logits of the audio files ``paths`` (in order), cached when asked.

    Files are prepared by :func:`~ezaudio.eval.prepare.read_for_eval` with ``settings``
    (default: :class:`PrepareSettings` at the extractor's rate). ``cache_dir`` None: no
    cache. A file listed twice (same bytes) is computed once.
    """
    from tqdm.auto import tqdm

    if not isinstance(extractor, FeatureExtractor):
        raise InvalidInputError(
            "extractor must have sample_rate, name, fingerprint() and __call__(waveform)"
        )
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidInputError(f"batch_size must be a positive integer, got {batch_size!r}")
    files = [Path(path) for path in paths]
    if not files:
        raise InvalidInputError("no audio files to compute features of")
    settings = settings or PrepareSettings(sample_rate=int(extractor.sample_rate))
    if settings.sample_rate != int(extractor.sample_rate):
        raise InvalidInputError(
            f"preparation rate {settings.sample_rate} Hz differs from the extractor's "
            f"{extractor.sample_rate} Hz"
        )
    fingerprint = str(extractor.fingerprint())
    cache = Path(cache_dir) if cache_dir is not None else None

    keys = [cache_key(fingerprint, file_sha256(file), settings) for file in files]
    found: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    pending: dict[str, tuple[Path, str]] = {}  # key -> (file, key_json), first occurrence
    cached = 0
    bar = tqdm(total=len(files), desc=desc, unit="file", disable=not progress, leave=False)
    for file, (key, key_json) in zip(files, keys):
        if key in found or key in pending:
            continue
        entry = _read_entry(_entry_path(cache, key), key_json) if cache is not None else None
        if entry is not None:
            found[key] = entry
            cached += 1
        else:
            pending[key] = (file, key_json)
    bar.update(len(files) - len(pending))

    todo = list(pending.items())
    for start in range(0, len(todo), READ_CHUNK):
        chunk = todo[start : start + READ_CHUNK]
        waves = {key: read_for_eval(file, settings) for key, (file, _) in chunk}
        by_length: dict[int, list[str]] = {}
        for key, wave in waves.items():
            by_length.setdefault(wave.shape[0], []).append(key)
        for group in by_length.values():
            for first in range(0, len(group), batch_size):
                batch_keys = group[first : first + batch_size]
                batch = torch.from_numpy(np.stack([waves[key] for key in batch_keys]))  # [B, N]
                embedding, logits = extractor(batch)
                embedding = _as_rows("embeddings", embedding, len(batch_keys))
                logits = _as_rows("logits", logits, len(batch_keys))
                for row, key in enumerate(batch_keys):
                    found[key] = (embedding[row].copy(), logits[row].copy())
                    if cache is not None:
                        _write_entry(_entry_path(cache, key), pending[key][1], *found[key])
                bar.update(len(batch_keys))
    bar.close()

    rows = [found[key] for key, _ in keys]
    widths = {(row[0].shape, row[1].shape) for row in rows}
    if len(widths) != 1:
        raise InvalidInputError(f"features of different sizes for one extractor: {widths}")
    return FeatureSet(
        paths=files,
        embeddings=np.stack([row[0] for row in rows]),
        logits=np.stack([row[1] for row in rows]),
        fingerprint=fingerprint,
        computed=len(pending),
        cached=cached,
    )
