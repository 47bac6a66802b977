import torch, numpy as np, sys
from ezaudio.pipeline import EzAudio
from ezaudio.diffusion.guidance import guide
from ezaudio.diffusion.ddim import ddim_step
torch.set_num_threads(2)
pipe = EzAudio.from_pretrained("/work/main/src/ezaudio/default_model", device="cpu")
prompt = sys.argv[1]; g = float(sys.argv[2]); seed = int(sys.argv[3]) if len(sys.argv) > 3 else 0
sched = pipe.schedule
cache = pipe._context([prompt, ""])
gen = torch.Generator().manual_seed(seed)
x = torch.randn((1, 32, 250), generator=gen)
ts = sched.timesteps(25).tolist()
for t in ts:
    with torch.no_grad():
        both = pipe.dit(torch.cat([x, x]), t, cache).float()
    vp, vn = both.chunk(2)
    v = guide(vp, vn, g, 0.5)
    ab = sched.alpha_bar(t)
    x0 = ab ** 0.5 * x - (1 - ab) ** 0.5 * v
    x0p = ab ** 0.5 * x - (1 - ab) ** 0.5 * vp
    if t == ts[0]: sil = None
    e = x0[0].norm(dim=0).numpy()
    prof = [round(float(e[i:i+25].max()), 1) for i in range(0, 250, 25)]
    print(t, 'x0 frame-norm max per second', prof)
    x = ddim_step(v, x, ab, sched.alpha_bar(sched.previous_timestep(t, 25)), eta=1.0, prediction_type="v_prediction", generator=[gen])
