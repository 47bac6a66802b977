"""Guidance applied only for timesteps in [lo, hi] (guidance interval); one-event prompts of a world."""
import torch, numpy as np, sys, json, time, os
sys.path.insert(0, "/work/main/scripts/world")
import measure as M
from ezaudio.pipeline import EzAudio
from ezaudio.diffusion.guidance import guide
from ezaudio.diffusion.ddim import ddim_step
from ezaudio.eval.features import load_panns
from ezaudio.eval.protocol import choose_captions, resolve_settings
torch.set_num_threads(int(os.environ.get("THREADS", "2")))
model, world, out = sys.argv[1], sys.argv[2], sys.argv[3]
intervals = [tuple(int(v) for v in s.split(":")) for s in sys.argv[4:]]
pipe = EzAudio.from_pretrained(model, device="cpu")
W = M.load_world(world)
base = resolve_settings(pipe, seconds=W.seconds, seed=0)
captions = [c["caption"] for c in choose_captions([c.clip for c in W.clips], base.caption_seed)]
tagger = load_panns("/work/gpubuild/evaluators/tagger", device="cpu").model
names = tuple(tagger.config.class_names)
single = [i for i, c in enumerate(W.clips) if len(c.record["events"]) == 1]
truth = [M.true_labels(W.clips[i].record) for i in single]
sched = pipe.schedule; results = []
for lo, hi in intervals:
    t0 = time.time(); waves = []
    for i in single:
        cache = pipe._context([captions[i], ""])
        gen = torch.Generator().manual_seed(base.seed + i)
        x = torch.randn((1, 32, 250), generator=gen)
        for t in sched.timesteps(25).tolist():
            with torch.no_grad():
                vp, vn = pipe.dit(torch.cat([x, x]), t, cache).float().chunk(2)
            v = guide(vp, vn, 3.0, 0.5) if lo <= t <= hi else vp
            x = ddim_step(v, x, sched.alpha_bar(t), sched.alpha_bar(sched.previous_timestep(t, 25)), eta=1.0,
                          prediction_type="v_prediction", generator=[gen])
        with torch.no_grad():
            waves.append(pipe._decode(x, int(W.seconds * 16000))[0])
    pred = M.predicted_sets(M.tag_waveforms(tagger, waves, 16000, 8), names, 0.5)
    sc = M.adherence_scores(pred, truth)
    per = {}
    for p, t in zip(pred, truth):
        c = next(iter(t)); per.setdefault(c, [0, 0]); per[c][0] += c in p; per[c][1] += 1
    row = dict(interval=[lo, hi], recall=sc["recall_micro"], precision=sc["precision_micro"], exact=sc["exact_share"],
               seconds=time.time() - t0, per_class=per)
    results.append(row); json.dump(results, open(out, "w"), indent=1)
    print(f"[{lo},{hi}]: recall {row['recall']:.3f} prec {row['precision']:.3f} exact {row['exact']:.3f} ({row['seconds']:.0f}s)",
          {k: f"{a}/{b}" for k, (a, b) in sorted(per.items()) if a < b}, flush=True)
