"""At zero SNR (t=999) the DiT's x0 prediction is its prior given the text: compare the
per-second deviation from silence of the conditional, unconditional and guided predictions."""
import torch, sys
from ezaudio.pipeline import EzAudio
from ezaudio.diffusion.guidance import guide
torch.set_num_threads(1)
pipe = EzAudio.from_pretrained(sys.argv[1] if len(sys.argv) > 1 else "/work/main/src/ezaudio/default_model", device="cpu")
with torch.no_grad():
    m, _ = pipe.vae.encode_distribution(torch.zeros(1, 1, 16000 * 4))
sil = m[0].median(dim=1).values[:, None]
for prompt in ["A loud person knocks on wood twice", "A loud guard dog barking once", "Someone plays the piano loudly",
               "A crowd applauds loudly", "A police siren is wailing"]:
    cache = pipe._context([prompt, ""])
    x = torch.randn((1, 32, 250), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        vp, vn = pipe.dit(torch.cat([x, x]), 999, cache).float().chunk(2)
    ab = pipe.schedule.alpha_bar(999)
    rows = {"cond": vp, "uncond": vn, "guided 3/0.5": guide(vp, vn, 3.0, 0.5)}
    print(prompt)
    for name, v in rows.items():
        x0 = ab ** 0.5 * x - (1 - ab) ** 0.5 * v
        d = (x0[0] - sil).norm(dim=0)
        print(f"  {name:13s}", [round(float(d[i:i + 25].mean()), 2) for i in range(0, 250, 25)])
