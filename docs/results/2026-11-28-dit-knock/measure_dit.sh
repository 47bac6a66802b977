#!/usr/bin/env bash
# A DiT checkpoint of run_dit.sh (its EMA weights) with the bundled decoder, packed as the
# default is (float16), measured in full by the two CPU taggers and the CPU CLAP (adherence,
# FD / KL / IS / CLAP), then the edit section, as ../2026-11-28-knock-cuts/measure_dec.sh.
set -eu
source /work/main/.venv/bin/activate
cd /work/main
export MALLOC_MMAP_THRESHOLD_=4000000000 MALLOC_TRIM_THRESHOLD_=4000000000 MALLOC_TOP_PAD_=1000000000
export OMP_NUM_THREADS=${THREADS:-2}
CKPT=${CKPT:?a checkpoint of the DiT run}
CAND=/work/s15/cand_packed
if [ ! -d $CAND ]; then
  python /work/s15/mkmodel.py $CKPT /work/s15/cand_f32
  python -c "from ezaudio.model_folder import pack_half_precision as p; p('/work/s15/cand_f32', '$CAND')"
fi
M="python scripts/world/measure.py --model $CAND --world /work/cpubuild/world \
  --tagger /work/evaluators/tagger /work/evaluators/tagger-seed1 --clap /work/evaluators/clap --quiet"
$M --out /work/s15/m_cand --skip sweep edit > /work/s15/m_cand.log 2>&1
cp /work/s15/m_cand/results.json /work/s15/m_cand/results_main.json
$M --out /work/s15/m_cand --skip adherence protocol sweep > /work/s15/m_cand_edit.log 2>&1
echo done > /work/s15/DONE-measure
