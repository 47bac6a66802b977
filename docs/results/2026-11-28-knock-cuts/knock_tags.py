"""Knocking in one split (`python knock_tags.py train.jsonl`): for each one-event knocking clip of it,
the top tags (mean of both taggers) of the real clip, its reconstruction by the bundled VAE
and a clip the bundled model generates from the clip's caption (seed 0, default settings)."""
import json, sys
from pathlib import Path
import numpy as np, torch
sys.path.insert(0, '/work/main/scripts/world')
from measure import tag_waveforms, true_labels
from vae_fidelity import reconstruct
from ezaudio.data.audio import read_audio
from ezaudio.eval.panns import Cnn14
from ezaudio.pipeline import EzAudio
torch.set_num_threads(2)
W = Path('/work/cpubuild/world')
meta = {json.loads(l)['id']: json.loads(l) for l in (W / 'metadata.jsonl').read_text().splitlines() if l.strip()}
rows = [json.loads(l) for l in (W / sys.argv[1]).read_text().splitlines() if l.strip()]
rows = [r for r in rows if true_labels(meta[r['id']]) == {'knocking'} and len(meta[r['id']]['events']) == 1]
pipe = EzAudio.from_pretrained(device='cpu')
real = [read_audio(W / r['audio'])[0] for r in rows]
with torch.no_grad():
    rec = [reconstruct(pipe.vae.eval(), w) for w in real]
gen = []
for r in rows:
    out = pipe.generate(r['caption'], seconds=10.0, seed=0, progress=False)
    gen.append(out.waveforms[0])
taggers = [Cnn14.from_pretrained(f'/work/evaluators/{t}').eval() for t in ['tagger', 'tagger-seed1']]
names = list(taggers[0].config.class_names)
P = {k: tag_waveforms(taggers, v, 16000, 16) for k, v in [('real', real), ('rec', rec), ('gen', gen)]}
for n, r in enumerate(rows):
    print(r['id'], '|', r['caption'])
    for k in P:
        i = np.argsort(-P[k][n])[:3]
        print(f'   {k:4s}', ' '.join(f'{names[j]}:{P[k][n][j]:.2f}' for j in i), f'peak {np.abs({"real": real, "rec": rec, "gen": gen}[k][n]).max():.2f}')
