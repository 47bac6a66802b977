"""The bundled DiT's latents for the 79 one-event template prompts (measure.py's captions and
seeds, as quick_taggers.py), generated once; then decoded by each VAE given and tagged by both
CPU taggers and their ensemble.

    python dec_compare.py gen OUT            # writes OUT/latents.pt (+ the bundled decoding's scores)
    python dec_compare.py score OUT VAE ...  # scores each VAE's decoding of those latents
"""

import json, sys, time
from pathlib import Path
import numpy as np, torch

sys.path.insert(0, "/work/main/scripts/world")
import measure as M
from ezaudio.eval.features import load_panns
from ezaudio.eval.protocol import choose_captions, resolve_settings
from ezaudio.pipeline import EzAudio
from ezaudio.train.vae_trainer import read_vae_source

WORLD = "/work/cpubuild/world"
TAGGERS = ["/work/evaluators/tagger", "/work/evaluators/tagger-seed1"]
mode, out = sys.argv[1], Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
world = M.load_world(WORLD)
pipe = EzAudio.from_pretrained(device="cpu")  # the bundled default
settings = resolve_settings(pipe, seconds=world.seconds, seed=0)
single = [i for i, c in enumerate(world.clips) if len(c.record["events"]) == 1]
truth = [M.true_labels(world.clips[i].record) for i in single]
samples = round(world.seconds * pipe.sample_rate)


def score(waves, label):
    taggers = [load_panns(t, device="cpu").model for t in TAGGERS]
    names = tuple(taggers[0].config.class_names)
    res = {}
    for name, models in [("seed0", [taggers[0]]), ("seed1", [taggers[1]]), ("ensemble", taggers)]:
        p = M.tag_waveforms(tuple(models), waves, pipe.sample_rate, 8)
        pred = M.predicted_sets(p, names, 0.5)
        s = M.adherence_scores(pred, truth)
        per = {}
        for q, t in zip(pred, truth):
            c = next(iter(t))
            per.setdefault(c, [0, 0])
            per[c][0] += c in q
            per[c][1] += 1
        res[name] = {
            "recall": s["recall_micro"],
            "precision": s["precision_micro"],
            "exact": s["exact_share"],
            "per_class": per,
        }
        print(
            f"{label} {name}: recall {s['recall_micro']:.3f} precision {s['precision_micro']:.3f} exact {s['exact_share']:.3f}",
            flush=True,
        )
    return res


if mode == "gen":
    clips = [c.clip for c in world.clips]
    captions = [c["caption"] for c in choose_captions(clips, settings.caption_seed)]
    got = []
    orig = pipe._decode

    def capture(latents, n):
        got.append(latents.detach().clone())
        return orig(latents, n)

    pipe._decode = capture
    waves = []
    t0 = time.time()
    for i in single:
        r = pipe.generate(
            captions[i],
            seconds=settings.seconds,
            steps=settings.steps,
            guidance_scale=settings.guidance_scale,
            guidance_rescale=settings.guidance_rescale,
            eta=settings.eta,
            seed=settings.seed + i,
            progress=False,
        )
        waves.append(r.waveforms[0])
    print("generated", len(single), time.time() - t0, flush=True)
    torch.save(torch.cat(got), out / "latents.pt")
    res = score(waves, "bundled")
    (out / "bundled.json").write_text(json.dumps(res, indent=1))
else:
    latents = torch.load(out / "latents.pt", weights_only=True)
    for vae_path in sys.argv[3:]:
        pipe.vae = read_vae_source(vae_path).eval()
        with torch.no_grad():
            waves = [pipe._decode(latents[k : k + 1], samples)[0] for k in range(len(latents))]
        res = score(waves, vae_path)
        tag = vae_path.strip("/").replace("/", "_")
        (out / f"score_{tag}.json").write_text(json.dumps(res, indent=1))
