import json, torch, numpy as np
from safetensors import safe_open
from ezaudio.pipeline import EzAudio
torch.set_num_threads(2)
pipe = EzAudio.from_pretrained("/work/main/src/ezaudio/default_model", device="cpu")
idx = json.load(open('/work/table1cpu/latents/clean/index.json'))
meta = {}
for l in open('/work/cpubuild/world/metadata.jsonl'):
    x = json.loads(l); meta[x['id']] = x
by = {c['id']: c for c in idx['clips']}
ids = ["A loud person knocks on wood twice", "The sound of three loud knocks on wood close to the micropho", "A loud guard dog barking once"]
sched = pipe.schedule
print(type(sched), [a for a in dir(sched) if not a.startswith('_')])
for c in idx['clips']:
    if not any(c['caption'].startswith(s) for s in ids) or c['split'] != 'train': continue
    f = safe_open('/work/table1cpu/latents/clean/' + c['shard'], 'pt')
    x0 = f.get_tensor(c['key'] + '.mean')[None]  # [1,32,250]
    e = meta[c['id']]['events'][0]
    on, off = int(e['onset'] * 25), int(e['offset'] * 25) + 1
    sil = x0[0, :, off + 25:].median(dim=1).values[:, None]
    dev = (x0[0] - sil).norm(dim=0)  # [250]
    print(c['caption'], 'event frames', on, off, 'real dev in event', dev[on:off].numpy().round(2), 'outside max', dev[off + 25:].max().item())
    cache = pipe._context([c['caption']])
    for t in [50, 200, 400, 600, 800, 950]:
        g = torch.Generator().manual_seed(0)
        n = torch.randn(x0.shape, generator=g)
        ab = sched.alphas_cumprod[t]
        xt = ab.sqrt() * x0 + (1 - ab).sqrt() * n
        with torch.no_grad():
            v = pipe.dit(xt, torch.tensor([t]), cache).float()
        x0h = ab.sqrt() * xt - (1 - ab).sqrt() * v
        d = (x0h[0] - sil).norm(dim=0)
        print(f"  t={t} snr={ab/(1-ab):.4f} pred dev in event max {d[on:off].max():.2f} mean {d[on:off].mean():.2f}; outside mean {d[off+25:].mean():.2f}")
