#!/usr/bin/env bash
# Table I in miniature on a CPU (docs/results.md): masked pre-training vs none, and stage 2
# on unfiltered noisy captions vs CLAP-filtered ones at three thresholds, the same compute
# for every row. A small EzAudio-DiT (4 blocks of width 128, MiniLM text) on full 10 s clips.
#
#   bash scripts/world/table1_cpu.sh WORLD MODEL SCORES EVALUATORS WORK   (repository root)
#
# WORLD: a world from `ezaudio data synth`; MODEL: a model folder whose VAE encodes the
# latents and decodes the measured clips (e.g. src/ezaudio/default_model); SCORES: the
# clap_scores.csv of `ezaudio data clap-filter` on WORLD/train_noisy.jsonl (the thresholds
# are its 15/30/50 % quantiles); EVALUATORS: a folder with tagger/ and clap/.
#
# Rows (stage 2 = the stage-2 recipe, text alignment on noisy captions):
#   no-stage1     stage 2 on q30 from scratch for STEPS1 + STEPS2 steps
#   unfiltered    stage 1 (STEPS1), then stage 2 on all noisy captions (STEPS2)
#   q15, q30, q50 stage 1, then stage 2 on the captions above that score quantile
# Two runs train at a time with one thread each. Every run continues from its checkpoints
# when the script is run again; finished runs and measurements are skipped. Each row is
# measured by scripts/world/measure.py (adherence + FD/KL/IS/CLAP) on the first CLIPS test
# clips; WORK/table1.json and WORK/table1.md collect the rows.
set -eu
WORLD=$(realpath "$1")
MODEL=$(realpath "$2")
SCORES=$(realpath "$3")
EVALUATORS=$(realpath "$4")
WORK=$5
STEPS1=${STEPS1:-800}
STEPS2=${STEPS2:-800}
CLIPS=${CLIPS:-100}
REPO=$PWD
export PYTHONPATH="$REPO/src${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$WORK" && cd "$WORK"
mkdir -p logs filter latents

# CLAP-filtered manifests at the 15/30/50 % quantiles of the scores (no CLAP run again).
python - "$SCORES" <<'EOF'
import csv, json, sys
scores = sorted(float(r["score"]) for r in csv.DictReader(open(sys.argv[1])) if r.get("score"))
thresholds = {f"q{q}": scores[min(len(scores) - 1, q * len(scores) // 100)] for q in (15, 30, 50)}
json.dump(thresholds, open("filter/thresholds.json", "w"), indent=1)
EOF
for q in q15 q30 q50; do
    [ -f "filter/$q.jsonl" ] && continue
    threshold=$(python -c "import json; print(json.load(open('filter/thresholds.json'))['$q'])")
    python -m ezaudio.cli data clap-filter "$WORLD/train_noisy.jsonl" --scores "$SCORES" \
        --threshold "$threshold" --out "filter/$q.jsonl" --report "filter/report-$q" --quiet
done

encode() {  # NAME MANIFEST [--reuse CACHE]; resumes an unfinished cache
    python -m ezaudio.cli data encode "$2" --vae "$MODEL/vae" --out "latents/$1" \
        --batch-size 16 --quiet "${@:3}" >> "logs/encode-$1.log" 2>&1
}
encode clean "$WORLD/all.jsonl"
# The noisy captions are of the same audio: their posteriors are copied, not encoded again.
encode noisy "$WORLD/train_noisy.jsonl" --reuse latents/clean
for q in q15 q30 q50; do encode "noisy-$q" "filter/$q.jsonl" --reuse latents/clean; done

SIZE='{embed_dim: 128, depth: 4, num_heads: 4, ada_sola_rank: 8, ada_sola_alpha: 8}'
train() {  # NAME STAGE LATENTS STEPS INIT
    [ -d "$1/model" ] && return 0
    resume=()
    compgen -G "$1/checkpoints/step-*" > /dev/null && resume=(--resume)
    OMP_NUM_THREADS=1 python -m ezaudio.cli train "$REPO/recipes/world/stage$2.yaml" --quiet \
        --set model.dit_preset=ezaudio-s --set "model.dit_overrides=$SIZE" \
        --set model.vae="$MODEL/vae" --set data.latents="latents/$3" \
        --set data.num_workers=0 --set optim.batch_size=16 --set optim.max_steps="$4" \
        --set model.init_from="$5" --set run.checkpoint_every=100 \
        --set run.output_dir="$1" "${resume[@]}" >> "logs/$1.log" 2>&1
}
# Two lanes, so that no core idles while no-stage1 trains its double length: lane B runs
# stage 1 and then two rows from it; lane A no-stage1 and then (stage 1 being done) two more.
lane_b() {
    train stage1 1 clean "$STEPS1" null
    train unfiltered 2 noisy "$STEPS2" stage1/model
    train q15 2 noisy-q15 "$STEPS2" stage1/model
}
lane_a() {  # LANE_B_PID
    train no-stage1 2 noisy-q30 $((STEPS1 + STEPS2)) null
    while [ ! -d stage1/model ] && kill -0 "$1" 2>/dev/null; do sleep 10; done
    [ -d stage1/model ] || return 1
    train q30 2 noisy-q30 "$STEPS2" stage1/model
    train q50 2 noisy-q50 "$STEPS2" stage1/model
}
lane_b & b=$!
lane_a "$b" & a=$!
wait "$a"
wait "$b"

ROWS="no-stage1 unfiltered q15 q30 q50"
for row in $ROWS; do
    [ -f "$row/measure/results.json" ] && grep -q '"adherence"' "$row/measure/results.json" && \
        grep -q '"protocol"' "$row/measure/results.json" && continue
    python "$REPO/scripts/world/measure.py" --model "$row/model" --world "$WORLD" \
        --tagger "$EVALUATORS/tagger" --clap "$EVALUATORS/clap" --out "$row/measure" \
        --steps 25 --guidance-scale 3 --guidance-rescale 0.5 \
        --clips "$CLIPS" --skip sweep edit --quiet > "logs/measure-$row.log" 2>&1
done
# The text-conditioned loss of every row on the same clean validation captions.
[ -f val_loss.json ] || python "$REPO/scripts/world/val_loss.py" $ROWS --latents latents/clean \
    --batches 8 --out val_loss.json > logs/val_loss.log 2>&1
python "$REPO/scripts/world/table1_summary.py" $ROWS --val-loss val_loss.json --out table1
