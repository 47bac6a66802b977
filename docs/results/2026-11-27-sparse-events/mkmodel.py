import json, shutil, sys
from pathlib import Path
from safetensors.torch import load_file, save_file
ckpt, out = Path(sys.argv[1]), Path(sys.argv[2])
base = Path("/work/main/src/ezaudio/default_model")
if out.exists(): shutil.rmtree(out)
shutil.copytree(base, out)
state = load_file(ckpt / "ema.safetensors")
save_file({k: v.float().contiguous() for k, v in state.items()}, out / "dit" / "model.safetensors")
