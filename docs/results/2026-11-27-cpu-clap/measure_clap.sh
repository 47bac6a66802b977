#!/usr/bin/env bash
# FD / KL / IS / CLAP of the bundled default (the clips measure.py saved when it was measured,
# reused by their fingerprint) and its Fig. 3 sweep, with the CPU CLAP and the two CPU
# taggers. SECTION=protocol or sweep.
set -eu
source /work/main/.venv/bin/activate
cd /work/main
export MALLOC_MMAP_THRESHOLD_=4000000000 MALLOC_TRIM_THRESHOLD_=4000000000 MALLOC_TOP_PAD_=1000000000
WORLD=/work/cpubuild/world
OUT=${OUT:-/work/m_clap}
if [ ! -d "$OUT" ]; then mkdir -p "$OUT" && cp -r /work/m_cand/protocol "$OUT/"; fi
case ${SECTION:-protocol} in
  protocol) SKIP="adherence sweep edit" ;;
  sweep) SKIP="adherence protocol edit" ;;
esac
OMP_NUM_THREADS=${THREADS:-2} python scripts/world/measure.py --model src/ezaudio/default_model \
  --world $WORLD --tagger /work/evaluators/tagger /work/evaluators/tagger-seed1 \
  --clap /work/evaluators/clap --out "$OUT" --skip $SKIP \
  --sweep-clips 16 --guidance-scales 1 2 3 5 7 --rescales 0 0.5 0.75
