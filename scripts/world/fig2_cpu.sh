#!/usr/bin/env bash
# Fig. 2 in miniature on a CPU (docs/results.md): EzAudio-DiT (AdaLN-SOLA + long skips),
# CrossDiT (full AdaLN per block) and PixArt-style AdaLN-single, all 4 blocks of width 128,
# trained from scratch with text (stage-2 recipe) on the same latents for the same steps;
# validation loss of every checkpoint by scripts/world/val_loss.py.
#
#   bash scripts/world/fig2_cpu.sh WORLD WORK [VAE]        (from the repository root)
#
# WORLD: a world from `ezaudio data synth`; VAE: a VAE folder (default: a randomly
# initialised oobleck-16k, i.e. a fixed random encoder: the comparison is then between
# denoisers on the same latent data, not on a trained VAE's latents). 800 train and 128
# validation clips, cut to 4 s; STEPS (default 400; docs/results.md used 1500) steps of
# batch 16 per model. LATENTS=CACHE (a latent cache of the world made by VAE, e.g. by
# scripts/world/table1_cpu.sh): train on every train clip of it and score on its valid
# clips, random 4 s crops of whole clips, instead of encoding the 800 + 128 subset.
set -eu
WORLD=$(realpath "$1")
WORK=$2
VAE=${3:+$(realpath "$3")}
STEPS=${STEPS:-400}
mkdir -p "$WORK" && cd "$WORK"
if [ -z "$VAE" ]; then
    VAE=$PWD/vae_random
    [ -d "$VAE" ] || python -c "
import torch
from ezaudio.config import VAE_PRESETS
from ezaudio.nn.oobleck import WaveformVAE
torch.manual_seed(0)
WaveformVAE(VAE_PRESETS['oobleck-16k']).save_pretrained('$VAE')"
fi
if [ -n "${LATENTS:-}" ]; then
    [ -n "${3:-}" ] || { echo "LATENTS needs the VAE that made it" >&2; exit 2; }
    LATENTS=$(realpath "$LATENTS")
    ln -sfn "$LATENTS" latents
else
python - "$WORLD" <<'EOF'
import json, sys
world = sys.argv[1]
rows = [json.loads(line) for line in open(f"{world}/all.jsonl")]
train = [r for r in rows if r["split"] == "train"][:800]
valid = [r for r in rows if r["split"] == "valid"][:128]
with open("subset.jsonl", "w") as out:
    for row in train + valid:
        out.write(json.dumps({**row, "audio": f"{world}/{row['audio']}"}) + "\n")
EOF
ezaudio data encode subset.jsonl --vae "$VAE" --out latents --max-seconds 4 --shard-size 64 --quiet
fi
SIZE='embed_dim: 128, depth: 4, num_heads: 4'
for preset in ezaudio-s crossdit-s pixart-s; do
    overrides="{$SIZE}"
    [ "$preset" = ezaudio-s ] && overrides="{$SIZE, ada_sola_rank: 8, ada_sola_alpha: 8}"
    ezaudio train "$OLDPWD/recipes/world/stage2.yaml" --quiet --no-export \
        --set model.dit_preset=$preset --set "model.dit_overrides=$overrides" \
        --set model.vae="$VAE" --set data.latents=latents --set data.clip_seconds=4 \
        --set data.num_workers=0 --set optim.batch_size=16 --set optim.max_steps="$STEPS" \
        --set optim.warmup_steps=20 --set model.init_from=null --set run.checkpoint_every=50 \
        --set run.keep_last=1000 --set run.output_dir="fig2-$preset"
done
python "$OLDPWD/scripts/world/val_loss.py" fig2-ezaudio-s fig2-crossdit-s fig2-pixart-s \
    --out fig2_val_loss.json --batches 8 --plot fig2_val_loss.png
