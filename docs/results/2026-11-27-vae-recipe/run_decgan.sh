#!/usr/bin/env bash
# Decoder-only fine-tuning of the shipped VAE WITH the discriminator (the encoder, and so the
# DiT's latents, frozen). Does adversarial training make the tonal classes come back?
set -u
cd /work/recipeexp
source /work/main/.venv/bin/activate
OMP_NUM_THREADS=2 ezaudio train-vae /work/main/recipes/world/vae.yaml --quiet \
  --set model.init_from=/work/main/src/ezaudio/default_model/vae --set model.freeze_encoder=true \
  --set data.manifest=/work/cpubuild/world/train.jsonl --set data.num_workers=0 \
  --set data.clip_seconds=0.5 --set optim.batch_size=16 --set optim.max_steps=100000 \
  --set loss.discriminator_start_step=0 --set loss.l1=0.1 \
  --set run.max_minutes=${MINUTES:-40} --set run.checkpoint_every=100 --set run.keep_last=20 \
  --set run.output_dir=/work/recipeexp/vae-decgan $RESUME > train-decgan.log 2>&1
echo done > DONE-decgan
