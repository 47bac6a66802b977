"""Fixed-length training clips of a manifest, as a torch ``Dataset``.

Follows the official loader (``src/dataset/audiocaps_v2.py``): mono audio at the model's
rate, a random crop of ``clip_seconds`` (or zero-padding of a shorter file), then peak
normalisation of the clip, ``x / (max|x| + 1e-9)``. Unlike the official loader, crops
are reproducible from ``(seed, epoch, index)``, and files that cannot be used (missing,
empty, unreadable or silent) are skipped instead of stopping the run: ``__getitem__``
returns None for them and :func:`collate_skipping` drops the Nones.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import Dataset, default_collate

from ezaudio.data.audio import read_audio
from ezaudio.data.manifest import ManifestEntry
from ezaudio.errors import AudioFileError, InvalidInputError

logger = logging.getLogger(__name__)

SKIP_REASONS = ("missing", "empty", "unreadable", "silent")
# A file whose loaded samples all have |x| below this is "silent" and skipped.
SILENCE_THRESHOLD = 1e-6
# Peak normalisation x / (max|x| + eps), as the official loader.
PEAK_EPS = 1e-9

Clip = dict[str, Any]


class AudioClipDataset(Dataset):
    """Clips of ``clip_seconds`` at ``sample_rate`` from manifest entries.

    Item ``index`` is a dict: ``audio`` float32 [1, N] (N = round(clip_seconds *
    sample_rate)), ``valid`` bool [N] (True on real samples, False on zero-padding),
    ``caption`` str and ``id`` str; or None when the file is skipped.

    A file longer than N is cropped at a start drawn from ``(seed, epoch, index)`` alone
    (``random_crop=False``: its first N samples); a shorter file is zero-padded at the end.
    With ``crop_candidates`` K > 1, K such starts are drawn and the crop with the largest
    RMS is kept: sparse data (events with silence between them) then yields crops of the
    events more often than of the pauses, which peak normalisation would blow up to full
    scale noise. K = 1 is the official uniform crop.
    With ``normalize`` the clip is divided by its own peak plus 1e-9, as the official
    loader does (a crop of a loud file that happens to be quiet is thus amplified).

    Skips are counted in ``skipped`` (reason -> number of distinct files; reasons are
    ``SKIP_REASONS``) and logged once per file at WARNING on this module's logger. A
    file found bad is not read again. With DataLoader workers both the counts and the
    memory of bad files live in each worker's copy of the dataset; the log is the
    record that reaches the main process.
    """

    def __init__(
        self,
        entries: Sequence[ManifestEntry],
        sample_rate: int,
        clip_seconds: float,
        *,
        seed: int = 0,
        random_crop: bool = True,
        normalize: bool = True,
        crop_candidates: int = 1,
    ) -> None:
        if sample_rate < 1:
            raise InvalidInputError(f"sample_rate must be positive, got {sample_rate}")
        clip_samples = round(clip_seconds * sample_rate)
        if clip_samples < 1:
            raise InvalidInputError(f"clip_seconds {clip_seconds} gives no samples")
        if seed < 0:
            raise InvalidInputError(f"seed must be >= 0, got {seed}")
        if type(crop_candidates) is not int or crop_candidates < 1:  # bool is not accepted
            raise InvalidInputError(
                f"crop_candidates must be an integer >= 1, got {crop_candidates!r}"
            )
        self.crop_candidates = crop_candidates
        self.entries = list(entries)
        self.sample_rate = sample_rate
        self.clip_samples = clip_samples
        self.seed = seed
        self.random_crop = random_crop
        self.normalize = normalize
        self.epoch = 0
        self.skipped: Counter[str] = Counter()
        self._bad_files: dict[Path, str] = {}  # path -> skip reason

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch the crops are drawn for. Call it before each epoch's
        DataLoader iteration (worker processes copy the dataset when they start, so
        persistent workers keep the epoch they started with)."""
        if epoch < 0:
            raise InvalidInputError(f"epoch must be >= 0, got {epoch}")
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> Clip | None:
        entry = self.entries[index]
        audio = self._load(entry.audio)  # [n] float32, or None if skipped
        if audio is None:
            return None
        clip, valid = self._crop_or_pad(audio, index)  # [N], [N]
        if self.normalize:
            clip = clip / (np.abs(clip).max() + PEAK_EPS)
        return {
            "audio": torch.from_numpy(clip.astype(np.float32))[None],  # [1, N]
            "valid": torch.from_numpy(valid),  # [N] bool
            "caption": entry.caption,
            "id": entry.id,
        }

    def crop_start(self, length: int, index: int) -> int:
        """First sample of the clip taken from a file of ``length`` samples at ``index``
        in the current epoch (0 when the file is not longer than the clip); with
        ``crop_candidates`` > 1 the first of the drawn starts (see :meth:`crop_starts`)."""
        return self.crop_starts(length, index)[0]

    def crop_starts(self, length: int, index: int) -> list[int]:
        """The ``crop_candidates`` starts drawn for the file at ``index`` in the current
        epoch, from ``(seed, epoch, index)`` alone; ``[0]`` when the file is not longer
        than the clip or crops are not random."""
        excess = length - self.clip_samples
        if excess <= 0 or not self.random_crop:
            return [0]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        return [int(start) for start in rng.integers(0, excess + 1, size=self.crop_candidates)]

    def _crop_or_pad(self, audio: np.ndarray, index: int) -> tuple[np.ndarray, np.ndarray]:
        starts = self.crop_starts(len(audio), index)
        # the loudest candidate (mean square; the first on ties); one candidate: no reading
        start = starts[0] if len(starts) == 1 else max(
            starts, key=lambda s: float(np.square(audio[s : s + self.clip_samples]).mean())
        )  # fmt: skip
        real = audio[start : start + self.clip_samples]
        clip = np.zeros(self.clip_samples, dtype=np.float32)  # [N]
        valid = np.zeros(self.clip_samples, dtype=bool)  # [N]
        clip[: len(real)] = real
        valid[: len(real)] = True
        return clip, valid

    def _load(self, path: Path) -> np.ndarray | None:
        if path in self._bad_files:
            return None
        try:
            audio, _ = read_audio(path, self.sample_rate)  # [n] mono float32
        except (AudioFileError, OSError) as error:
            self._skip(path, _failure_reason(path), str(error))
            return None
        if audio.size == 0:
            self._skip(path, "empty", "no samples left after resampling")
            return None
        peak = float(np.abs(audio).max())
        if peak < SILENCE_THRESHOLD:
            self._skip(path, "silent", f"peak {peak:.1e} below {SILENCE_THRESHOLD:.0e}")
            return None
        return audio

    def _skip(self, path: Path, reason: str, detail: str) -> None:
        self._bad_files[path] = reason
        self.skipped[reason] += 1
        logger.warning("skipping audio file %s (%s): %s", path, reason, detail)


