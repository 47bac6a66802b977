#!/usr/bin/env bash
# After run_aux.sh (aux1: head weight 1; aux0: weight 0, the control): the pitch probe of each
# new encoder (and its decoder), and reconstructions of the 79 one-event test clips tagged by
# both CPU taggers (seed 0 and seed 1); the bundled VAE by the seed-1 tagger for comparison.
set -u
cd /work/auxexp
source /work/main/.venv/bin/activate
export OMP_NUM_THREADS=2 PYTHONPATH=/work/main/src
W=/work/cpubuild/world
S=/work/main/scripts/world
while [ ! -f DONE-aux1 ] || [ ! -f DONE-aux0 ]; do sleep 20; done
for RUN in aux1 aux0; do
  python $S/latent_pitch_probe.py $W --latents lat-$RUN --vae $RUN/model --out probe_$RUN.json > probe_$RUN.log 2>&1
done
for RUN in aux1 aux0; do
  for T in tagger tagger-seed1; do
    python $S/vae_fidelity.py $W --tagger /work/evaluators/$T --vae $RUN/model --one-event \
      --out fid_${RUN}_$T.json > fid_${RUN}_$T.log 2>&1
  done
done
python $S/vae_fidelity.py $W --tagger /work/evaluators/tagger-seed1 \
  --vae /work/main/src/ezaudio/default_model --one-event --out fid_bundled_tagger-seed1.json > fid_b.log 2>&1
echo done > DONE-check
