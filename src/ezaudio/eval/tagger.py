"""A small CNN14-style tagger trained on a synthetic world (``ezaudio data synth``).

The tagger is a :class:`~ezaudio.eval.panns.Cnn14` with narrow conv blocks
(:data:`TAGGER_WIDTHS`) and one output per world class (``class_names`` in its config), so
its folder loads with ``Cnn14.from_pretrained`` and ``ezaudio.eval.features.load_panns``
(FD / KL / IS against the world instead of AudioSet).

Training: multi-label binary cross-entropy over the world's classes (a clip's labels are the
classes of its events, :func:`labels_of`), on whole clips through CNN14's log-mel front end,
or on random windows of them (``crop_seconds``: labels of the events heard in the window;
a CPU trains ~clip / window times faster, the test still tags whole clips).
All train clips are read into memory once (16-bit, on the training device). Augmentation:
random gain, random circular time shift, a little white noise, and sometimes a low-pass
applied to the log-mel (so that generated / VAE-decoded audio, which tends to lose the top
octave, is still recognised). Seeded; deterministic on CPU.

This module also holds what :mod:`ezaudio.eval.small_clap` shares with it: reading a world
split into memory (:func:`load_split`), the augmentations, the learning-rate schedule and
the atomic output folder.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ezaudio.errors import AudioFileError, InvalidInputError
from ezaudio.eval.panns import AMIN, Cnn14, Cnn14Config, hz_to_mel_slaney, mel_to_hz_slaney

TAGGER_WIDTHS = (32, 64, 128, 128, 256, 256)
"""Conv block widths of the default tagger (the official CNN14 has 64 ... 2048)."""
TAGGER_EMBEDDING_DIM = 256
REPORT_NAME = "report.json"
GPU_STEPS, CPU_STEPS = 1500, 100
"""Default training steps on a GPU and on a CPU."""
GPU_BATCH, CPU_BATCH = 64, 16
THRESHOLD = 0.5
SPLITS = ("train", "valid", "test")


# -- settings -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainSettings:
    """Training options shared by the tagger and the small CLAP.

    ``steps`` / ``batch_size`` None: the defaults for the device (GPU or CPU).
    ``max_clips``: read at most this many clips of each split (None: all).
    """

    steps: int | None = None
    batch_size: int | None = None
    lr: float = 1e-3
    seed: int = 0
    device: str = "auto"
    max_clips: int | None = None
    progress: bool = True
    weight_decay: float = 1e-2
    warmup: float = 0.05

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "max_clips"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise InvalidInputError(f"{name} must be a positive integer, got {value!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise InvalidInputError(f"lr must be a positive number, got {self.lr!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise InvalidInputError(f"seed must be a non-negative integer, got {self.seed!r}")

    def resolved(self, device: torch.device, steps: tuple[int, int] = (GPU_STEPS, CPU_STEPS),
                 batch: tuple[int, int] = (GPU_BATCH, CPU_BATCH)) -> tuple[int, int]:  # fmt: skip
        """``(steps, batch_size)`` with the device defaults filled in."""
        gpu = device.type == "cuda"
        return (
            self.steps or (steps[0] if gpu else steps[1]),
            self.batch_size or (batch[0] if gpu else batch[1]),
        )


def resolve_training_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> cuda when available, else cpu (mps is not used for training)."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    from ezaudio.pipeline import resolve_device

    return resolve_device(device)


# -- labels -------------------------------------------------------------------------------


def labels_of(record: dict[str, Any], window: tuple[float, float] | None = None) -> set[str]:
    """Classes of the events of a world ``metadata.jsonl`` record.

    ``window=(start_s, end_s)``: only events audible somewhere in that time window
    (``onset < end_s`` and ``offset > start_s``).
    """
    events = record.get("events") if isinstance(record, dict) else None
    if not isinstance(events, list):
        raise InvalidInputError("a world metadata record needs an 'events' list")
    if window is not None:
        start, end = (float(v) for v in window)
        if not end > start:
            raise InvalidInputError(f"window must have end > start, got {window!r}")
    out = set()
    for event in events:
        if window is not None and not (
            float(event["onset"]) < end and float(event["offset"]) > start
        ):
            continue
        out.add(str(event["class"]))
    return out


def label_matrix(
    records: Sequence[dict[str, Any]],
    class_names: Sequence[str],
    windows: Sequence[tuple[float, float]] | None = None,
) -> np.ndarray:
    """Multi-hot labels [N, C] (float32) of metadata records; ``windows``: one ``(start_s,
    end_s)`` per record, only the events heard in it (:func:`labels_of`)."""
    if windows is not None and len(windows) != len(records):
        raise InvalidInputError(f"{len(windows)} windows for {len(records)} records")
    column = {name: i for i, name in enumerate(class_names)}
    out = np.zeros((len(records), len(class_names)), dtype=np.float32)
    for row, record in enumerate(records):
        for name in labels_of(record, None if windows is None else windows[row]):
            if name not in column:
                raise InvalidInputError(f"clip {record.get('id')}: unknown class {name!r}")
            out[row, column[name]] = 1.0
    return out


# -- world data ---------------------------------------------------------------------------


@dataclass
class WorldSplit:
    """One split of a world in memory: ``audio`` [N, S] int16 (all clips one length)."""

    world: Path
    split: str
    sample_rate: int
    class_names: list[str]
    rows: list[dict[str, Any]]  # manifest rows (id, audio, caption, ...)
    records: list[dict[str, Any]]  # metadata records, same order
    audio: np.ndarray = field(repr=False)

    def __len__(self) -> int:
        return len(self.rows)

    def waveforms(self) -> list[np.ndarray]:
        """The clips as float32 [S] arrays in [-1, 1)."""
        return [row.astype(np.float32) / 32768.0 for row in self.audio]


def read_world_info(world: str | os.PathLike[str]) -> dict[str, Any]:
    """A world folder's ``world.json``; one-line error when it is not a synth world."""
    folder = Path(world)
    if not folder.is_dir():
        raise InvalidInputError(f"{folder}: world folder not found")
    path = folder / "world.json"
    if not path.is_file():
        raise InvalidInputError(f"{folder}: not a synth world (no world.json)")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidInputError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(info, dict) or not isinstance(info.get("sample_rate"), int):
        raise InvalidInputError(f"{path}: not a synth world description (no sample_rate)")
    return info


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The objects of a JSONL file; one-line errors naming the line."""
    if not path.is_file():
        raise InvalidInputError(f"{path}: file not found")
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise InvalidInputError(f"{path}:{number}: not valid JSON ({error.msg})") from None
        if not isinstance(row, dict):
            raise InvalidInputError(f"{path}:{number}: expected a JSON object")
        rows.append(row)
    return rows


def world_classes(info: dict[str, Any]) -> list[str]:
    """The world's class names (``world.json``, else :func:`ezaudio.synth.classes`)."""
    names = info.get("classes")
    if isinstance(names, list) and names and all(isinstance(n, str) for n in names):
        return list(names)
    from ezaudio.synth import classes

    return classes()


