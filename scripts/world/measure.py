"""Measure a small EzAudio trained on a synthetic sound world: the numbers of docs/results.md.

Usage (from the repository root; the package need not be installed)::

    PYTHONPATH=src python scripts/world/measure.py --model MODEL_FOLDER --world WORLD_DIR \\
        --tagger TAGGER_FOLDER [TAGGER_FOLDER ...] --clap CLAP_FOLDER --out OUT_DIR \\
        [--clips N] [--steps S] [--batch-size B] [--seed 0] [--device auto] \\
        [--sweep-clips 16] [--guidance-scales 1 2 3 5 7] [--rescales 0 0.5 0.75] \\
        [--edit-clips 32] [--skip adherence protocol sweep edit] [--runs RUN_DIR ...]

``WORLD_DIR`` is written by ``ezaudio data synth``; its ``test.jsonl`` (template captions,
with a ``paraphrase`` field) and ``metadata.jsonl`` (the events of every clip) are read.
The first ``--clips`` test clips are measured (default: all). ``TAGGER_FOLDER`` is a
:class:`ezaudio.eval.panns.Cnn14` component folder whose config names the world's classes
(``class_names``, in logit order); several tagger folders make an ensemble: the adherence
and editing sections average their probabilities (one tagger's score moves with its training
seed, docs/results.md), FD, KL and IS use the first; ``CLAP_FOLDER`` is anything
:meth:`ezaudio.eval.clap.ClapScorer.from_pretrained` loads (``none``: no CLAP score).

What is measured, each section with the machine, the device, its compute time and the
sampler settings (``OUT_DIR/results.json``, tables in ``OUT_DIR/results.md``):

1. **adherence**: one clip per test prompt, of the world's clip length, seed ``--seed + k``
   for test clip ``k`` (the protocol's numbering, so the template-caption audio is the
   protocol's, generated once). Each clip is tagged (sigmoid >= ``--threshold``) and the
   predicted class set is compared with every event class of the clip in the metadata
   (background beds included): precision and recall (micro over events and mean over
   clips), the share of clips tagged exactly and the share whose tags contain every event.
   Subsets: ``single_template`` (one-event clips, template captions), ``all_template``,
   ``all_paraphrase`` (the unseen paraphrase captions). Beside each: the same scores of the
   REAL test clips (the ceiling) and model / ceiling. Acceptance: recall of
   ``single_template`` >= 80 % of the ceiling's.
2. **protocol**: FD, KL, IS (the tagger as the PANNs extractor) and CLAP through
   :func:`ezaudio.eval.protocol.evaluate_model` (``OUT_DIR/protocol``), the code path of
   ``ezaudio evaluate``.
3. **sweep**: :func:`ezaudio.eval.protocol.run_sweep` over guidance scales x rescale
   factors on the first ``--sweep-clips`` clips (``OUT_DIR/sweep``); the plot is copied to
   ``OUT_DIR/sweep.png`` (paper Fig. 3 in miniature).
4. **editing**: inpainting with :meth:`ezaudio.pipeline.EzAudio.edit`. For test clips with
   one foreground event, the region ``[onset - margin, offset + margin]`` (at least
   ``--edit-min-seconds``, at most ``--edit-max-seconds``, inside the clip) is regenerated
   from the clip's caption; the region alone is tagged and the share where the tagger finds
   the event's class is reported for the inpainted region, the real region (ceiling), and
   two floors: silence and the region of another clip (the next clip, cyclically, without
   that class). The unmasked part is compared with the original: SNR over all kept samples,
   over the VAE-reconstructed context band (``boundary`` seconds each side of the region),
   and the largest difference outside that band (0: untouched).
5. ``--runs``: :func:`summarise_runs` of training run folders (``metrics.jsonl``).

Sections run in the order protocol, adherence, edit, sweep (``--skip`` any of them);
``results.json`` and ``results.md`` are rewritten after each one. A section that fails is
recorded as ``{"error": ...}`` and the others still run (exit status 1 then).

Deterministic given ``--seed`` (up to the device's float arithmetic). Resumable: audio
already generated or inpainted with the same settings into ``OUT_DIR`` is not made again
(other settings into the same ``OUT_DIR`` are refused by the protocol's generation record).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ezaudio.data.audio import read_audio, write_audio
from ezaudio.data.manifest import jsonl_objects
from ezaudio.errors import EzAudioError, InvalidInputError
from ezaudio.eval.protocol import (
    EvalClip,
    Evaluator,
    GenerationSettings,
    choose_captions,
    evaluate_model,
    generate_clips,
    model_fingerprint,
    output_names,
    read_eval_manifest,
    resolve_settings,
    run_sweep,
)
from ezaudio.eval.tagger import labels_of, tag_probabilities
from ezaudio.validation import LIMITS

RESULTS_FORMAT = 1
SECTIONS = ("adherence", "protocol", "sweep", "edit")
SUBSETS = ("single_template", "all_template", "all_paraphrase")
SCORE_KEYS = (
    "precision_micro", "recall_micro", "f1_micro", "precision_clip_mean",
    "recall_clip_mean", "exact_share", "contains_all_share",
)  # fmt: skip
ACCEPTANCE = {"subset": "single_template", "metric": "recall_micro", "target": 0.8}
EDIT_RECORD = "edits.json"


# ---- the world -----------------------------------------------------------------------------


@dataclass(frozen=True)
class WorldClip:
    """A test clip: its protocol clip (id, audio, template caption), paraphrase and metadata."""

    clip: EvalClip
    paraphrase: str
    record: dict[str, Any]

    @property
    def id(self) -> str:
        return self.clip.id


@dataclass(frozen=True)
class World:
    """The measured test clips of a world folder, with its clip length and rate."""

    folder: Path
    seconds: float
    sample_rate: int
    clips: list[WorldClip]
    test_clips: int


def load_world(folder: str | os.PathLike[str], limit: int | None = None) -> World:
    """The first ``limit`` test clips (all when None) of a world written by ``ezaudio data
    synth``, with their paraphrases and metadata records."""
    folder = Path(folder)
    manifest = folder / "test.jsonl"
    clips = read_eval_manifest(manifest)
    total = len(clips)
    if limit is not None:
        clips = clips[:limit]
    raw = {
        str(row.get("id")): row
        for _, row in jsonl_objects(manifest, manifest.read_text(encoding="utf-8"))
    }
    metadata_path = folder / "metadata.jsonl"
    if not metadata_path.is_file():
        raise InvalidInputError(f"{metadata_path}: not found (is {folder} a synth world?)")
    wanted = {clip.id for clip in clips}
    records = {}
    for _, record in jsonl_objects(metadata_path, metadata_path.read_text(encoding="utf-8")):
        if record.get("id") in wanted:
            records[record["id"]] = record
    missing = sorted(wanted - set(records))
    if missing:
        raise InvalidInputError(f"{metadata_path}: no record for test clips {missing[:5]}")
    info_path = folder / "world.json"
    info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.is_file() else {}
    first = records[clips[0].id] if clips else {}
    seconds = float(info.get("seconds", first.get("seconds", 10.0)))
    rate = int(info.get("sample_rate", first.get("sample_rate", 16000)))
    out = []
    for clip in clips:
        paraphrase = str(raw[clip.id].get("paraphrase") or records[clip.id].get("paraphrase") or "")
        if not paraphrase.strip():
            raise InvalidInputError(f"{manifest}: clip {clip.id!r} has no paraphrase")
        out.append(WorldClip(clip, paraphrase.strip(), records[clip.id]))
    return World(folder, seconds, rate, out, total)


def true_labels(record: dict[str, Any]) -> set[str]:
    """Every event class of a metadata record (background beds included)."""
    return set(labels_of(record))


def foreground_events(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The record's foreground events."""
    return [event for event in record["events"] if event.get("role") == "foreground"]