def _failure_reason(path: Path) -> str:
    """Skip reason of a file read_audio refused."""
    if not path.exists():
        return "missing"
    if path.is_file() and path.stat().st_size == 0:
        return "empty"
    try:
        if sf.info(str(path)).frames == 0:  # a valid header with no samples
            return "empty"
    except (sf.LibsndfileError, RuntimeError, OSError, TypeError, ValueError):
        pass
    return "unreadable"


def collate_skipping(batch: Sequence[Clip | None]) -> dict[str, Any] | None:
    """Collate dataset items, dropping skipped ones (None); None if none is left.

    Returns ``audio`` [B, 1, N] float32, ``valid`` [B, N] bool, ``caption`` and ``id``
    as lists of B strings.
    """
    clips = [clip for clip in batch if clip is not None]
    if not clips:
        return None
    return default_collate(clips)


def latent_valid_mask(
    valid: torch.Tensor, hop_length: int, frames: int | None = None
) -> torch.Tensor:
    """Sample mask valid [B, N] -> latent-frame mask [B, L] (bool).

    Latent frame i covers samples [i * hop, (i + 1) * hop) and is valid when *any* of
    them is a real sample, so the frame holding the end of a padded file counts (it
    carries real audio); only frames of pure padding are invalid. ``frames`` defaults to
    ceil(N / hop); pass the encoder's latent length to match it exactly (frames past the
    audio are invalid, samples past the last frame are ignored).
    """
    if hop_length < 1:
        raise InvalidInputError(f"hop_length must be positive, got {hop_length}")
    batch, samples = valid.shape
    if frames is None:
        frames = math.ceil(samples / hop_length)
    covered = frames * hop_length
    valid = valid.to(torch.bool)
    if covered > samples:
        padding = valid.new_zeros(batch, covered - samples)  # [B, covered - N]
        valid = torch.cat([valid, padding], dim=1)
    return valid[:, :covered].reshape(batch, frames, hop_length).any(dim=2)  # [B, L]
