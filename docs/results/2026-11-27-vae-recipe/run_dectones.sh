#!/usr/bin/env bash
# Decoder-only fine-tuning of the shipped VAE (encoder frozen: the DiT's latents unchanged)
# on the world's training clips plus as many 1-s tone clips (scripts/world/tone_clips.py
# --mix-with): does a tone curriculum teach the decoder to render the pitched classes?
set -u
cd /work/recipeexp
source /work/main/.venv/bin/activate
# the manifest: 1600 one-second tone clips (seed 0) and the world's 1600 training clips
[ -f /work/tones/train.jsonl ] || PYTHONPATH=/work/main/src python /work/main/scripts/world/tone_clips.py \
  /work/tones --clips 1600 --mix-with /work/cpubuild/world/train.jsonl
OMP_NUM_THREADS=${THREADS:-2} ezaudio train-vae /work/main/recipes/world/vae.yaml --quiet \
  --set model.init_from=/work/main/src/ezaudio/default_model/vae --set model.freeze_encoder=true \
  --set data.manifest=/work/tones/train.jsonl --set data.num_workers=0 \
  --set data.clip_seconds=0.5 --set optim.batch_size=16 --set optim.max_steps=100000 \
  --set loss.discriminator_start_step=1000000000 --set loss.l1=0.1 \
  --set run.max_minutes=${MINUTES:-35} --set run.checkpoint_every=100 --set run.keep_last=20 \
  --set run.output_dir=/work/recipeexp/vae-dectones ${RESUME:-} > train-dectones.log 2>&1
echo done > DONE-dectones
