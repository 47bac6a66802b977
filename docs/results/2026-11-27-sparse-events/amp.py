"""Test: amplify x0-hat's deviation from the silence latent at high noise during sampling."""
import torch, numpy as np, sys, json
sys.path.insert(0, "/work/main/scripts/world")
import measure as M
from ezaudio.pipeline import EzAudio
from ezaudio.diffusion.guidance import guide
from ezaudio.diffusion.ddim import ddim_step
from ezaudio.eval.features import load_panns
torch.set_num_threads(2)
pipe = EzAudio.from_pretrained("/work/main/src/ezaudio/default_model", device="cpu")
with torch.no_grad():
    m, _ = pipe.vae.encode_distribution(torch.zeros(1, 1, 16000 * 4))
sil = m[0].median(dim=1).values[None, :, None]  # [1, C, 1]
print('silence latent norm', sil.norm().item())
tagger = load_panns("/work/gpubuild/evaluators/tagger", device="cpu").model
names = list(tagger.config.class_names)
sched = pipe.schedule
world = sys.argv[1]; gammas = [float(x) for x in sys.argv[2].split(',')]; tmin = int(sys.argv[3])
W = M.load_world(world)
items = [(i, c) for i, c in enumerate(W.clips) if len(c.record['events']) == 1]
for gamma in gammas:
    hits = 0; quiet = 0; per = {}
    for i, c in items:
        prompt = c.record['caption']; cls = c.record['events'][0]['class']
        cache = pipe._context([prompt, ""])
        gen = torch.Generator().manual_seed(i)
        x = torch.randn((1, 32, 250), generator=gen)
        for t in sched.timesteps(25).tolist():
            with torch.no_grad():
                vp, vn = pipe.dit(torch.cat([x, x]), t, cache).float().chunk(2)
            v = guide(vp, vn, 3.0, 0.5)
            ab = torch.tensor(sched.alpha_bar(t))
            if t >= tmin and gamma != 1:
                x0 = ab.sqrt() * x - (1 - ab).sqrt() * v
                x0 = sil + gamma * (x0 - sil)
                eps = (x - ab.sqrt() * x0) / (1 - ab).sqrt().clamp_min(1e-4) if ab < 1 else torch.zeros_like(x)
                v = ab.sqrt() * eps - (1 - ab).sqrt() * x0
            x = ddim_step(v, x, float(ab), sched.alpha_bar(sched.previous_timestep(t, 25)), eta=1.0, prediction_type="v_prediction", generator=[gen])
        with torch.no_grad(): wave = pipe._decode(x, 160000)[0]
        p = M.tag_waveforms(tagger, [wave], 16000, 1)[0]
        ok = p[names.index(cls)] >= 0.5; hits += ok; quiet += np.abs(wave).max() < 0.05
        per.setdefault(cls, [0, 0]); per[cls][0] += int(ok); per[cls][1] += 1
    print(f"gamma {gamma} tmin {tmin}: recall {hits}/{len(items)} quiet {quiet}", {k: f'{a}/{b}' for k, (a, b) in sorted(per.items()) if a < b}, flush=True)
