"""Quick acceptance check with several taggers: the one-event test prompts only (template
captions, the seeds measure.py uses), generated, written, and tagged by each tagger and by
their ensemble (mean probability, measure.py's code). Model = the bundled default with a DiT
checkpoint's EMA weights ("-": the bundled DiT) and a VAE folder.

    python quick_taggers.py CKPT|- VAE POSTERIOR_NOISE OUT --tagger T1 [T2 ...]

Writes OUT/audio/*.wav, OUT/model (the model folder) and OUT/results.json.
"""

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "scripts" / "world"))
import measure as M
import numpy as np
from safetensors.torch import load_file, save_file

from ezaudio.data.audio import write_audio
from ezaudio.eval.features import load_panns
from ezaudio.eval.protocol import choose_captions, resolve_settings
from ezaudio.pipeline import EzAudio

BUNDLED = Path(__file__).resolve().parents[3] / "src" / "ezaudio" / "default_model"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("ckpt")
    parser.add_argument("vae")
    parser.add_argument("noise", type=float)
    parser.add_argument("out", type=Path)
    parser.add_argument("--tagger", nargs="+", required=True)
    parser.add_argument("--world", default="/work/cpubuild/world")
    parser.add_argument("--limit", type=int, default=None, help="first N prompts (a test)")
    args = parser.parse_args()
    folder = args.out / "model"
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(BUNDLED, folder)
    if args.ckpt != "-":
        state = load_file(Path(args.ckpt) / "ema.safetensors")
        save_file({k: v.float().contiguous() for k, v in state.items()},
                  folder / "dit" / "model.safetensors")  # fmt: skip
    shutil.rmtree(folder / "vae")
    shutil.copytree(args.vae, folder / "vae")
    index = json.loads((folder / "ezaudio.json").read_text())
    index["posterior_noise"] = args.noise
    (folder / "ezaudio.json").write_text(json.dumps(index, indent=2))

    world = M.load_world(args.world)
    pipe = EzAudio.from_pretrained(folder, device="cpu")
    settings = resolve_settings(pipe, seconds=world.seconds, seed=0)
    clips = [c.clip for c in world.clips]
    captions = [c["caption"] for c in choose_captions(clips, settings.caption_seed)]
    single = [i for i, c in enumerate(world.clips) if len(c.record["events"]) == 1]
    single = single[: args.limit]
    started = time.time()
    waves = []
    for i in single:
        result = pipe.generate(
            captions[i], seconds=settings.seconds, steps=settings.steps,
            guidance_scale=settings.guidance_scale, guidance_rescale=settings.guidance_rescale,
            eta=settings.eta, seed=settings.seed + i, progress=False,
        )  # fmt: skip
        waves.append(result.waveforms[0])
        write_audio(args.out / "audio" / f"{i:04d}.wav", np.asarray(waves[-1]), pipe.sample_rate)
    seconds = time.time() - started
    taggers = [load_panns(t, device="cpu").model for t in args.tagger]
    names = tuple(taggers[0].config.class_names)
    truth = [M.true_labels(world.clips[i].record) for i in single]
    results = {"ckpt": args.ckpt, "vae": args.vae, "noise": args.noise,
               "generation_seconds": seconds, "prompts": len(single), "taggers": {}}  # fmt: skip
    sets = [(t, [m]) for t, m in zip(args.tagger, taggers)]
    if len(taggers) > 1:
        sets.append(("ensemble", taggers))
    for name, models in sets:
        probabilities = M.tag_waveforms(tuple(models), waves, pipe.sample_rate, 8)
        predicted = M.predicted_sets(probabilities, names, 0.5)
        scores = M.adherence_scores(predicted, truth)
        per_class = {}
        for p, t in zip(predicted, truth):
            c = next(iter(t))
            per_class.setdefault(c, [0, 0])
            per_class[c][0] += c in p
            per_class[c][1] += 1
        results["taggers"][name] = {"scores": scores, "per_class": per_class,
                                    "predicted": [sorted(p) for p in predicted]}  # fmt: skip
        print(f"{name}: recall {scores['recall_micro']:.3f} precision "
              f"{scores['precision_micro']:.3f} exact {scores['exact_share']:.3f}")  # fmt: skip
    (args.out / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
