#!/usr/bin/env bash
# After run_encmean.sh: reconstruction check, pitch probe, train-split latents of the new
# encoder, the DiT fine-tuned on their means, and the quick one-event acceptance check.
set -u
cd /work/encexp
source /work/main/.venv/bin/activate
while [ ! -f DONE-vae-encmean ]; do sleep 20; done
VAE=/work/encexp/vae-encmean/model
export OMP_NUM_THREADS=2
PYTHONPATH=/work/main/src python /work/main/scripts/world/vae_fidelity.py /work/cpubuild/world \
  --tagger /work/gpubuild/evaluators/tagger --vae $VAE --out fid_encmean.json --one-event > fid.log 2>&1
ezaudio data encode /work/probe/vaea/tonal.jsonl --vae $VAE --out latents-tonal --quiet > enc-tonal.log 2>&1
PYTHONPATH=/work/main/src python /work/main/scripts/world/latent_pitch_probe.py /work/cpubuild/world \
  --latents latents-tonal --vae $VAE --out probe_encmean.json > probe.log 2>&1
ezaudio data encode /work/cpubuild/world/all.jsonl --split train --vae $VAE --out latents-train --quiet > enc-train.log 2>&1
echo encoded > DONE-encode
ezaudio train /work/main/recipes/world/stage3.yaml --quiet \
  --set model.vae=$VAE --set model.init_from=/work/main/src/ezaudio/default_model \
  --set data.latents=/work/encexp/latents-train --set data.num_workers=0 \
  --set data.posterior_noise=0 \
  --set optim.batch_size=16 --set optim.ema_decay=0.99 --set optim.warmup_steps=20 \
  --set optim.lr=1e-4 --set optim.max_steps=100000 \
  --set run.output_dir=/work/encexp/dit-encmean --set run.checkpoint_every=50 --set run.keep_last=40 \
  --set run.max_minutes=${DIT_MINUTES:-50} > train-dit.log 2>&1
LAST=$(ls -d /work/encexp/dit-encmean/checkpoints/step-* | tail -1)
python /work/meanexp/quick_single.py $LAST $VAE 0 /work/encexp/q_encmean.json > q.log 2>&1 || true
echo done > DONE-chain
