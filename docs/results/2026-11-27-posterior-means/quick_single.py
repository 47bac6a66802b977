"""Quick acceptance check: one-event test prompts only (template captions, the seeds
measure.py uses), generated and tagged. Model = a DiT checkpoint's EMA + a VAE folder."""
import json, shutil, sys, time
from pathlib import Path
import numpy as np, torch
sys.path.insert(0, "/work/main/scripts/world")
import measure as M
from safetensors.torch import load_file, save_file
from ezaudio.eval.protocol import choose_captions, resolve_settings
from ezaudio.eval.features import load_panns
from ezaudio.pipeline import EzAudio

ckpt, vae, noise, out = sys.argv[1], sys.argv[2], float(sys.argv[3]), Path(sys.argv[4])
base = Path("/work/main/src/ezaudio/default_model")
folder = out.with_suffix("")  # model folder beside the JSON
if folder.exists(): shutil.rmtree(folder)
shutil.copytree(base, folder)
if ckpt != "-":
    state = load_file(Path(ckpt) / "ema.safetensors")
    save_file({k: v.float().contiguous() for k, v in state.items()}, folder / "dit" / "model.safetensors")
shutil.rmtree(folder / "vae"); shutil.copytree(vae, folder / "vae")
index = json.loads((folder / "ezaudio.json").read_text()); index["posterior_noise"] = noise
(folder / "ezaudio.json").write_text(json.dumps(index, indent=2))
world = M.load_world("/work/cpubuild/world")
pipe = EzAudio.from_pretrained(folder, device="cpu")
settings = resolve_settings(pipe, seconds=world.seconds, seed=0)
clips = [c.clip for c in world.clips]
captions = [c["caption"] for c in choose_captions(clips, settings.caption_seed)]
single = [i for i, c in enumerate(world.clips) if len(c.record["events"]) == 1]
tagger = load_panns("/work/gpubuild/evaluators/tagger", device="cpu").model
names = tuple(tagger.config.class_names)
t0 = time.time(); waves = []
for i in single:
    out_ = pipe.generate(captions[i], seconds=settings.seconds, steps=settings.steps,
                         guidance_scale=settings.guidance_scale, guidance_rescale=settings.guidance_rescale,
                         eta=settings.eta, seed=settings.seed + i, progress=False)
    waves.append(out_.waveforms[0])
probs = M.tag_waveforms(tagger, waves, pipe.sample_rate, 8)
pred = M.predicted_sets(probs, names, 0.5)
truth = [M.true_labels(world.clips[i].record) for i in single]
scores = M.adherence_scores(pred, truth)
per = {}
for p, t in zip(pred, truth):
    c = next(iter(t)); per.setdefault(c, [0, 0]); per[c][0] += c in p; per[c][1] += 1
res = {"ckpt": ckpt, "vae": vae, "noise": noise, "seconds": time.time() - t0, "scores": scores,
       "per_class": per, "pred": [sorted(p) for p in pred]}
out.write_text(json.dumps(res, indent=1))
print(f"recall {scores['recall_micro']:.3f} precision {scores['precision_micro']:.3f} exact {scores['exact_share']:.3f} ({res['seconds']:.0f}s)")
print({k: f"{a}/{b}" for k, (a, b) in sorted(per.items())})