# ---- scoring -------------------------------------------------------------------------------


def adherence_scores(predicted: Sequence[set[str]], truth: Sequence[set[str]]) -> dict[str, Any]:
    """Precision / recall of predicted class sets against the true sets, clip by clip.

    Micro scores pool the clips' events (``hits / predicted``, ``hits / events``); clip
    means average each clip's precision and recall. A clip with no predicted class has
    precision 0 (as is the micro precision when nothing at all is predicted); a clip with
    no true class has recall 1. ``exact_share``: predicted == true; ``contains_all_share``:
    every true class predicted. With no clips every score is None.
    """
    if len(predicted) != len(truth):
        raise InvalidInputError(f"{len(predicted)} predicted sets but {len(truth)} true sets")
    n = len(truth)
    hits = sum(len(p & t) for p, t in zip(predicted, truth))
    n_pred = sum(len(p) for p in predicted)
    n_true = sum(len(t) for t in truth)
    scores: dict[str, Any] = {"clips": n, "events": n_true, "predicted": n_pred, "hits": hits}
    if n == 0:
        return {**scores, **dict.fromkeys(SCORE_KEYS)}
    precision = hits / n_pred if n_pred else 0.0
    recall = hits / n_true if n_true else 1.0
    scores.update(
        precision_micro=precision,
        recall_micro=recall,
        f1_micro=2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        precision_clip_mean=float(
            np.mean([len(p & t) / len(p) if p else 0.0 for p, t in zip(predicted, truth)])
        ),
        recall_clip_mean=float(
            np.mean([len(p & t) / len(t) if t else 1.0 for p, t in zip(predicted, truth)])
        ),
        exact_share=float(np.mean([p == t for p, t in zip(predicted, truth)])),
        contains_all_share=float(np.mean([t <= p for p, t in zip(predicted, truth)])),
    )
    return scores


def ratios(model: dict[str, Any], ceiling: dict[str, Any]) -> dict[str, float | None]:
    """model / ceiling for every score (None where the ceiling is 0 or missing)."""
    out: dict[str, float | None] = {}
    for key in SCORE_KEYS:
        m, c = model.get(key), ceiling.get(key)
        out[key] = m / c if m is not None and c else None
    return out


def predicted_sets(
    probabilities: np.ndarray, class_names: Sequence[str], threshold: float
) -> list[set[str]]:
    """Class sets with probability >= ``threshold``, one per row of ``probabilities``."""
    names = np.asarray(list(class_names), dtype=object)
    return [set(names[row >= threshold].tolist()) for row in np.asarray(probabilities)]


def per_class_recall(
    predicted: Sequence[set[str]], truth: Sequence[set[str]]
) -> dict[str, dict[str, Any]]:
    """Per true class: its number of events and the share of them tagged."""
    table: dict[str, list[int]] = {}
    for p, t in zip(predicted, truth):
        for name in t:
            row = table.setdefault(name, [0, 0])
            row[0] += 1
            row[1] += name in p
    return {name: {"events": n, "recall": hit / n} for name, (n, hit) in sorted(table.items())}


def snr_db(reference: np.ndarray, test: np.ndarray) -> float:
    """10 log10(sum ref² / sum (ref - test)²) in float64: inf when identical (or empty),
    -inf when the reference is silent and the test is not."""
    reference = np.asarray(reference, dtype=np.float64)
    error = float(np.sum((reference - np.asarray(test, dtype=np.float64)) ** 2))
    if reference.size == 0 or error == 0.0:
        return math.inf
    signal = float(np.sum(reference**2))
    return 10.0 * math.log10(signal / error) if signal > 0 else -math.inf


