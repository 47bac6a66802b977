"""CLAP text and audio embeddings (transformers ``ClapModel``), deterministic by construction.

The CLAP score of a clip is the cosine similarity of its audio embedding and its caption's
text embedding. Two things make published CLAP scores drift and are pinned down here:

* **The checkpoint.** The default is ``laion/larger_clap_general`` (the checkpoint the
  paper's CLAP filtering uses). Scores from different checkpoints are not comparable, so
  the name and a fingerprint of the weights go with every result.
* **The crop.** The LAION feature extractor crops clips longer than 10 s at a *random*
  offset (``truncation="rand_trunc"``) or fuses random crops (``"fusion"``), and in fusion
  mode marks a random clip of a batch as "longer" even when none is. Here every clip is
  cut to its **first** ``max_length_s`` seconds (10 s for LAION CLAP) before the feature
  extractor sees it, so no random branch can run, and ``is_longer`` is set to False for
  every clip (what LAION CLAP itself uses for clips up to 10 s).

Audio path, exactly: the waveform [N] at ``sample_rate`` is cut to its first
``ceil(max_length_s * sample_rate)`` samples, resampled to the feature extractor's rate
(48 kHz) with soxr HQ, and cut again to ``max_length_s * 48000`` samples (so a 12 s clip
gives exactly the embedding of its first 10 s, at any input rate). A shorter clip is then
padded by the feature extractor's own rule, ``padding`` in its config: for LAION CLAP
``"repeatpad"``, i.e. the clip of n samples is tiled ``floor(480000 / n)`` times and the rest
is filled with zeros up to 480000 samples (``"repeat"``: tiled and cut; ``"pad"``: zeros
only). The log-mel front end is the feature extractor's (Slaney mel bank for unfused
models, HTK for fused ones, as each was trained).

Text path: the tokenizer's output truncated to 77 tokens (LAION CLAP's training length),
padded to the longest caption of the batch with an attention mask.

Embeddings are L2-normalised rows (``ClapModel.get_*_features`` output, normalised again
so every transformers version agrees); ``score_pairs`` returns their row-wise dot product.
"""

from __future__ import annotations

import math
import numbers
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ezaudio.data.audio import resample
from ezaudio.errors import CheckpointError, InvalidInputError

if TYPE_CHECKING:
    from ezaudio.eval.small_clap import SmallClapScorer

DEFAULT_CLAP = "laion/larger_clap_general"
"""The CLAP checkpoint used when none is named."""

CLAP_SAMPLE_RATE = 48000
"""Rate of every LAION CLAP model (the feature extractor's ``sampling_rate``)."""

TEXT_MAX_TOKENS = 77
"""Captions are truncated to this many tokens, as LAION CLAP was trained."""

DEFAULT_BATCH_SIZE = 16


