"""Time one guided sampling step of EzAudio-DiT on this machine.

One step = one batched DiT forward over [conditional | negative] latents
(batch 2 prompts -> 4 rows with CFG), guidance with rescaling and the DDIM
update, with the text keys/values and the timestep path prepared the way the
pipeline does. The "per-step recompute" column calls the same network the way
the official loop does: raw text states every step and a timestep per row.

    python benchmarks/step_time.py --presets tiny ezaudio-xl --dtypes float32 bfloat16
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import torch

from ezaudio.config import dit_preset
from ezaudio.diffusion import NoiseSchedule, guide
from ezaudio.diffusion.ddim import ddim_step
from ezaudio.nn.dit import EzAudioDiT
from ezaudio.pipeline import resolve_dtype


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            names = [line.split(":", 1)[1].strip() for line in handle if "model name" in line]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    threads = torch.get_num_threads()
    return f"{cpu}, {os.cpu_count()} logical CPUs, torch {torch.__version__}, {threads} threads"


def time_calls(fn, repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


@torch.no_grad()
def bench(
    preset: str, dtype_name: str, batch: int, frames: int, tokens: int, repeats: int, warmup: int
) -> dict:
    torch.manual_seed(0)
    config = dit_preset(preset)
    dtype = resolve_dtype(dtype_name)
    model = EzAudioDiT(config).to(dtype).eval()
    schedule = NoiseSchedule.from_config()
    x = torch.randn(batch, config.latent_channels, frames)
    context = torch.randn(2 * batch, tokens, config.context_dim)
    mask = torch.zeros(2 * batch, tokens, dtype=torch.bool)
    mask[:, :12] = True
    t = 979

    start = time.perf_counter()
    cache = model.prepare_context(context, mask)
    prepare_s = time.perf_counter() - start

    def step_cached() -> torch.Tensor:
        both = model(torch.cat([x, x]), t, cache).float()
        v_pos, v_neg = both.chunk(2)
        v = guide(v_pos, v_neg, 5.0, 0.75)
        return ddim_step(v, x, schedule.alpha_bar(t), schedule.alpha_bar(t - 20), eta=1.0)

    per_row_t = torch.full((2 * batch,), t)

    def step_recompute() -> torch.Tensor:
        both = model(torch.cat([x, x]), per_row_t, context, mask).float()
        v_pos, v_neg = both.chunk(2)
        v = guide(v_pos, v_neg, 5.0, 0.75)
        return ddim_step(v, x, schedule.alpha_bar(t), schedule.alpha_bar(t - 20), eta=1.0)

    cached = time_calls(step_cached, repeats, warmup)
    recompute = time_calls(step_recompute, repeats, warmup)
    return {
        "preset": preset,
        "dtype": dtype_name,
        "parameters_M": round(model.num_parameters() / 1e6, 1),
        "batch": batch,
        "rows_with_cfg": 2 * batch,
        "frames": frames,
        "text_tokens": tokens,
        "step_s": cached,
        "step_recompute_s": recompute,
        "prepare_context_s": prepare_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "ezaudio-xl"])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--frames", type=int, default=500)
    parser.add_argument("--tokens", type=int, default=100, help="text tokens (FLAN-T5 pads to 100)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--json", help="also write results here")
    args = parser.parse_args()

    print(f"machine: {machine()}")
    print(
        "| preset | dtype | params (M) | rows (B x CFG) | frames | step (s) "
        "| per-step recompute (s) | prepare text (s) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    results = []
    for preset in args.presets:
        for dtype in args.dtypes:
            r = bench(
                preset, dtype, args.batch, args.frames, args.tokens, args.repeats, args.warmup
            )
            results.append(r)
            print(
                f"| {r['preset']} | {r['dtype']} | {r['parameters_M']} | {r['rows_with_cfg']} | "
                f"{r['frames']} | {r['step_s']:.4f} | {r['step_recompute_s']:.4f} | "
                f"{r['prepare_context_s']:.4f} |",
                flush=True,
            )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"machine": machine(), "results": results}, handle, indent=2)


if __name__ == "__main__":
    main()
