#!/usr/bin/env bash
# After check_pitch.sh: the train split encoded by the pitch-head VAE, the bundled DiT
# fine-tuned on its posterior means (the set-up of ../2026-11-27-latent-spectrum/chain_dit.sh),
# then the quick one-event check with both CPU taggers.
set -u
cd /work/pitchexp
source /work/main/.venv/bin/activate
export OMP_NUM_THREADS=2
export MALLOC_MMAP_THRESHOLD_=4000000000 MALLOC_TRIM_THRESHOLD_=4000000000 MALLOC_TOP_PAD_=1000000000
VAE=/work/pitchexp/${NAME:-vae-pitch}/model
[ -f DONE-encode ] || { ezaudio data encode /work/cpubuild/world/all.jsonl --split train --vae $VAE \
  --out latents-train --quiet > enc-train.log 2>&1 && echo encoded > DONE-encode; }
ezaudio train /work/main/recipes/world/stage3.yaml --quiet ${RESUME:-} \
  --set model.vae=$VAE --set model.init_from=/work/main/src/ezaudio/default_model \
  --set data.latents=/work/pitchexp/latents-train --set data.num_workers=0 \
  --set data.posterior_noise=0 \
  --set optim.batch_size=16 --set optim.ema_decay=0.99 --set optim.warmup_steps=20 \
  --set optim.lr=1e-4 --set optim.max_steps=100000 \
  --set run.output_dir=/work/pitchexp/dit-pitch --set run.checkpoint_every=50 --set run.keep_last=40 \
  --set run.max_minutes=${DIT_MINUTES:-50} > train-dit.log 2>&1
LAST=$(ls -d /work/pitchexp/dit-pitch/checkpoints/step-* | tail -1)
python /work/main/docs/results/2026-11-27-latent-spectrum/quick_taggers.py $LAST $VAE 0 \
  /work/pitchexp/q_pitch --tagger /work/evaluators/tagger /work/evaluators/tagger-seed1 > q.log 2>&1
echo done > DONE-chain