def load_split(
    world: str | os.PathLike[str],
    split: str = "train",
    max_clips: int | None = None,
    manifest: str | None = None,
    progress: bool = False,
) -> WorldSplit:
    """Read one split of a world (``{split}.jsonl`` or ``manifest``) and its audio into memory.

    Every clip is read as 16-bit at the world's rate and cut / zero-padded to the world's
    clip length. ``max_clips``: the first that many rows only.
    """
    import soundfile as sf
    from tqdm.auto import tqdm

    folder = Path(world)
    info = read_world_info(folder)
    rate = int(info["sample_rate"])
    length = round(float(info.get("seconds", 10.0)) * rate)
    rows = read_jsonl(folder / (manifest or f"{split}.jsonl"))
    if max_clips is not None:
        rows = rows[:max_clips]
    if not rows:
        raise InvalidInputError(f"{folder}: the {split} split has no clips")
    by_id = {record["id"]: record for record in read_jsonl(folder / "metadata.jsonl")}
    records = []
    for row in rows:
        if row.get("id") not in by_id:
            raise InvalidInputError(f"{folder}: clip {row.get('id')!r} has no metadata record")
        records.append(by_id[row["id"]])
    audio = np.zeros((len(rows), length), dtype=np.int16)  # [N, S]
    for i, row in enumerate(tqdm(rows, desc=f"read {split}", unit="clip", disable=not progress)):
        path = folder / str(row.get("audio", ""))
        try:
            wave, file_rate = sf.read(str(path), dtype="int16", always_2d=True)  # [n, ch]
        except (sf.LibsndfileError, RuntimeError, OSError, TypeError) as error:
            raise AudioFileError(f"{path}: cannot read audio ({error})") from None
        if file_rate != rate:
            raise AudioFileError(f"{path}: {file_rate} Hz, the world is {rate} Hz")
        take = min(length, wave.shape[0])
        audio[i, :take] = wave[:take, 0]
    return WorldSplit(folder, split, rate, world_classes(info), rows, records, audio)


