#!/usr/bin/env bash
# After chain_pitch_dit.sh: the candidate packed as the default is (float16), then measured in
# full by the two CPU taggers and the CPU CLAP (adherence, FD / KL / IS / CLAP), then the edit
# section; SWEEP=1 runs the Fig. 3 sweep instead.
set -eu
source /work/main/.venv/bin/activate
cd /work/main
export MALLOC_MMAP_THRESHOLD_=4000000000 MALLOC_TRIM_THRESHOLD_=4000000000 MALLOC_TOP_PAD_=1000000000
export OMP_NUM_THREADS=${THREADS:-2}
CAND=/work/pitchexp/cand_packed
[ -d $CAND ] || python -c "from ezaudio.model_folder import pack_half_precision as p; p('/work/pitchexp/q_pitch/model', '$CAND')"
M="python scripts/world/measure.py --model $CAND --world /work/cpubuild/world \
  --tagger /work/evaluators/tagger /work/evaluators/tagger-seed1 --clap /work/evaluators/clap --quiet"
if [ "${SWEEP:-0}" = 1 ]; then
  $M --out /work/pitchexp/m_sweep --skip adherence protocol edit \
    --sweep-clips 16 --guidance-scales ${SCALES:-1 2 3 5 7} --rescales ${RESCALES:-0 0.5 0.75} > /work/pitchexp/m_sweep.log 2>&1
  echo done > /work/pitchexp/DONE-sweep
else
  $M --out /work/pitchexp/m_cand --skip sweep edit > /work/pitchexp/m_cand.log 2>&1
  cp /work/pitchexp/m_cand/results.json /work/pitchexp/m_cand/results_main.json
  $M --out /work/pitchexp/m_cand --skip adherence protocol sweep > /work/pitchexp/m_cand_edit.log 2>&1
  echo done > /work/pitchexp/DONE-measure
fi
