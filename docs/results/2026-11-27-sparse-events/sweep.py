"""Sampler-setting sweep on one-event prompts of a world folder (valid split via /work/validworld)."""
import json, sys, time, argparse
import numpy as np, torch
sys.path.insert(0, "/work/main/scripts/world")
import measure as M
from ezaudio.eval.protocol import choose_captions, resolve_settings
from ezaudio.eval.features import load_panns
from ezaudio.pipeline import EzAudio
torch.set_num_threads(2)
ap = argparse.ArgumentParser()
ap.add_argument("--model", default="/work/main/src/ezaudio/default_model")
ap.add_argument("--world", default="/work/validworld")
ap.add_argument("--classes", default="")
ap.add_argument("--settings", nargs="+", required=True, help="steps:guidance:rescale:eta")
ap.add_argument("--out", required=True)
a = ap.parse_args()
world = M.load_world(a.world)
pipe = EzAudio.from_pretrained(a.model, device="cpu")
base = resolve_settings(pipe, seconds=world.seconds, seed=0)
clips = [c.clip for c in world.clips]
captions = [c["caption"] for c in choose_captions(clips, base.caption_seed)]
want = set(a.classes.split(",")) if a.classes else None
single = [i for i, c in enumerate(world.clips) if len(c.record["events"]) == 1
          and (want is None or c.record["events"][0]["class"] in want)]
tagger = load_panns("/work/gpubuild/evaluators/tagger", device="cpu").model
names = tuple(tagger.config.class_names)
truth = [M.true_labels(world.clips[i].record) for i in single]
results = []
for s in a.settings:
    steps, g, r, eta = s.split(":"); steps = int(steps); g, r, eta = float(g), float(r), float(eta)
    t0 = time.time(); waves = []
    for i in single:
        waves.append(pipe.generate(captions[i], seconds=base.seconds, steps=steps, guidance_scale=g,
            guidance_rescale=r, eta=eta, seed=base.seed + i, progress=False).waveforms[0])
    probs = M.tag_waveforms(tagger, waves, pipe.sample_rate, 8)
    pred = M.predicted_sets(probs, names, 0.5)
    sc = M.adherence_scores(pred, truth)
    per = {}
    for p, t in zip(pred, truth):
        c = next(iter(t)); per.setdefault(c, [0, 0]); per[c][0] += c in p; per[c][1] += 1
    quiet = sum(float(np.abs(w).max()) < 0.05 for w in waves)
    row = dict(setting=s, recall=sc["recall_micro"], precision=sc["precision_micro"], exact=sc["exact_share"],
               quiet=quiet, n=len(single), seconds=time.time() - t0, per_class=per)
    results.append(row)
    print(f"{s}: recall {row['recall']:.3f} prec {row['precision']:.3f} exact {row['exact']:.3f} quiet {quiet}/{len(single)} ({row['seconds']:.0f}s)",
          {k: f"{x}/{y}" for k, (x, y) in sorted(per.items()) if x < y}, flush=True)
    json.dump(results, open(a.out, "w"), indent=1)
