"""Training speed and peak GPU memory of one EzAudio-DiT training step (paper setting).

The EzAudio-L DiT (``--preset ezaudio-l``) at batch 16 of 10 s clips (500 latent
frames x 128 channels) with random text states [16, 64 tokens, 1024] (FLAN-T5-large
width). The text encoder (and the VAE) are frozen and not part of this: their cost is
separate (text states can be cached; latents with ``ezaudio data encode``).

One step is what ``DiTTrainer`` does: the stage-2 masked-modelling loss through the
trainer's own :func:`~ezaudio.train.diffusion_loss.masked_modelling_loss` (span masks,
noise, v-prediction, masked MSE), ``accelerator.backward``, gradient clipping at 1.0
through ``accelerator.clip_grad_norm_`` (which unscales fp16 gradients first), AdamW
and the float32 EMA update, with the accelerator the trainer builds
(``make_accelerator``: bf16/fp16 autocast, a GradScaler for fp16). Every variant starts
from a fresh model and optimizer with the memory statistics reset; warm-up steps are
followed by timed steps between ``torch.cuda.synchronize`` calls.

    PYTHONPATH=src python benchmarks/gpu_train_memory.py --out gpu_train_memory.json
    python benchmarks/gpu_train_memory.py --preset tiny --batch 2 --frames 50 --steps 2  # CPU

Imports only torch, accelerate, safetensors and the DiT's own modules (no soundfile,
soxr, auraloss or fastapi), so it runs from a source checkout with ``PYTHONPATH=src``.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import platform
import resource
import time
from typing import Any

import torch

# name -> (optim.mixed_precision, gradient checkpointing); in the order they run.
VARIANTS = {
    "bf16+ckpt": ("bf16", True),
    "bf16": ("bf16", False),
    "fp16+ckpt": ("fp16", True),
    "fp16": ("fp16", False),
    "fp32+ckpt": ("no", True),
    "fp32": ("no", False),
}
GIB = 1024**3


def machine() -> dict[str, Any]:
    """What ran it: the device, torch, accelerate."""
    import accelerate

    info: dict[str, Any] = {
        "torch": torch.__version__,
        "accelerate": accelerate.__version__,
        "python": platform.python_version(),
        "cpu_threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(
            gpu=props.name,
            gpu_memory_gib=round(props.total_memory / GIB, 1),
            cuda=torch.version.cuda,
            tf32_matmul=torch.backends.cuda.matmul.allow_tf32,
        )
    return info


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux: ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _fresh_accelerator(mixed_precision: str):
    """The trainer's accelerator (``make_accelerator``), after forgetting the last one's
    state (accelerate keeps one process-wide state and refuses to change its precision)."""
    from accelerate.state import AcceleratorState, GradientState

    from ezaudio.train.engine_utils import make_accelerator

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    return make_accelerator(mixed_precision, 1)


def run_variant(
    name: str,
    preset: str,
    batch: int,
    frames: int,
    tokens: int,
    warmup: int,
    steps: int,
    seed: int = 0,
) -> dict[str, Any]:
    """Build a fresh model/optimizer/EMA for variant ``name``, warm up, time ``steps`` steps."""
    from ezaudio.config import dit_preset
    from ezaudio.diffusion.schedule import NoiseSchedule
    from ezaudio.nn.dit import EzAudioDiT
    from ezaudio.train.diffusion_loss import masked_modelling_loss
    from ezaudio.train.ema import EMA
    from ezaudio.train.recipe import MaskingSection

    mixed_precision, checkpointing = VARIANTS[name]
    cuda = torch.cuda.is_available()
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    acc = _fresh_accelerator(mixed_precision)
    device = acc.device

    torch.manual_seed(seed)
    config = dit_preset(preset)
    # Built on the device: initialising ~600 M parameters on the CPU takes 10-15 s, which
    # once ate a whole short benchmark window before its first step.
    with torch.device(device):
        model = EzAudioDiT(config)
    parameters = sum(p.numel() for p in model.parameters())
    model.gradient_checkpointing = checkpointing
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    model, optimizer = acc.prepare(model, optimizer)
    ema = EMA(acc.unwrap_model(model), 0.9999)
    schedule = NoiseSchedule.from_config()
    masking = MaskingSection(full_mask_prob=0.9)  # recipes/ezaudio-l-stage2.yaml
    generator = torch.Generator().manual_seed(seed)

    # Random inputs (never zeros): VAE latents, text states with a padded tail.
    latents = torch.randn(batch, config.latent_channels, frames, generator=generator).to(device)
    valid = torch.ones(batch, frames, dtype=torch.bool, device=device)
    context = context_mask = None
    if config.context_dim:
        context = torch.randn(batch, tokens, config.context_dim, generator=generator).to(device)
        lengths = torch.randint(max(1, tokens // 4), tokens + 1, (batch,), generator=generator)
        context_mask = (torch.arange(tokens)[None, :] < lengths[:, None]).to(device)
    text = (lambda: (context, context_mask)) if context is not None else None
    model.train()

    losses: list[float] = []

    def step() -> torch.Tensor:
        with acc.accumulate(model):
            loss = masked_modelling_loss(
                model, schedule, latents, valid, masking, generator,
                text=text, autocast=acc.autocast,
            )  # fmt: skip
            acc.backward(loss)
            if acc.sync_gradients:
                acc.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        if not optimizer.step_was_skipped:  # as the trainer: EMA only after real steps
            ema.update(acc.unwrap_model(model))
        return loss.detach()

    for _ in range(warmup):
        losses.append(float(step()))
    _sync()
    skipped = 0
    started = time.perf_counter()
    timed = []
    for _ in range(steps):
        timed.append(step())
        skipped += int(optimizer.step_was_skipped)
    _sync()
    elapsed = time.perf_counter() - started
    losses += [float(v) for v in timed]

    # The EMA update alone (it is inside the step above), timed separately.
    _sync()
    ema_started = time.perf_counter()
    for _ in range(3):
        ema.update(acc.unwrap_model(model))
    _sync()
    ema_ms = (time.perf_counter() - ema_started) / 3 * 1000

    result: dict[str, Any] = {
        "variant": name,
        "preset": preset,
        "mixed_precision": mixed_precision,
        "gradient_checkpointing": checkpointing,
        "parameters_M": round(parameters / 1e6, 1),
        "batch": batch,
        "frames": frames,
        "text_tokens": tokens if context is not None else 0,
        "warmup_steps": warmup,
        "timed_steps": steps,
        "step_ms": elapsed / steps * 1000,
        "steps_per_s": steps / elapsed,
        "samples_per_s": steps * batch / elapsed,
        "ema_update_ms": ema_ms,
        "losses_finite": all(math.isfinite(v) for v in losses),
        "last_loss": losses[-1],
        "skipped_steps_timed": skipped,
        "device": str(device),
    }
    if acc.scaler is not None:
        result["loss_scale"] = float(acc.scaler.get_scale())
    if cuda:
        result["peak_allocated_gib"] = torch.cuda.max_memory_allocated() / GIB
        result["peak_reserved_gib"] = torch.cuda.max_memory_reserved() / GIB
    else:
        result["peak_rss_mib"] = peak_rss_mib()
    acc.free_memory()
    return result


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Run the variants; print a JSON line each and a table; write all to ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="ezaudio-l")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--frames", type=int, default=500, help="latent frames (50 Hz: 10 s)")
    parser.add_argument("--tokens", type=int, default=64, help="text tokens")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per variant")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument(
        "--max-seconds", type=float, default=85.0,
        help="skip the remaining variants once this much time has passed",
    )  # fmt: skip
    parser.add_argument("--out", help="write all results here as JSON")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    info = machine()
    note = (
        "DiT training step only: text states are random (FLAN-T5-large width); the frozen "
        "text encoder and VAE are not run and their cost is separate. Memory includes "
        "the float32 EMA copy and AdamW states."
    )
    print(json.dumps({"machine": info, "note": note}), flush=True)
    results: list[dict[str, Any]] = []
    for name in args.variants:
        spent = time.perf_counter() - started
        if spent > args.max_seconds:
            result = {"variant": name, "skipped": f"time budget spent ({spent:.0f} s)"}
        elif VARIANTS[name][0] == "fp16" and not torch.cuda.is_available():
            result = {"variant": name, "skipped": "fp16 autocast + GradScaler need a GPU"}
        else:
            try:
                result = run_variant(
                    name, args.preset, args.batch, args.frames, args.tokens, args.warmup,
                    args.steps,
                )  # fmt: skip
            except torch.cuda.OutOfMemoryError as error:
                result = {"variant": name, "error": f"out of memory: {str(error)[:200]}"}
                gc.collect()
                torch.cuda.empty_cache()
        result["elapsed_s"] = round(time.perf_counter() - started, 1)
        results.append(result)
        print(json.dumps(result), flush=True)

    if args.out:
        with open(args.out, "w") as handle:
            json.dump(
                {"machine": info, "note": note, "args": vars(args), "results": results},
                handle, indent=2,
            )  # fmt: skip
    memory = "peak alloc / reserved (GiB)" if torch.cuda.is_available() else "peak RSS (MiB)"
    print(f"| variant | params (M) | step (ms) | steps/s | samples/s | {memory} | loss ok |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        if "step_ms" not in r:
            print(f"| {r['variant']} | {r.get('skipped') or r.get('error')} | | | | | |")
            continue
        mem = (
            f"{r['peak_allocated_gib']:.1f} / {r['peak_reserved_gib']:.1f}"
            if "peak_allocated_gib" in r
            else f"{r['peak_rss_mib']:.0f}"
        )
        print(
            f"| {r['variant']} | {r['parameters_M']} | {r['step_ms']:.1f} | "
            f"{r['steps_per_s']:.2f} | {r['samples_per_s']:.1f} | {mem} | {r['losses_finite']} |"
        )
    print(f"total {time.perf_counter() - started:.1f} s", flush=True)
    return results


if __name__ == "__main__":
    main()
