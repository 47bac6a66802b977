"""Validation of a decoder without the test set: every clip of the world's valid split
reconstructed by each VAE given, tagged by both CPU taggers (their mean, threshold 0.5),
against the clip's true event labels. Used to follow and pick decoder checkpoints.

    python val_rec.py VAE [VAE ...]      # prints recall / precision / per-class recall
"""
import json, sys
from pathlib import Path
import numpy as np, torch
sys.path.insert(0, '/work/main/scripts/world')
from measure import tag_waveforms, true_labels, predicted_sets, adherence_scores
from vae_fidelity import reconstruct
from ezaudio.data.audio import read_audio
from ezaudio.train.vae_trainer import read_vae_source
from ezaudio.eval.panns import Cnn14
torch.set_num_threads(int(__import__('os').environ.get('THREADS', '1')))
W = Path('/work/cpubuild/world')
rows = [json.loads(l) for l in (W / 'valid.jsonl').read_text().splitlines() if l.strip()]
meta = {}
for l in (W / 'metadata.jsonl').read_text().splitlines():
    r = json.loads(l)
    meta[r['id']] = r
truth = [true_labels(meta[r['id']]) for r in rows]
real = [read_audio(W / r['audio'])[0] for r in rows]
taggers = [Cnn14.from_pretrained(f'/work/evaluators/{t}').eval() for t in ['tagger', 'tagger-seed1']]
names = tuple(taggers[0].config.class_names)
def report(label, waves):
    p = tag_waveforms(taggers, waves, 16000, 16)
    pred = predicted_sets(p, names, 0.5)
    s = adherence_scores(pred, truth)
    per = {}
    for q, t in zip(pred, truth):
        for c in t:
            per.setdefault(c, [0, 0]); per[c][0] += c in q; per[c][1] += 1
    one = [i for i, t in enumerate(truth) if len(t) == 1]
    s1 = adherence_scores([pred[i] for i in one], [truth[i] for i in one])
    out = {'recall': s['recall_micro'], 'precision': s['precision_micro'],
           'one_event_recall': s1['recall_micro'], 'one_event_n': len(one), 'per_class': per}
    print(f"{label}: recall {out['recall']:.3f} precision {out['precision']:.3f} "
          f"one-event recall {out['one_event_recall']:.3f} (n={len(one)})", flush=True)
    print('   ', ' '.join(f'{c}:{a}/{b}' for c, (a, b) in sorted(per.items())), flush=True)
    return out
results = {}
if '--real' in sys.argv:
    results['real'] = report('real', real)
for path in [a for a in sys.argv[1:] if a != '--real']:
    vae = read_vae_source(path).eval()
    with torch.no_grad():
        rec = [reconstruct(vae, w) for w in real]
    results[path] = report(path, rec)
out = Path('/work/s14/val'); out.mkdir(exist_ok=True)
for k, v in results.items():
    (out / (k.strip('/').replace('/', '_') + '.json')).write_text(json.dumps(v, indent=1))