def edit_region(
    onset: float,
    offset: float,
    duration: float,
    *,
    margin: float = 0.25,
    min_seconds: float = 1.0,
    max_seconds: float = 5.0,
) -> tuple[float, float]:
    """The inpainting region (start, end) in seconds for an event [onset, offset].

    The event plus ``margin`` on each side, inside [0, duration]; longer than
    ``max_seconds``: its first ``max_seconds``; shorter than ``min_seconds``: widened
    around its centre (and shifted to stay inside the clip). Rounded to milliseconds.
    """
    if not 0 < min_seconds <= max_seconds:
        raise InvalidInputError("need 0 < min_seconds <= max_seconds")
    start, end = max(0.0, onset - margin), min(duration, offset + margin)
    if end - start > max_seconds:
        end = start + max_seconds
    width = min(min_seconds, duration)
    if end - start < width:
        centre = (start + end) / 2
        start = min(max(0.0, centre - width / 2), duration - width)
        end = start + width
    return round(start, 3), round(end, 3)


# ---- tagging -------------------------------------------------------------------------------


def tagger_list(model: Any) -> list[Any]:
    """One tagger, or a list or tuple of them (an ensemble) -> a list of taggers."""
    return list(model) if isinstance(model, (list, tuple)) else [model]


def tag_waveforms(
    model: Any, waveforms: Sequence[np.ndarray], sample_rate: int, batch_size: int
) -> np.ndarray:
    """Tagger probabilities [N, C] (float64) of mono waveforms at ``sample_rate``.

    ``model``: one tagger, or a list or tuple of taggers of the same classes (an ensemble),
    whose probabilities are averaged.
    """
    models = tagger_list(model)
    waves = [np.asarray(wave, dtype=np.float32) for wave in waveforms]
    total = np.zeros((len(waves), int(models[0].config.classes_num)), dtype=np.float64)
    for one in models:
        probabilities = tag_probabilities(one, waves, sample_rate, batch_size=batch_size)
        total += np.asarray(probabilities, dtype=np.float64).reshape(len(waves), -1)
    return total / len(models)


def tag_files(model: Any, paths: Sequence[Path], batch_size: int) -> np.ndarray:
    """Tagger probabilities [N, C] of audio files (mono mix, at each file's rate)."""
    by_rate: dict[int, list[tuple[int, np.ndarray]]] = {}
    for index, path in enumerate(paths):
        wave, rate = read_audio(path)
        by_rate.setdefault(rate, []).append((index, wave))
    out = np.zeros((len(paths), int(tagger_list(model)[0].config.classes_num)), dtype=np.float64)
    for rate, items in by_rate.items():
        probabilities = tag_waveforms(model, [wave for _, wave in items], rate, batch_size)
        out[[index for index, _ in items]] = probabilities
    return out


# ---- environment ---------------------------------------------------------------------------


