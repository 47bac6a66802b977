"""Experiment: `ezaudio train` with the latent cache's clips of some classes listed more than
once (REPEAT="knocking=3,dog_bark=2": a clip holding a knocking event appears 3 times; the
largest count of its classes wins). Classes come from the world's metadata.jsonl (WORLD)."""
import json, os, sys
from pathlib import Path
sys.path.insert(0, "/work/main/scripts/world")
from measure import true_labels
import ezaudio.data.latent_cache as LC
WORLD = Path(os.environ.get("WORLD", "/work/cpubuild/world"))
REPEAT = dict((c, int(n)) for c, n in (p.split("=") for p in os.environ["REPEAT"].split(",")))
labels = {}
for line in (WORLD / "metadata.jsonl").read_text().splitlines():
    if line.strip():
        r = json.loads(line); labels[r["id"]] = true_labels(r)
orig_init = LC.LatentClipDataset.__init__
def init(self, *a, **k):
    orig_init(self, *a, **k)
    extra = []
    for clip in self.clips:
        n = max([REPEAT.get(c, 1) for c in labels.get(clip["id"], ())] or [1])
        extra += [clip] * (n - 1)
    self.clips = self.clips + extra
    print(f"oversampling {REPEAT}: {len(self.clips) - len(extra)} clips + {len(extra)} repeats",
          file=sys.stderr, flush=True)
LC.LatentClipDataset.__init__ = init
from ezaudio.cli import main
sys.exit(main(sys.argv[1:]))
