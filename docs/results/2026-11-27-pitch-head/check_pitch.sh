#!/usr/bin/env bash
# After run_pitch.sh: the pitch probe of the new encoder (and its decoder), and reconstructions
# of the 79 one-event test clips tagged by both CPU taggers, as ../2026-11-27-latent-spectrum/check.sh.
set -u
cd /work/pitchexp
source /work/main/.venv/bin/activate
export OMP_NUM_THREADS=${THREADS:-2} PYTHONPATH=/work/main/src
W=/work/cpubuild/world
S=/work/main/scripts/world
RUN=${NAME:-vae-pitch}
while [ ! -f DONE-$RUN ]; do sleep 20; done
python $S/latent_pitch_probe.py $W --latents lat-$RUN --vae $RUN/model --out probe_$RUN.json > probe_$RUN.log 2>&1
for T in tagger tagger-seed1; do
  python $S/vae_fidelity.py $W --tagger /work/evaluators/$T --vae $RUN/model --one-event \
    --out fid_${RUN}_$T.json > fid_${RUN}_$T.log 2>&1
done
echo done > DONE-check-$RUN
