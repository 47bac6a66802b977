#!/usr/bin/env bash
# Whole-VAE fine-tuning on posterior means with the spectrum head and the pitch head
# (train_pitch.py), the set-up of ../2026-11-27-latent-spectrum/run_aux.sh, from the head
# run's VAE (the bundled default's VAE since edb1a0c).
set -u
mkdir -p /work/pitchexp && cd /work/pitchexp
source /work/main/.venv/bin/activate
export MALLOC_MMAP_THRESHOLD_=4000000000 MALLOC_TRIM_THRESHOLD_=4000000000 MALLOC_TOP_PAD_=1000000000
OMP_NUM_THREADS=${THREADS:-1} python /work/main/docs/results/2026-11-27-pitch-head/train_pitch.py \
  /work/main/recipes/world/vae.yaml --weight 1.0 --pitch-weight ${PITCH:-0.3} --warmup ${WARMUP:-100} \
  --set model.init_from=${INIT:-/work/auxexp/aux1/model} --set model.freeze_encoder=false \
  --set model.posterior_noise=0 \
  --set data.manifest=${MANIFEST:-/work/tones2/train.jsonl} --set data.num_workers=0 \
  --set data.clip_seconds=0.5 --set optim.batch_size=16 --set optim.max_steps=${STEPS:-100000} \
  --set optim.lr=${LR:-3e-4} \
  --set loss.discriminator_start_step=1000000000 --set loss.l1=0.1 \
  --set run.max_minutes=${MINUTES:-45} --set run.checkpoint_every=${EVERY:-100} --set run.keep_last=40 \
  --set run.log_every=25 --set run.output_dir=/work/pitchexp/${NAME:-vae-pitch} > train-${NAME:-vae-pitch}.log 2>&1
echo done > DONE-${NAME:-vae-pitch}