def machine_info(device: Any) -> dict[str, Any]:
    """CPU model, core count, GPU name (when the device is a GPU), torch and CUDA versions."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    device = torch.device(device)
    gpu = None
    if device.type == "cuda":
        gpu = torch.cuda.get_device_name(device)
    elif device.type == "mps":
        gpu = "Apple MPS"
    return {
        "cpu": cpu, "cpu_count": os.cpu_count(), "gpu": gpu, "device": str(device),
        "platform": platform.platform(), "python": platform.python_version(),
        "torch": torch.__version__, "cuda": torch.version.cuda,
    }  # fmt: skip


def safe_versions() -> dict[str, str]:
    """:func:`ezaudio.eval.protocol.versions`, or what can be found when that fails."""
    try:
        from ezaudio.eval.protocol import versions

        return versions()
    except Exception:  # a broken metadata lookup must not stop a measurement
        import torch

        return {"python": platform.python_version(), "torch": torch.__version__,
                "numpy": np.__version__}  # fmt: skip


def _sync(device: Any) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


# ---- sections ------------------------------------------------------------------------------


@dataclass
class Context:
    """Everything the sections share."""

    args: argparse.Namespace
    world: World
    pipe: Any
    evaluator: Evaluator
    tagger: tuple[Any, ...]  # one or more taggers; their probabilities are averaged
    class_names: tuple[str, ...]
    settings: GenerationSettings
    fingerprint: str
    out: Path
    machine: dict[str, Any]
    real_probabilities: np.ndarray | None = None

    def log(self, message: str) -> None:
        if not self.args.quiet:
            print(message, file=sys.stderr, flush=True)

    @property
    def eval_clips(self) -> list[EvalClip]:
        return [clip.clip for clip in self.world.clips]

    def section(self, seconds: float, **extra: Any) -> dict[str, Any]:
        return {"device": str(self.pipe.device), "machine": self.machine,
                "seconds": round(seconds, 3), **extra}  # fmt: skip

    def real(self) -> np.ndarray:
        """Tagger probabilities of the real test clips (computed once)."""
        if self.real_probabilities is None:
            paths = [clip.clip.audio for clip in self.world.clips]
            self.real_probabilities = tag_files(self.tagger, paths, self.args.batch_size)
        return self.real_probabilities


def measure_protocol(ctx: Context) -> dict[str, Any]:
    """FD, KL, IS and CLAP of the template-caption clips through ``evaluate_model``."""
    started = time.perf_counter()
    results = evaluate_model(
        ctx.eval_clips, ctx.pipe, ctx.out / "protocol", ctx.evaluator, ctx.settings,
        batch_size=ctx.args.batch_size, progress=not ctx.args.quiet,
        model_name=ctx.pipe.name, fingerprint=ctx.fingerprint,
        manifest=ctx.world.folder / "test.jsonl", log=ctx.log,
    )  # fmt: skip
    _sync(ctx.pipe.device)
    return ctx.section(
        time.perf_counter() - started,
        metrics=results["metrics"], sampler=results["sampler"], folder="protocol",
        generation=results["generation"], features=results["features"],
    )  # fmt: skip


def measure_adherence(ctx: Context) -> dict[str, Any]:
    """Tag one generated clip per prompt (template and paraphrase) and the real clips."""
    started = time.perf_counter()
    clips = ctx.eval_clips
    template = [c["caption"] for c in choose_captions(clips, ctx.settings.caption_seed)]
    paraphrase = [clip.paraphrase for clip in ctx.world.clips]
    runs = {}
    generation_seconds = 0.0
    for name, captions in (("template", template), ("paraphrase", paraphrase)):
        folder = ctx.out / ("protocol" if name == "template" else "paraphrase")
        report = generate_clips(
            ctx.pipe, clips, captions, folder, ctx.settings, batch_size=ctx.args.batch_size,
            progress=not ctx.args.quiet, model_name=ctx.pipe.name, fingerprint=ctx.fingerprint,
        )  # fmt: skip
        generation_seconds += report.seconds_taken
        runs[name] = (report, captions)
    tagging_started = time.perf_counter()
    threshold = ctx.args.threshold
    truth = [true_labels(clip.record) for clip in ctx.world.clips]
    real = predicted_sets(ctx.real(), ctx.class_names, threshold)
    generated = {
        name: predicted_sets(
            tag_files(ctx.tagger, report.files, ctx.args.batch_size), ctx.class_names, threshold
        )
        for name, (report, _) in runs.items()
    }
    _sync(ctx.pipe.device)
    tagging_seconds = time.perf_counter() - tagging_started
    single = [i for i, clip in enumerate(ctx.world.clips) if len(clip.record["events"]) == 1]
    everything = list(range(len(truth)))
    subsets = {}
    for subset, rows, source in (
        ("single_template", single, "template"),
        ("all_template", everything, "template"),
        ("all_paraphrase", everything, "paraphrase"),
    ):
        pick_truth = [truth[i] for i in rows]
        model = adherence_scores([generated[source][i] for i in rows], pick_truth)
        ceiling = adherence_scores([real[i] for i in rows], pick_truth)
        subsets[subset] = {"model": model, "ceiling": ceiling, "ratio": ratios(model, ceiling)}
    accepted = subsets[ACCEPTANCE["subset"]]
    ratio = accepted["ratio"][ACCEPTANCE["metric"]]
    per_class = {
        name: {"events": row["events"], "model_recall": row["recall"], "ceiling_recall": None}
        for name, row in per_class_recall(generated["template"], truth).items()
    }
    for name, row in per_class_recall(real, truth).items():
        per_class[name]["ceiling_recall"] = row["recall"]
    details = [
        {"id": clip.id, "seed": runs["template"][0].seeds[i], "caption": template[i],
         "paraphrase": paraphrase[i], "true": sorted(truth[i]),
         "template": sorted(generated["template"][i]),
         "paraphrase_tags": sorted(generated["paraphrase"][i]), "real": sorted(real[i])}
        for i, clip in enumerate(ctx.world.clips)
    ]  # fmt: skip
    return ctx.section(
        time.perf_counter() - started,
        generation_seconds=round(generation_seconds, 3),
        tagging_seconds=round(tagging_seconds, 3),
        sampler=asdict(ctx.settings),
        threshold=threshold,
        seconds_per_clip=ctx.settings.seconds,
        subsets=subsets,
        acceptance={**ACCEPTANCE, "model": accepted["model"][ACCEPTANCE["metric"]],
                    "ceiling": accepted["ceiling"][ACCEPTANCE["metric"]], "ratio": ratio,
                    "passed": None if ratio is None else bool(ratio >= ACCEPTANCE["target"])},
        per_class=per_class,
        folders={"template": "protocol/audio", "paraphrase": "paraphrase/audio"},
        clips=details,
    )  # fmt: skip


def measure_sweep(ctx: Context) -> dict[str, Any]:
    """``run_sweep`` on the first ``--sweep-clips`` clips; the plot copied to ``sweep.png``."""
    started = time.perf_counter()
    clips = ctx.eval_clips[: ctx.args.sweep_clips]
    if len(clips) < 2:
        raise InvalidInputError(f"the sweep needs at least 2 clips, got {len(clips)}")
    table = run_sweep(
        clips, ctx.pipe, ctx.out / "sweep", ctx.evaluator, ctx.settings,
        ctx.args.guidance_scales, ctx.args.rescales, batch_size=ctx.args.batch_size,
        progress=not ctx.args.quiet, model_name=ctx.pipe.name,
        manifest=ctx.world.folder / "test.jsonl", log=ctx.log,
    )  # fmt: skip
    shutil.copyfile(ctx.out / "sweep" / "sweep.png", ctx.out / "sweep.png")
    _sync(ctx.pipe.device)
    return ctx.section(
        time.perf_counter() - started,
        clips=len(clips), guidance_scales=table["guidance_scales"], rescales=table["rescales"],
        sampler=table["sampler"], cells=table["cells"], plot="sweep.png", folder="sweep",
    )  # fmt: skip


def _edit_settings(ctx: Context) -> dict[str, Any]:
    args, defaults = ctx.args, ctx.pipe.sampling
    return {
        "model_fingerprint": ctx.fingerprint,
        "steps": ctx.settings.steps,
        "guidance_scale": float(
            defaults.edit_guidance_scale if args.edit_guidance_scale is None
            else args.edit_guidance_scale
        ),
        "guidance_rescale": float(
            defaults.edit_guidance_rescale if args.edit_guidance_rescale is None
            else args.edit_guidance_rescale
        ),
        "eta": ctx.settings.eta,
        "boundary": float(defaults.boundary if args.boundary is None else args.boundary),
        "seed": ctx.settings.seed,
        "margin": args.edit_margin,
        "min_seconds": args.edit_min_seconds,
        "max_seconds": args.edit_max_seconds,
        "sample_rate": int(ctx.pipe.sample_rate),
    }  # fmt: skip


def _share(values: Sequence[bool]) -> float | None:
    return float(np.mean(values)) if len(values) else None


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _summary(values: Sequence[float]) -> dict[str, Any]:
    """Mean, median and min of the finite values; clips identical (inf) or silent (-inf)."""
    finite = [v for v in values if math.isfinite(v)]
    return {
        "mean": float(np.mean(finite)) if finite else None,
        "median": float(np.median(finite)) if finite else None,
        "min": float(np.min(finite)) if finite else None,
        "identical_clips": sum(v == math.inf for v in values),
        "silent_reference_clips": sum(v == -math.inf for v in values),
    }


def measure_editing(ctx: Context) -> dict[str, Any]:
    """Inpaint the foreground event of single-foreground clips; tag the region."""
    from tqdm.auto import tqdm

    started = time.perf_counter()
    args, pipe = ctx.args, ctx.pipe
    rate = int(pipe.sample_rate)
    eligible = [i for i, c in enumerate(ctx.world.clips) if len(foreground_events(c.record)) == 1]
    chosen = eligible[: args.edit_clips]
    if not chosen:
        raise InvalidInputError("no test clip has exactly one foreground event to inpaint")
    settings = _edit_settings(ctx)
    folder = ctx.out / "edit"
    audio_dir = folder / "audio"
    record_path = folder / EDIT_RECORD
    record: dict[str, Any] = {"settings": settings, "clips": {}}
    if record_path.is_file():
        old = json.loads(record_path.read_text(encoding="utf-8"))
        if old.get("settings") == settings:
            record = old
    names = dict(
        zip([c.id for c in ctx.world.clips], output_names([c.id for c in ctx.world.clips]))
    )
    originals: dict[int, np.ndarray] = {}

    def original(index: int) -> np.ndarray:
        if index not in originals:
            originals[index] = read_audio(ctx.world.clips[index].clip.audio, rate)[0]
        return originals[index]

    regions: dict[int, tuple[float, float]] = {}
    for index in eligible:
        event = foreground_events(ctx.world.clips[index].record)[0]
        regions[index] = edit_region(
            float(event["onset"]), float(event["offset"]), len(original(index)) / rate,
            margin=args.edit_margin, min_seconds=args.edit_min_seconds,
            max_seconds=args.edit_max_seconds,
        )  # fmt: skip
    edit_seconds = 0.0
    rows = []
    bar = tqdm(chosen, desc="inpaint", unit="clip", disable=args.quiet, leave=False)
    for j, index in enumerate(bar):
        clip = ctx.world.clips[index]
        target = foreground_events(clip.record)[0]["class"]
        start, end = regions[index]
        caption = clip.clip.captions[0]
        seed = (settings["seed"] + j) % (LIMITS.max_seed + 1)
        wanted = {"caption": caption, "seed": seed, "region": [start, end]}
        path = audio_dir / f"{names[clip.id]}.wav"
        wave = original(index)
        edited = None
        if record["clips"].get(clip.id) == wanted and path.is_file():
            edited, file_rate = read_audio(path)
            if file_rate != rate or len(edited) != len(wave):
                edited = None
        if edited is None:
            began = time.perf_counter()
            result = pipe.edit(
                wave, caption, mask_start=start, mask_length=end - start,
                boundary=settings["boundary"], sample_rate=rate, steps=settings["steps"],
                guidance_scale=settings["guidance_scale"],
                guidance_rescale=settings["guidance_rescale"], eta=settings["eta"], seed=seed,
                progress=False,
            )  # fmt: skip
            _sync(pipe.device)
            edit_seconds += time.perf_counter() - began
            edited = result.waveforms[0]
            write_audio(path, edited, rate)
            record["clips"][clip.id] = wanted
            folder.mkdir(parents=True, exist_ok=True)
            record_path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        first, last = round(start * rate), round(end * rate)
        band = min((end - start) / 2, settings["boundary"])
        low = max(round((start - band) * rate), 0)
        high = min(round((end + band) * rate), len(wave))
        kept = np.ones(len(wave), dtype=bool)
        kept[first:last] = False
        context = np.zeros(len(wave), dtype=bool)
        context[low:high] = True
        context &= kept
        outside = np.ones(len(wave), dtype=bool)  # never touched by the edit
        outside[low:high] = False
        other = next(
            (k for k in eligible[eligible.index(index) + 1 :] + eligible[: eligible.index(index)]
             if target not in true_labels(ctx.world.clips[k].record)),
            None,
        )  # fmt: skip
        other_crop = None
        if other is not None:
            o_start, o_end = regions[other]
            other_crop = original(other)[round(o_start * rate) : round(o_end * rate)]
        difference = np.abs(edited[outside].astype(np.float64) - wave[outside])
        rows.append({
            "id": clip.id, "class": target, "region": [start, end], "seed": seed,
            "caption": caption, "other": ctx.world.clips[other].id if other is not None else None,
            "kept_snr_db": snr_db(wave[kept], edited[kept]),
            "context_snr_db": snr_db(wave[context], edited[context]),
            "outside_max_abs_diff": float(difference.max()) if difference.size else 0.0,
            "crops": {"inpainted": edited[first:last], "real": wave[first:last],
                      "silence": np.zeros(last - first, dtype=np.float32), "other": other_crop},
        })  # fmt: skip
    bar.close()
    tagging_started = time.perf_counter()
    class_index = {name: i for i, name in enumerate(ctx.class_names)}
    conditions = ("inpainted", "real", "silence", "other")
    shares: dict[str, Any] = {}
    for condition in conditions:
        present = [row for row in rows if row["crops"][condition] is not None]
        if not present:
            shares[condition] = {"clips": 0, "found_share": None, "mean_probability": None}
            continue
        probabilities = tag_waveforms(
            ctx.tagger, [row["crops"][condition] for row in present], rate, args.batch_size
        )
        values = [probabilities[i, class_index[row["class"]]] for i, row in enumerate(present)]
        for row, value in zip(present, values):
            row[f"p_{condition}"] = float(value)
        shares[condition] = {
            "clips": len(present),
            "found_share": _share([v >= args.threshold for v in values]),
            "mean_probability": float(np.mean(values)),
        }
    tagging_seconds = time.perf_counter() - tagging_started
    for row in rows:
        del row["crops"]
    kept_snr = [row["kept_snr_db"] for row in rows]
    context_snr = [row["context_snr_db"] for row in rows]
    for row in rows:
        row["kept_snr_db"], row["context_snr_db"] = (
            _finite(row["kept_snr_db"]),
            _finite(row["context_snr_db"]),
        )
    ceiling = shares["real"]["found_share"]
    inpainted = shares["inpainted"]["found_share"]
    return ctx.section(
        time.perf_counter() - started,
        edit_seconds=round(edit_seconds, 3), tagging_seconds=round(tagging_seconds, 3),
        settings={k: v for k, v in settings.items() if k != "model_fingerprint"},
        threshold=args.threshold, eligible=len(eligible), clips=len(rows),
        found=shares,
        ratio=inpainted / ceiling if inpainted is not None and ceiling else None,
        kept_snr_db=_summary(kept_snr),
        context_snr_db=_summary(context_snr),
        outside_max_abs_diff=max(row["outside_max_abs_diff"] for row in rows),
        folder="edit/audio", per_clip=rows,
    )  # fmt: skip


# ---- training runs -------------------------------------------------------------------------


def summarise_runs(run_dirs: Sequence[str | os.PathLike[str]]) -> dict[str, Any]:
    """Training and validation losses of training run folders.

    Reads every ``*.jsonl`` directly in each folder (the trainer writes ``metrics.jsonl``:
    ``step``, ``loss``, ``lr``, ``steps_per_s``). Keys that name a validation loss (``val``
    or ``valid`` and ``loss`` in the key) are listed per step under ``validation``; the
    training loss is summarised (first, last, min, mean of the last 100 records). A run
    with no validation loss says so in ``validation_note``.
    """
    out: dict[str, Any] = {}
    for run in run_dirs:
        folder = Path(run)
        train: list[tuple[int, float]] = []
        validation: dict[str, list[dict[str, float]]] = {}
        files = sorted(folder.glob("*.jsonl")) if folder.is_dir() else []
        for path in files:
            for _, record in jsonl_objects(path, path.read_text(encoding="utf-8")):
                step = record.get("step")
                for key, value in record.items():
                    if not isinstance(value, (int, float)) or isinstance(value, bool):
                        continue
                    lowered = f"{path.stem}/{key}".lower()
                    if "loss" in key.lower() and ("val" in lowered):
                        validation.setdefault(f"{path.name}:{key}", []).append(
                            {"step": step, "value": float(value)}
                        )
                    elif key == "loss" and path.name == "metrics.jsonl":
                        train.append((int(step or 0), float(value)))
        losses = [value for _, value in train]
        out[str(folder)] = {
            "files": [path.name for path in files],
            "steps": max((step for step, _ in train), default=None),
            "train_loss": {
                "first": losses[0], "last": losses[-1], "min": min(losses),
                "last_100_mean": float(np.mean(losses[-100:])),
            } if losses else None,
            "validation": validation or None,
            "validation_note": None
            if validation
            else ("no validation loss logged" if folder.is_dir() else "run folder not found"),
        }  # fmt: skip
    return out


# ---- report --------------------------------------------------------------------------------


def _f(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def results_markdown(results: dict[str, Any]) -> str:
    """Tables of the measured sections."""
    machine = results["machine"]
    lines = [
        f"# Measurements: {results['model']['name']}",
        "",
        f"World `{results['world']['folder']}`: {results['world']['measured_clips']} of "
        f"{results['world']['test_clips']} test clips, {results['world']['seconds']:g} s at "
        f"{results['world']['sample_rate']} Hz. Device {machine['device']} "
        f"({machine['gpu'] or machine['cpu']}), total {results['seconds']:.1f} s.",
        "",
    ]
    adherence = results.get("adherence")
    if adherence and "error" in adherence:
        lines += [f"## adherence: failed ({adherence['error']})", ""]
    elif adherence:
        s = adherence["sampler"]
        lines += [
            "## Prompt adherence (tagger threshold "
            f"{adherence['threshold']:g}; ceiling = real clips)",
            "",
            "| Prompts | Clips | P micro | R micro | P clip | R clip | Exact | All found | "
            "Ceiling P | Ceiling R | Ceiling exact | R / ceiling | Exact / ceiling |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name in SUBSETS:
            m, c, r = (adherence["subsets"][name][k] for k in ("model", "ceiling", "ratio"))
            lines.append(
                f"| {name} | {m['clips']} | {_f(m['precision_micro'])} | "
                f"{_f(m['recall_micro'])} | {_f(m['precision_clip_mean'])} | "
                f"{_f(m['recall_clip_mean'])} | {_f(m['exact_share'])} | "
                f"{_f(m['contains_all_share'])} | {_f(c['precision_micro'])} | "
                f"{_f(c['recall_micro'])} | {_f(c['exact_share'])} | {_f(r['recall_micro'])} | "
                f"{_f(r['exact_share'])} |"
            )
        a = adherence["acceptance"]
        lines += [
            "",
            f"Acceptance ({a['subset']} {a['metric']} >= {a['target']:.0%} of the ceiling): "
            f"{_f(a['model'])} / {_f(a['ceiling'])} = {_f(a['ratio'])} -> "
            f"{'n/a' if a['passed'] is None else ('passed' if a['passed'] else 'not passed')}.",
            "",
            f"{s['steps']} DDIM steps, guidance {s['guidance_scale']:g}, rescale "
            f"{s['guidance_rescale']:g}, eta {s['eta']:g}, {s['seconds']:g} s, seed "
            f"{s['seed']} + clip index; {adherence['seconds']:.1f} s "
            f"({adherence['generation_seconds']:.1f} s generating).",
            "",
        ]
    protocol = results.get("protocol")
    if protocol and "error" in protocol:
        lines += [f"## protocol: failed ({protocol['error']})", ""]
    elif protocol:
        m = protocol["metrics"]
        lines += [
            "## FD, KL, IS, CLAP (tagger embeddings and logits; generated vs real test clips)",
            "",
            "| Clips | FD ↓ | KL ↓ | IS ↑ | CLAP ↑ | CLAP of real clips |",
            "|---:|---:|---:|---:|---:|---:|",
            f"| {m['clips']} | {_f(m['fd'], 2)} | {_f(m['kl'])} | {_f(m['is'])} | "
            f"{_f(m['clap'])} | {_f(m['clap_reference'])} |",
            "",
        ]
    sweep = results.get("sweep")
    if sweep and "error" in sweep:
        lines += [f"## sweep: failed ({sweep['error']})", ""]
    elif sweep:
        lines += [
            f"## Guidance sweep ({sweep['clips']} clips) ![sweep]({sweep['plot']})",
            "",
            "| Guidance | Rescale | FD ↓ | KL ↓ | IS ↑ | CLAP ↑ |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        for cell in sweep["cells"]:
            lines.append(
                f"| {cell['guidance_scale']:g} | {cell['guidance_rescale']:g} | "
                f"{_f(cell['fd'], 2)} | {_f(cell['kl'])} | {_f(cell['is'])} | "
                f"{_f(cell['clap'])} |"
            )
        lines.append("")
    edit = results.get("edit")
    if edit and "error" in edit:
        lines += [f"## edit: failed ({edit['error']})", ""]
    elif edit:
        f = edit["found"]
        lines += [
            f"## Inpainting ({edit['clips']} single-foreground clips; event class found in "
            "the region)",
            "",
            "| Inpainted | Real (ceiling) | Silence (floor) | Other clip (floor) | "
            "Inpainted / ceiling | Kept SNR dB (mean, min) | Context SNR dB | "
            "Max diff outside |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|",
            f"| {_f(f['inpainted']['found_share'])} | {_f(f['real']['found_share'])} | "
            f"{_f(f['silence']['found_share'])} | {_f(f['other']['found_share'])} | "
            f"{_f(edit['ratio'])} | {_f(edit['kept_snr_db']['mean'], 1)}, "
            f"{_f(edit['kept_snr_db']['min'], 1)} | {_f(edit['context_snr_db']['mean'], 1)} | "
            f"{edit['outside_max_abs_diff']:.2g} |",
            "",
            f"Edit settings: {edit['settings']}.",
            "",
        ]
    return "\n".join(lines)


# ---- main ----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The command-line options (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog="measure.py", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    add = parser.add_argument
    add("--model", required=True, help="EzAudio model folder")
    add("--world", required=True, help="synthetic world folder (ezaudio data synth)")
    add(
        "--tagger",
        required=True,
        nargs="+",
        help="Cnn14 component folder naming the world's classes; several: an ensemble whose "
        "probabilities are averaged for adherence and editing (FD/KL/IS use the first)",
    )
    add("--clap", required=True, help="CLAP folder for ClapScorer.from_pretrained, or 'none'")
    add("--out", required=True, help="output folder (re-running resumes)")
    add("--clips", type=int, default=None, help="first N test clips (default: all)")
    add("--steps", type=int, default=None, help="DDIM steps (default: the model's)")
    add("--guidance-scale", type=float, default=None)
    add("--guidance-rescale", type=float, default=None)
    add("--eta", type=float, default=None)
    add("--batch-size", type=int, default=8, help="prompts generated / clips tagged together")
    add("--seed", type=int, default=0, help="clip k uses seed + k")
    add("--threshold", type=float, default=0.5, help="tagger probability threshold")
    add("--sweep-clips", type=int, default=16)
    add("--guidance-scales", type=float, nargs="+", default=[1, 2, 3, 5, 7])
    add("--rescales", type=float, nargs="+", default=[0, 0.5, 0.75])
    add("--edit-clips", type=int, default=32, help="single-foreground clips to inpaint")
    add("--edit-guidance-scale", type=float, default=None)
    add("--edit-guidance-rescale", type=float, default=None)
    add("--boundary", type=float, default=None, help="edit context seconds (model default)")
    add("--edit-margin", type=float, default=0.25, help="seconds added around the event")
    add("--edit-min-seconds", type=float, default=1.0)
    add("--edit-max-seconds", type=float, default=5.0)
    add("--skip", nargs="*", choices=SECTIONS, default=[], help="sections not to run")
    add("--runs", nargs="*", default=[], help="training run folders to summarise")
    add("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    add("--dtype", default="float32", help="DiT precision: float32, bfloat16, float16")
    add("--quiet", action="store_true", help="no progress bars or messages")
    return parser


def _check_args(args: argparse.Namespace) -> None:
    for name in ("clips", "batch_size", "sweep_clips", "edit_clips"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise InvalidInputError(f"--{name.replace('_', '-')} must be positive, got {value}")
    if not 0 < args.threshold < 1:
        raise InvalidInputError(f"--threshold must be in (0, 1), got {args.threshold}")


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Run the sections not skipped; write ``results.json`` and ``results.md``; return them."""
    from ezaudio.eval.clap import ClapScorer
    from ezaudio.eval.features import load_panns
    from ezaudio.pipeline import EzAudio, resolve_device

    _check_args(args)
    began = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    world = load_world(args.world, args.clips)
    if len(world.clips) < 2:
        raise InvalidInputError(f"{args.world}: need at least 2 test clips, got {len(world.clips)}")
    device = resolve_device(args.device)
    pipe = EzAudio.from_pretrained(args.model, device=device, dtype=args.dtype)
    folders = list(args.tagger)  # one or more (an ensemble)
    extractors = [load_panns(folder, device=device) for folder in folders]
    extractor = extractors[0]
    class_names = tuple(getattr(extractor.model.config, "class_names", ()) or ())
    if not class_names:
        raise InvalidInputError(f"{folders[0]}: the tagger's config names no classes")
    for folder, other in zip(folders[1:], extractors[1:]):
        if tuple(getattr(other.model.config, "class_names", ()) or ()) != class_names:
            raise InvalidInputError(f"{folder}: names other classes than {folders[0]}")
    tagger = tuple(e.model for e in extractors)
    unknown = sorted(
        {c for clip in world.clips for c in true_labels(clip.record)} - set(class_names)
    )
    if unknown:
        raise InvalidInputError(f"{folders[0]}: the tagger has no class {unknown}")
    clap = None
    if str(args.clap).lower() != "none":
        clap = ClapScorer.from_pretrained(args.clap, device=device)
    evaluator = Evaluator(extractor, clap, cache_dir=out / "feature_cache",
                          batch_size=args.batch_size, progress=not args.quiet)  # fmt: skip
    settings = resolve_settings(
        pipe, steps=args.steps, guidance_scale=args.guidance_scale,
        guidance_rescale=args.guidance_rescale, eta=args.eta, seconds=world.seconds,
        seed=args.seed,
    )  # fmt: skip
    ctx = Context(
        args=args, world=world, pipe=pipe, evaluator=evaluator, tagger=tagger,
        class_names=class_names, settings=settings, fingerprint=model_fingerprint(pipe),
        out=out, machine=machine_info(device),
    )  # fmt: skip
    results: dict[str, Any] = {
        "format": RESULTS_FORMAT,
        "command": " ".join(sys.argv),
        "model": {"folder": str(args.model), "name": pipe.name, "fingerprint": ctx.fingerprint,
                  "dtype": str(pipe.dtype).replace("torch.", ""),
                  "sample_rate": int(pipe.sample_rate)},
        "world": {"folder": str(world.folder), "seconds": world.seconds,
                  "sample_rate": world.sample_rate, "test_clips": world.test_clips,
                  "measured_clips": len(world.clips)},
        "tagger": {"folder": str(folders[0]), "fingerprint": extractor.fingerprint(),
                   "class_names": list(class_names), "threshold": args.threshold,
                   "ensemble": [{"folder": str(folder), "fingerprint": e.fingerprint()}
                                for folder, e in zip(folders, extractors)]},
        "clap": clap.describe() if clap is not None else None,
        "device": str(device),
        "machine": ctx.machine,
        "versions": safe_versions(),
        "skipped": sorted(args.skip),
    }  # fmt: skip
    steps = [
        ("protocol", measure_protocol),
        ("adherence", measure_adherence),
        ("edit", measure_editing),
        ("sweep", measure_sweep),
    ]
    failed = []
    if args.runs:
        results["runs"] = summarise_runs(args.runs)
    for name, run in steps:
        if name in args.skip:
            continue
        ctx.log(f"measure: {name} ...")
        try:
            results[name] = run(ctx)
        except Exception as error:  # record it and go on: the other sections still count
            traceback.print_exc(file=sys.stderr)
            results[name] = {"error": f"{type(error).__name__}: {' '.join(str(error).split())}"}
            failed.append(name)
        else:
            ctx.log(f"measure: {name} done in {results[name]['seconds']:.1f} s")
        results["seconds"] = round(time.perf_counter() - began, 3)
        write_results(out, results)  # after every section, so a late failure loses nothing
    results["failed"] = failed
    results["seconds"] = round(time.perf_counter() - began, 3)
    write_results(out, results)
    return results


def jsonable(value: Any) -> Any:
    """``value`` with numpy scalars as Python numbers, paths as strings, tuples as lists
    and non-finite floats as None (strict JSON)."""
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def write_results(out: Path, results: dict[str, Any]) -> None:
    """``results.json`` (strict JSON) and ``results.md``, each written atomically."""
    from ezaudio.nn.component import write_atomic

    clean = jsonable(results)
    text = json.dumps(clean, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    markdown = results_markdown(clean)
    write_atomic(out / "results.json", lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    write_atomic(out / "results.md", lambda tmp: Path(tmp).write_text(markdown, encoding="utf-8"))


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, measure, and return the exit status (1 with a one-line error)."""
    args = build_parser().parse_args(argv)
    try:
        results = measure(args)
    except EzAudioError as error:
        print(f"measure: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 1
    if results["failed"]:
        print(f"measure: error: sections failed: {', '.join(results['failed'])} "
              f"(see {Path(args.out) / 'results.json'})", file=sys.stderr)  # fmt: skip
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