class ClapScorer:
    """A frozen ``ClapModel`` with its feature extractor and tokenizer.

    ``audio_embeddings``, ``text_embeddings`` and ``score_pairs`` are deterministic: the
    same input gives the same output whatever the batch it is part of (up to float
    rounding of batched matrix products).
    """

    def __init__(
        self,
        model: Any,
        feature_extractor: Any,
        tokenizer: Any,
        name: str = "",
        device: str | torch.device | None = "cpu",
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidInputError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.model = model.eval()
        self.model.requires_grad_(False)
        self.feature_extractor = feature_extractor
        self.tokenizer = tokenizer
        self.name = str(name)
        self.batch_size = batch_size
        if device is not None:
            self.model.to(torch.device(device))
        audio_config = model.config.audio_config
        self.fused = bool(getattr(audio_config, "enable_fusion", False))
        # Clips never exceed max_length (we crop first), so neither random branch runs.
        self.truncation = "fusion" if self.fused else "rand_trunc"
        self.padding = str(getattr(feature_extractor, "padding", "repeatpad"))
        self._fingerprint: str | None = None

    # -- properties ---------------------------------------------------------------------

    @property
    def sample_rate(self) -> int:
        """Rate the model's front end works at (48 kHz for LAION CLAP)."""
        return int(self.feature_extractor.sampling_rate)

    @property
    def crop_samples(self) -> int:
        """Clip length the model sees, at :attr:`sample_rate` (480000: 10 s)."""
        return int(self.feature_extractor.nb_max_samples)

    @property
    def crop_seconds(self) -> float:
        """:attr:`crop_samples` in seconds."""
        return self.crop_samples / self.sample_rate

    @property
    def dim(self) -> int:
        """Embedding size (the projection dimension)."""
        return int(self.model.config.projection_dim)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def describe(self) -> dict[str, Any]:
        """JSON-ready description (name, weights fingerprint, crop, padding, rates)."""
        return {
            "name": self.name,
            "fingerprint": self.fingerprint(),
            "sample_rate": self.sample_rate,
            "crop": f"first {self.crop_seconds:g} s",
            "padding": self.padding,
            "fusion": self.fused,
            "text_max_tokens": TEXT_MAX_TOKENS,
        }

    def fingerprint(self) -> str:
        """sha256 of the model's config and weights and the front-end settings (memoised)."""
        if self._fingerprint is None:
            from ezaudio.eval.features import state_fingerprint

            front_end = {
                "sample_rate": self.sample_rate,
                "crop_samples": self.crop_samples,
                "padding": self.padding,
                "truncation": self.truncation,
                "feature_size": getattr(self.feature_extractor, "feature_size", None),
                "hop_length": getattr(self.feature_extractor, "hop_length", None),
                "fft_window_size": getattr(self.feature_extractor, "fft_window_size", None),
                "text_max_tokens": TEXT_MAX_TOKENS,
            }
            self._fingerprint = state_fingerprint(self.model, self.model.config, front_end)
        return self._fingerprint

    # -- embeddings ---------------------------------------------------------------------

    def crop(self, waveform: np.ndarray, sample_rate: int) -> np.ndarray:
        """Waveform [N] at ``sample_rate`` -> its first ``crop_seconds`` at :attr:`sample_rate`."""
        source_samples = math.ceil(self.crop_seconds * sample_rate)
        head = waveform[:source_samples]
        head = resample(head.astype(np.float32), sample_rate, self.sample_rate)
        return np.ascontiguousarray(head[: self.crop_samples], dtype=np.float32)

    @torch.no_grad()
    def audio_embeddings(self, waveforms: list[np.ndarray], sample_rate: int) -> np.ndarray:
        """Audio embeddings [N, D] (float32, unit rows) of mono waveforms [n_i] at ``sample_rate``.

        Each clip is cut to its first ``crop_seconds`` (10 s), resampled to 48 kHz and padded
        as the feature extractor does (see the module docstring).
        """
        rate = _check_rate(sample_rate)
        clips = _check_waveforms(waveforms)
        out = np.zeros((len(clips), self.dim), dtype=np.float32)
        for first in range(0, len(clips), self.batch_size):
            batch = [self.crop(clip, rate) for clip in clips[first : first + self.batch_size]]
            features = self.feature_extractor(
                batch,
                sampling_rate=self.sample_rate,
                truncation=self.truncation,
                padding=self.padding,
                return_tensors="pt",
            )
            inputs = features["input_features"].to(self.device, torch.float32)  # [B, 1|4, T, M]
            is_longer = torch.zeros(len(batch), 1, dtype=torch.bool, device=self.device)
            result = self.model.get_audio_features(input_features=inputs, is_longer=is_longer)
            out[first : first + len(batch)] = _unit_rows(_pooled(result))
        return out

    @torch.no_grad()
    def text_embeddings(self, texts: list[str]) -> np.ndarray:
        """Text embeddings [N, D] (float32, unit rows) of ``texts`` (at most 77 tokens each)."""
        items = _check_texts(texts)
        out = np.zeros((len(items), self.dim), dtype=np.float32)
        limit = TEXT_MAX_TOKENS
        positions = getattr(self.model.config.text_config, "max_position_embeddings", None)
        if positions is not None:
            limit = min(limit, int(positions) - 2)  # RoBERTa positions start after padding_idx
        for first in range(0, len(items), self.batch_size):
            batch = items[first : first + self.batch_size]
            tokens = self.tokenizer(
                batch, padding=True, truncation=True, max_length=limit, return_tensors="pt"
            )
            result = self.model.get_text_features(
                input_ids=tokens["input_ids"].to(self.device),
                attention_mask=tokens["attention_mask"].to(self.device),
            )
            out[first : first + len(batch)] = _unit_rows(_pooled(result))
        return out

    def score_pairs(
        self, waveforms: list[np.ndarray], sample_rate: int, texts: list[str]
    ) -> np.ndarray:
        """Cosine similarity [N] (float64) of clip i and text i."""
        return pair_scores(self, waveforms, sample_rate, texts)

    # -- loading ------------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike[str] = DEFAULT_CLAP,
        device: str | torch.device | None = "auto",
        batch_size: int = DEFAULT_BATCH_SIZE,
        local_files_only: bool | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> ClapScorer | SmallClapScorer:
        """Load a CLAP model from a local folder, the Hugging Face cache or the hub.

        A folder holding a small CLAP trained on a synthetic world (``config.json`` with
        ``"_class": "SmallClap"``, see :mod:`ezaudio.eval.small_clap`) gives a
        :class:`~ezaudio.eval.small_clap.SmallClapScorer`, which has this class's interface.

        A hub id is looked up in the local cache first and downloaded only on a miss, when
        ``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE`` is unset and the hub answers a quick
        connection probe; otherwise one-line :class:`CheckpointError`, in seconds.
        ``local_files_only``: None (cache, then hub), True (cache only), False (hub first).
        """
        from ezaudio.pipeline import resolve_device
        from ezaudio.text.encoder import _check_repo_id, hub_offline, hub_reachable

        resolved = resolve_device(device)
        name = os.fspath(name_or_path)
        if not name.strip():
            raise CheckpointError("empty CLAP model name; give a folder or a hub id")
        cache = os.fspath(cache_dir) if cache_dir is not None else None
        path = Path(os.path.expanduser(name))
        if path.exists():
            if not path.is_dir():
                raise CheckpointError(f"{name}: is a file, expected a CLAP model folder")
            if not (path / "config.json").is_file():
                raise CheckpointError(f"{name}: not a model folder (no config.json)")
            from ezaudio.eval.small_clap import SmallClapScorer, is_small_clap_folder

            if is_small_clap_folder(path):
                return SmallClapScorer.from_pretrained(path, device=resolved, batch_size=batch_size)
            parts = _load_parts(str(path), name, local_files_only=True, cache_dir=None)
        elif _looks_like_path(name):
            raise CheckpointError(f"{name}: CLAP model folder not found")
        else:
            _check_repo_id(name)
            unreachable = (
                f"{name}: not in the local Hugging Face cache and the hub cannot be reached"
            )
            if hub_offline():
                parts = _load_parts(
                    name, name, True, cache, unreachable + " (HF_HUB_OFFLINE is set)"
                )
            elif local_files_only is True:
                parts = _load_parts(name, name, True, cache, unreachable + " (local_files_only)")
            else:
                parts = None
                cache_error: CheckpointError | None = None
                if local_files_only is None:
                    try:
                        parts = _load_parts(name, name, True, cache)
                    except CheckpointError as error:
                        cache_error = error
                if parts is None:
                    if not hub_reachable():
                        if local_files_only is False:
                            parts = _load_parts(name, name, True, cache, unreachable)
                        else:
                            raise CheckpointError(unreachable) from cache_error
                    else:
                        parts = _load_parts(name, name, False, cache, unreachable)
        model, feature_extractor, tokenizer = parts
        return cls(model, feature_extractor, tokenizer, name=name, device=resolved,
                   batch_size=batch_size)  # fmt: skip


# -- helpers ----------------------------------------------------------------------------


def pair_scores(
    scorer: Any, waveforms: list[np.ndarray], sample_rate: int, texts: list[str]
) -> np.ndarray:
    """Cosine similarity [N] (float64) of clip i and text i under any scorer with
    ``audio_embeddings`` and ``text_embeddings`` (unit rows)."""
    items = _check_texts(texts)
    clips = _check_waveforms(waveforms)
    if len(items) != len(clips):
        raise InvalidInputError(
            f"score_pairs needs one text per clip, got {len(clips)} clips and {len(items)} texts"
        )
    audio = scorer.audio_embeddings(clips, sample_rate).astype(np.float64)
    text = scorer.text_embeddings(items).astype(np.float64)
    return (audio * text).sum(axis=1)


def _looks_like_path(name: str) -> bool:
    return (
        name.startswith(("/", "./", "../", "~", ".\\", "..\\"))
        or "\\" in name
        or name.count("/") > 1
        or name.endswith("/")
    )


def _load_parts(
    source: str,
    where: str,
    local_files_only: bool,
    cache_dir: str | None,
    not_cached_message: str | None = None,
) -> tuple[Any, Any, Any]:
    """ClapModel, ClapFeatureExtractor and tokenizer; every failure -> one CheckpointError."""
    import transformers

    from ezaudio.text.encoder import _first_line, _is_missing_repo, _is_not_cached

    options: dict[str, Any] = {"local_files_only": local_files_only}
    if cache_dir is not None:
        options["cache_dir"] = cache_dir
    try:
        config = transformers.AutoConfig.from_pretrained(source, **options)
        if getattr(config, "model_type", None) != "clap":
            raise CheckpointError(
                f"{where}: not a CLAP model (model_type {getattr(config, 'model_type', None)!r})"
            )
        model = transformers.ClapModel.from_pretrained(source, config=config, **options)
        feature_extractor = transformers.ClapFeatureExtractor.from_pretrained(source, **options)
        tokenizer = transformers.AutoTokenizer.from_pretrained(source, **options)
    except CheckpointError:
        raise
    except Exception as error:  # transformers, huggingface_hub, OS and parsing errors alike
        if _is_missing_repo(error):
            raise CheckpointError(f"{where}: not found on the Hugging Face hub") from error
        if not_cached_message is not None and _is_not_cached(error):
            raise CheckpointError(not_cached_message) from error
        raise CheckpointError(f"{where}: cannot load CLAP model ({_first_line(error)})") from error
    return model.float().eval(), feature_extractor, tokenizer


def _pooled(result: Any) -> torch.Tensor:
    """The embedding tensor of ``get_*_features`` (a tensor in 4.x, an output object in 5.x)."""
    if isinstance(result, torch.Tensor):
        return result
    pooled = getattr(result, "pooler_output", None)
    if pooled is None:
        pooled = result[1] if isinstance(result, tuple) else result[0]
    return pooled


def _unit_rows(embeddings: torch.Tensor) -> np.ndarray:
    rows = torch.nn.functional.normalize(embeddings.detach().float(), dim=-1)
    return rows.cpu().numpy()


def _check_rate(rate: object) -> int:
    if (
        isinstance(rate, bool)
        or not isinstance(rate, numbers.Real)
        or not float(rate).is_integer()
        or rate < 1
    ):
        raise InvalidInputError(f"sample_rate must be a positive integer, got {rate!r}")
    return int(rate)


def _check_waveforms(waveforms: object) -> list[np.ndarray]:
    """A list of non-empty, finite, 1-D float waveforms (a 2-D array counts as rows)."""
    if isinstance(waveforms, np.ndarray) and waveforms.ndim == 2:
        waveforms = list(waveforms)
    if isinstance(waveforms, torch.Tensor) or not isinstance(waveforms, (list, tuple)):
        raise InvalidInputError(
            f"waveforms must be a list of 1-D arrays, got {type(waveforms).__name__}"
        )
    clips = []
    for index, wave in enumerate(waveforms):
        if isinstance(wave, torch.Tensor):
            wave = wave.detach().cpu().numpy()
        array = np.asarray(wave)
        if array.ndim != 1 or array.size == 0:
            raise InvalidInputError(
                f"waveforms[{index}] must be a non-empty 1-D array, got shape {array.shape}"
            )
        if not np.issubdtype(array.dtype, np.floating):
            raise InvalidInputError(f"waveforms[{index}] must be floating point, got {array.dtype}")
        if not np.isfinite(array).all():
            raise InvalidInputError(f"waveforms[{index}] contains NaN or infinite samples")
        clips.append(array)
    return clips


def _check_texts(texts: object) -> list[str]:
    if isinstance(texts, str) or not isinstance(texts, (list, tuple)):
        raise InvalidInputError(f"texts must be a list of strings, got {type(texts).__name__}")
    bad = [i for i, text in enumerate(texts) if not isinstance(text, str)]
    if bad:
        raise InvalidInputError(f"texts must all be strings; items {bad[:8]} are not")
    return list(texts)
