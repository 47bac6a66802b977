#!/usr/bin/env bash
# Decoder-only fine-tuning on posterior means from the bundled decoder (encoder frozen), the
# world's training clips + 1600 tone clips (`tone_clips.py /work/tones2 --clips 1600
# --mix-with WORLD/train.jsonl`), one thread beside a tagger run, 40 minutes (1832 steps).
# Then: vae_fidelity.py --one-event (fid_dec2.json) and quick.py (q_dec2.json), which is
# ../2026-11-27-posterior-means/quick_single.py with the tagger path set to
# the seed-0 tagger, run as `quick.py - /work/decexp/vae-decmean2/model 0 q_dec2.json`.
set -u
cd /work/decexp
OMP_NUM_THREADS=1 MALLOC_MMAP_THRESHOLD_=4000000000 MALLOC_TRIM_THRESHOLD_=4000000000 \
MALLOC_TOP_PAD_=1000000000 ezaudio train-vae /work/main/recipes/world/vae.yaml --quiet \
  --set model.init_from=/work/main/src/ezaudio/default_model/vae --set model.freeze_encoder=true \
  --set model.posterior_noise=0 \
  --set data.manifest=/work/tones2/train.jsonl --set data.num_workers=0 \
  --set data.clip_seconds=0.5 --set optim.batch_size=16 --set optim.max_steps=100000 \
  --set loss.discriminator_start_step=1000000000 --set loss.l1=0.1 \
  --set run.max_minutes=40 --set run.checkpoint_every=100 --set run.keep_last=40 \
  --set run.output_dir=/work/decexp/vae-decmean2 > train.log 2>&1
