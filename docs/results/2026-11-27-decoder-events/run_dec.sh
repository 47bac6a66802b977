#!/usr/bin/env bash
# Decoder-only fine-tuning of the bundled VAE (encoder frozen: the DiT's latents unchanged)
# on posterior means, with event cuts of the eight weakest classes mixed into the world+tone
# manifest (event_cuts.py).
set -u
cd /work/s14
source /work/main/.venv/bin/activate
export MALLOC_MMAP_THRESHOLD_=4000000000 MALLOC_TRIM_THRESHOLD_=4000000000 MALLOC_TOP_PAD_=1000000000
OMP_NUM_THREADS=${THREADS:-1} ezaudio train-vae /work/main/recipes/world/vae.yaml --quiet \
  --set model.init_from=${INIT:-/work/main/src/ezaudio/default_model/vae} --set model.freeze_encoder=true \
  --set model.posterior_noise=0 --set loss.latent_spectrum=0 --set loss.latent_pitch=0 \
  --set data.manifest=${MANIFEST:-/work/s14/cuts/train.jsonl} --set data.num_workers=0 \
  --set data.clip_seconds=0.5 --set optim.batch_size=16 --set optim.max_steps=100000 \
  --set optim.lr=${LR:-3e-4} \
  --set loss.discriminator_start_step=1000000000 --set loss.l1=0.1 \
  --set run.max_minutes=${MINUTES:-80} --set run.checkpoint_every=200 --set run.keep_last=10 \
  --set run.log_every=25 --set run.output_dir=/work/s14/${NAME} ${RESUME:-} > train-${NAME}.log 2>&1
echo done > DONE-${NAME}