# -- augmentation -------------------------------------------------------------------------


def batch_waveforms(audio: torch.Tensor, index: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Rows ``index`` of int16 clips [N, S] -> float32 [B, S] on ``device``."""
    rows = audio[index.to(audio.device)]  # [B, S] int16
    return rows.to(device=device, dtype=torch.float32) / 32768.0


def augment_waveforms(
    wave: torch.Tensor,
    generator: torch.Generator,
    shift: bool = True,
    noise_generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Random gain (-10..+6 dB), circular time shift (when ``shift``), and, for half of the
    clips, white noise 30-60 dB below the clip's peak. ``wave`` [B, S] -> [B, S].

    Small draws come from the CPU ``generator``; the noise from ``noise_generator`` (a
    generator on ``wave``'s device; default: ``generator``).
    """
    batch, samples = wave.shape
    cpu = dict(generator=generator)
    gain_db = torch.rand(batch, **cpu) * 16.0 - 10.0  # [B]
    wave = wave * (10.0 ** (gain_db / 20.0)).to(wave.device)[:, None]
    if shift:
        offsets = torch.randint(0, samples, (batch,), **cpu).to(wave.device)  # [B]
        index = (torch.arange(samples, device=wave.device)[None] + offsets[:, None]) % samples
        wave = torch.gather(wave, 1, index)  # [B, S]
    noise_db = -30.0 - 30.0 * torch.rand(batch, **cpu)  # [B] relative to the peak
    noisy = (torch.rand(batch, **cpu) < 0.5).float()  # [B]
    level = (10.0 ** (noise_db / 20.0) * noisy).to(wave.device)  # [B]
    peak = wave.abs().amax(dim=1).clamp(min=1e-4)  # [B]
    noise_generator = noise_generator or generator
    noise = torch.randn(
        batch, samples, generator=noise_generator, device=noise_generator.device
    ).to(wave.device)  # [B, S]
    return wave + noise * (level * peak)[:, None]


def random_windows(
    wave: torch.Tensor, length: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """A random window of ``length`` samples of each clip: ``wave`` [B, S] -> ([B, length],
    first samples [B], int64 on the CPU). Start positions are drawn from ``generator``."""
    batch, samples = wave.shape
    if not 0 < length <= samples:
        raise InvalidInputError(f"a window of {length} samples does not fit clips of {samples}")
    start = torch.randint(0, samples - length + 1, (batch,), generator=generator)  # [B]
    rows = start[:, None] + torch.arange(length)[None]  # [B, length] sample indices
    return torch.gather(wave, 1, rows.to(wave.device)), start


def mel_centres_hz(config: Cnn14Config) -> torch.Tensor:
    """Centre frequencies [M] of CNN14's Slaney mel bands."""
    low, high = hz_to_mel_slaney(config.fmin), hz_to_mel_slaney(config.fmax)
    points = mel_to_hz_slaney(np.linspace(low, high, config.mel_bins + 2))[1:-1]
    return torch.from_numpy(points.astype(np.float32))


def lowpass_log_mel(
    log_mel: torch.Tensor,
    centres: torch.Tensor,
    generator: torch.Generator,
    share: float = 0.3,
    slope_db: float = 24.0,
) -> torch.Tensor:
    """For ``share`` of the clips, a low-pass at 2-7 kHz: bands above the cut-off lose
    ``slope_db`` dB per octave (at most 80 dB). ``log_mel`` [B, 1, T, M] dB -> same."""
    batch = log_mel.shape[0]
    cutoff = 2000.0 * (3.5 ** torch.rand(batch, generator=generator))  # [B] Hz
    active = (torch.rand(batch, generator=generator) < share).float()  # [B]
    cutoff, active = cutoff.to(centres.device), active.to(centres.device)
    octaves = torch.log2(centres[None] / cutoff[:, None]).clamp(min=0.0)  # [B, M]
    loss_db = (slope_db * octaves).clamp(max=80.0) * active[:, None]  # [B, M]
    floor = 10.0 * math.log10(AMIN)
    out = log_mel - loss_db.to(log_mel.device)[:, None, None, :]
    return out.clamp(min=floor)


def lr_at(step: int, steps: int, lr: float, warmup: float) -> float:
    """Linear warm-up over ``warmup`` of the steps, then cosine decay to zero."""
    ramp = max(1, round(warmup * steps))
    if step < ramp:
        return lr * (step + 1) / ramp
    progress = (step - ramp) / max(1, steps - ramp)
    return lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def batch_order(count: int, batch: int, steps: int, generator: torch.Generator):
    """Batches of distinct clip indices: consecutive slices of seeded permutations."""
    batch = min(batch, count)
    order = torch.randperm(count, generator=generator)
    position = 0
    for _ in range(steps):
        if position + batch > count:
            order, position = torch.randperm(count, generator=generator), 0
        yield order[position : position + batch]
        position += batch


def device_generator(device: torch.device, seed: int) -> torch.Generator:
    """A seeded generator on ``device`` (CPU generator for CPU)."""
    generator = torch.Generator(device=device) if device.type == "cuda" else torch.Generator()
    return generator.manual_seed(seed)


def autocast(device: torch.device):
    """bf16 autocast on CUDA, nothing elsewhere."""
    return torch.autocast(
        device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"
    )


def machine_info(device: torch.device) -> dict[str, Any]:
    """Where a run happened: platform, CPU count, torch, device name."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    return {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "device": str(device),
        "device_name": name or platform.machine(),
    }


# -- output folder ------------------------------------------------------------------------


def check_out_folder(out: str | os.PathLike[str]) -> Path:
    """``out`` must not exist yet or be an empty folder (checked before any training)."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InvalidInputError(f"{out}: already exists and is not empty; choose a new --out")
    return out


def publish_folder(out: str | os.PathLike[str], write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_folder)`` then rename the folder onto ``out`` (nothing half-written)."""
    out = check_out_folder(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        write(tmp)
        os.chmod(tmp, 0o777 & ~_umask())
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON."""
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


# -- inference ----------------------------------------------------------------------------


@torch.no_grad()
def tag_probabilities(
    model: Cnn14, waveforms: Sequence[np.ndarray], sample_rate: int, batch_size: int = 16
) -> np.ndarray:
    """Class probabilities [N, C] (float32) of mono clips [n_i] at ``sample_rate``.

    Clips are resampled to the model's rate (soxr HQ) when needed and zero-padded to the
    model's shortest input; clips of equal length are batched (no padding within a batch).
    """
    from ezaudio.data.audio import resample
    from ezaudio.eval.clap import _check_rate, _check_waveforms

    rate = _check_rate(sample_rate)
    clips = _check_waveforms(list(waveforms))
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidInputError(f"batch_size must be a positive integer, got {batch_size!r}")
    target = int(model.config.sample_rate)
    shortest = model.config.min_samples
    prepared = []
    for clip in clips:
        wave = resample(np.asarray(clip, dtype=np.float32), rate, target)
        if wave.shape[0] < shortest:
            wave = np.pad(wave, (0, shortest - wave.shape[0]))
        prepared.append(wave)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = np.zeros((len(prepared), int(model.config.classes_num)), dtype=np.float32)
    by_length: dict[int, list[int]] = {}
    for i, wave in enumerate(prepared):
        by_length.setdefault(wave.shape[0], []).append(i)
    try:
        for group in by_length.values():
            for first in range(0, len(group), batch_size):
                rows = group[first : first + batch_size]
                batch = torch.from_numpy(np.stack([prepared[i] for i in rows])).to(device)
                probabilities = model(batch).probabilities.float().cpu().numpy()  # [B, C]
                out[rows] = probabilities
    finally:
        model.train(was_training)
    return out


# -- metrics ------------------------------------------------------------------------------


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """AP of one class: mean precision at the rank of each positive (None: no positive)."""
    positives = int(labels.sum())
    if positives == 0:
        return None
    order = np.argsort(-scores, kind="stable")
    hits = labels[order] > 0
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision[hits].sum() / positives)


def tagging_report(
    probabilities: np.ndarray, targets: np.ndarray, class_names: Sequence[str]
) -> dict[str, Any]:
    """Exact label-set accuracy at 0.5, mAP, per-class precision / recall, top-1 on
    single-event clips. ``probabilities``, ``targets``: [N, C]."""
    predicted = probabilities >= THRESHOLD
    truth = targets > 0
    exact = float((predicted == truth).all(axis=1).mean())
    per_class, aps = {}, []
    for c, name in enumerate(class_names):
        ap = average_precision(probabilities[:, c], targets[:, c])
        if ap is not None:
            aps.append(ap)
        tp = int((predicted[:, c] & truth[:, c]).sum())
        per_class[name] = {
            "precision": tp / int(predicted[:, c].sum()) if predicted[:, c].any() else None,
            "recall": tp / int(truth[:, c].sum()) if truth[:, c].any() else None,
            "average_precision": ap,
            "support": int(truth[:, c].sum()),
        }
    single = truth.sum(axis=1) == 1
    top1 = (
        float((probabilities[single].argmax(axis=1) == truth[single].argmax(axis=1)).mean())
        if single.any()
        else None
    )
    return {
        "clips": len(targets),
        "exact_match": exact,
        "mAP": float(np.mean(aps)) if aps else None,
        "top1_single_event": top1,
        "single_event_clips": int(single.sum()),
        "threshold": THRESHOLD,
        "per_class": per_class,
    }


# -- training -----------------------------------------------------------------------------


@dataclass
class TrainResult:
    """A trained model, its report (also in ``report.json``) and the losses per step."""

    model: Any
    report: dict[str, Any]
    losses: list[float]
    folder: Path | None = None


def tagger_config(
    class_names: Sequence[str], sample_rate: int = 16000, **changes: Any
) -> Cnn14Config:
    """The default small-tagger config for ``class_names`` (fields overridable)."""
    options: dict[str, Any] = {
        "sample_rate": sample_rate,
        "fmax": min(8000.0, sample_rate / 2),
        "widths": TAGGER_WIDTHS,
        "embedding_dim": TAGGER_EMBEDDING_DIM,
        "classes_num": len(class_names),
        "class_names": tuple(class_names),
    }
    options.update(changes)
    return Cnn14Config(**options)


def train_loop(
    build: Callable[[], nn.Module],
    train: WorldSplit,
    settings: TrainSettings,
    steps: int,
    batch_size: int,
    device: torch.device,
    desc: str,
    log_mel: Callable[[nn.Module, torch.Tensor], torch.Tensor],
    loss: Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor],
    shift: bool,
    crop_samples: int | None = None,
) -> tuple[nn.Module, list[float], float]:
    """The training loop of both small evaluators: seeded model and batches, augmented
    waveforms -> log-mel (randomly low-passed) -> ``loss(model, log_mel, index, start)``,
    AdamW with warm-up and cosine decay. Returns the model, the per-step losses and seconds.

    ``crop_samples``: train on a random window of that many samples of each clip (no
    circular shift then); ``start`` [B] is the windows' first samples (None: whole clips).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        model = build().to(device)
        generator = torch.Generator().manual_seed(settings.seed + 1)
        noise_generator = device_generator(device, settings.seed + 2)
        audio = torch.from_numpy(train.audio).to(device)  # [N, S] int16
        centres = mel_centres_hz(model_front_end_config(model)).to(device)  # [M]
        optimiser = torch.optim.AdamW(
            [p for p in model.parameters() if p.requires_grad],
            lr=settings.lr, weight_decay=settings.weight_decay,
        )  # fmt: skip
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        losses: list[float] = []
        model.train()
        started = time.perf_counter()
        bar = tqdm(total=steps, desc=desc, unit="step", disable=not settings.progress)
        pending: list[torch.Tensor] = []
        for step, index in enumerate(batch_order(len(train), batch_size, steps, generator)):
            for group in optimiser.param_groups:
                group["lr"] = lr_at(step, steps, settings.lr, settings.warmup)
            wave = batch_waveforms(audio, index, device)  # [B, S]
            start = None
            if crop_samples is not None:
                wave, start = random_windows(wave, crop_samples, generator)  # [B, crop], [B]
            wave = augment_waveforms(
                wave, generator, shift=shift and start is None, noise_generator=noise_generator
            )
            with torch.no_grad():
                features = lowpass_log_mel(log_mel(model, wave), centres, generator)
            value = loss(model, features, index, start)
            optimiser.zero_grad(set_to_none=True)
            value.backward()
            optimiser.step()
            pending.append(value.detach())
            if len(pending) == 25 or step == steps - 1:
                losses.extend(torch.stack(pending).float().cpu().tolist())
                pending.clear()
                bar.set_postfix(loss=f"{losses[-1]:.4f}")
            bar.update()
        bar.close()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    return model, losses, time.perf_counter() - started


def model_front_end_config(model: nn.Module) -> Cnn14Config:
    """The log-mel settings of a tagger (its config) or a small CLAP (its audio tower's)."""
    audio = getattr(model, "audio", model)
    return audio.config


def train_tagger(
    world: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    settings: TrainSettings | None = None,
    config: Cnn14Config | None = None,
    crop_seconds: float | None = None,
) -> TrainResult:
    """Train a small tagger on ``world``'s train split and report on its test split.

    ``config`` None: :func:`tagger_config` (widths :data:`TAGGER_WIDTHS`). ``out``: write
    the folder (``config.json``, ``model.safetensors``, ``report.json``) atomically at the
    end; it must not exist yet or be empty. ``crop_seconds``: train on a random window of
    that length of each clip, labelled with the events heard in it (None: whole clips,
    randomly shifted in time); the test tags whole clips either way.
    """

    settings = settings or TrainSettings()
    if out is not None:
        check_out_folder(out)
    device = resolve_training_device(settings.device)
    steps, batch_size = settings.resolved(device)
    started = time.perf_counter()
    train = load_split(world, "train", settings.max_clips, progress=settings.progress)
    test = load_split(world, "test", settings.max_clips, progress=settings.progress)
    names = train.class_names
    config = config or tagger_config(names, train.sample_rate)
    if tuple(config.class_names) != tuple(names) or config.sample_rate != train.sample_rate:
        raise InvalidInputError(
            "the tagger config must name the world's classes and use its sample rate"
        )
    targets = torch.from_numpy(label_matrix(train.records, names)).to(device)  # [N, C]
    clip_seconds = train.audio.shape[1] / train.sample_rate
    crop_samples = None
    if crop_seconds is not None:
        if isinstance(crop_seconds, bool) or not (
            isinstance(crop_seconds, (int, float)) and 0 < crop_seconds <= clip_seconds
        ):
            raise InvalidInputError(
                f"crop_seconds must be in (0, {clip_seconds:g}] (the clips' length), "
                f"got {crop_seconds!r}"
            )
        crop_samples = round(crop_seconds * train.sample_rate)

    def batch_targets(index: torch.Tensor, start: torch.Tensor | None) -> torch.Tensor:
        """Labels [B, C] of the whole clips, or of the windows from ``start`` [B] samples."""
        if start is None:
            return targets[index.to(device)]
        length = crop_samples / train.sample_rate
        windows = [(s / train.sample_rate, s / train.sample_rate + length) for s in start.tolist()]
        rows = [train.records[i] for i in index.tolist()]
        return torch.from_numpy(label_matrix(rows, names, windows)).to(device)

    def batch_loss(model: Cnn14, log_mel: torch.Tensor, index: torch.Tensor,
                   start: torch.Tensor | None) -> torch.Tensor:  # fmt: skip
        with autocast(device):
            logits = model.forward_features(log_mel).logits  # [B, C]
        return F.binary_cross_entropy_with_logits(logits.float(), batch_targets(index, start))

    model, losses, train_seconds = train_loop(
        lambda: Cnn14(config), train, settings, steps, batch_size, device, "tagger",
        log_mel=lambda model, wave: model.log_mel(wave), loss=batch_loss, shift=True,
        crop_samples=crop_samples,
    )  # fmt: skip
    model.eval()
    test_targets = label_matrix(test.records, names)
    probabilities = tag_probabilities(model, test.waveforms(), test.sample_rate, batch_size=32)
    report = {
        "kind": "tagger",
        "world": str(Path(world)),
        "classes": list(names),
        "config": {"widths": list(config.widths), "embedding_dim": config.embedding_dim},
        "parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "train_clips": len(train),
        "steps": steps,
        "batch_size": batch_size,
        "crop_seconds": crop_seconds,
        "lr": settings.lr,
        "seed": settings.seed,
        "machine": machine_info(device),
        "seconds_train": round(train_seconds, 2),
        "seconds_total": round(time.perf_counter() - started, 2),
        **loss_ends(losses),
        "test": tagging_report(probabilities, test_targets, names),
    }
    return finish_training(model, report, losses, out)


def loss_ends(losses: Sequence[float]) -> dict[str, float]:
    """``loss_first`` / ``loss_last``: the mean of a run's first / last ten losses."""
    n = min(10, len(losses))
    return {"loss_first": float(np.mean(losses[:n])), "loss_last": float(np.mean(losses[-n:]))}


def finish_training(
    model: nn.Module,
    report: dict[str, Any],
    losses: list[float],
    out: str | os.PathLike[str] | None,
) -> TrainResult:
    """The trained evaluator on the CPU in eval mode; with ``out``, its folder
    (``config.json``, ``model.safetensors``, ``report.json``) published atomically."""
    model = model.cpu().eval()
    folder = None
    if out is not None:

        def write(tmp: Path) -> None:
            model.save_pretrained(tmp)
            write_json(tmp / REPORT_NAME, report)

        folder = publish_folder(out, write)
    return TrainResult(model=model, report=report, losses=losses, folder=folder)


def tagger_summary(report: dict[str, Any]) -> str:
    """A few lines for the terminal."""
    test = report["test"]
    return (
        f"tagger: {report['train_clips']} train clips, {report['steps']} steps x "
        f"{report['batch_size']} in {report['seconds_train']:.1f} s on "
        f"{report['machine']['device_name']}; loss {report['loss_first']:.4f} -> "
        f"{report['loss_last']:.4f}\n"
        f"test ({test['clips']} clips): exact label set {test['exact_match']:.3f}, "
        f"mAP {_fmt(test['mAP'])}, top-1 on single-event clips {_fmt(test['top1_single_event'])}"
    )


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
