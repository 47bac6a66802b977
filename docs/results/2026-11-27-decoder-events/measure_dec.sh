#!/usr/bin/env bash
# The bundled model with the decoder of run_dec.sh's last checkpoint (swap_decoder.py, float16,
# as the default is packed), measured in full by the two CPU taggers and the CPU CLAP
# (adherence, FD / KL / IS / CLAP), then the edit section, as ../2026-11-27-pitch-head.
set -eu
source /work/main/.venv/bin/activate
cd /work/main
export MALLOC_MMAP_THRESHOLD_=4000000000 MALLOC_TRIM_THRESHOLD_=4000000000 MALLOC_TOP_PAD_=1000000000
export OMP_NUM_THREADS=${THREADS:-2}
CKPT=${CKPT:?a checkpoint of the decoder run}
CAND=/work/s14/cand_packed
[ -d $CAND ] || python scripts/world/swap_decoder.py src/ezaudio/default_model $CKPT --out $CAND
M="python scripts/world/measure.py --model $CAND --world /work/cpubuild/world \
  --tagger /work/evaluators/tagger /work/evaluators/tagger-seed1 --clap /work/evaluators/clap --quiet"
$M --out /work/s14/m_cand --skip sweep edit > /work/s14/m_cand.log 2>&1
cp /work/s14/m_cand/results.json /work/s14/m_cand/results_main.json
$M --out /work/s14/m_cand --skip adherence protocol sweep > /work/s14/m_cand_edit.log 2>&1
echo done > /work/s14/DONE-measure
