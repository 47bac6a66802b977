"""Per failing class: top tags of real, reconstructed and generated one-event test clips."""
import sys, json, numpy as np, torch
sys.path.insert(0,'/work/main/scripts/world')
from measure import load_world, tag_waveforms, true_labels
from vae_fidelity import reconstruct
from ezaudio.data.audio import read_audio
from ezaudio.train.vae_trainer import read_vae_source
from ezaudio.eval.panns import Cnn14
torch.set_num_threads(2)
W='/work/cpubuild/world'
world=load_world(W)
vae=read_vae_source(sys.argv[1]).eval()
gen_dir=sys.argv[2] if len(sys.argv)>2 else None
taggers=[Cnn14.from_pretrained(f'/work/evaluators/{t}').eval() for t in ['tagger','tagger-seed1']]
names=list(taggers[0].config.class_names)
FAIL={'piano','plucked_string','siren','alarm','car_horn','knocking','bell','bird'}
rows=[]
for c in world.clips:
    labs=true_labels(c.record)
    if len(c.record['events'])==1 and labs & FAIL:
        rows.append((c, next(iter(labs))))
real=[read_audio(world.folder/c.clip.audio if not str(c.clip.audio).startswith('/') else c.clip.audio)[0] for c,_ in rows]
rec=[reconstruct(vae,w) for w in real]
sets={'real':real,'rec':rec}
if gen_dir:
    sets['gen']=[read_audio(f'{gen_dir}/{c.id}.wav')[0] for c,_ in rows]
P={k:tag_waveforms(taggers,v,16000,16) for k,v in sets.items()}
def top(p):
    i=np.argsort(-p)[:3]; return ' '.join(f'{names[j]}:{p[j]:.2f}' for j in i)
for n,(c,lab) in enumerate(rows):
    print(f'{lab:15s} {c.id} attrs={c.record["events"][0].get("attributes")}')
    for k in P: print(f'   {k:4s} {top(P[k][n])}')
