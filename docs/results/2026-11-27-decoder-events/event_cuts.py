"""Usage: python event_cuts.py OUT BASE_MANIFEST CLASS,CLASS,...

Cut the events of chosen classes out of a world's train clips (onset-0.1 .. offset+0.3 s)
and write a manifest: the event cuts, then the lines of a base manifest."""

import json, sys
from pathlib import Path
import numpy as np
import soundfile as sf

W = Path("/work/cpubuild/world")
OUT = Path(sys.argv[1])
base = Path(sys.argv[2])
classes = set(sys.argv[3].split(","))
(OUT / "audio").mkdir(parents=True, exist_ok=True)
rows = []
for line in (W / "metadata.jsonl").read_text().splitlines():
    r = json.loads(line)
    if r["split"] != "train":
        continue
    wave, rate = sf.read(W / r["audio"], dtype="float32")
    for k, e in enumerate(r["events"]):
        if e["class"] not in classes:
            continue
        a = max(0, int((e["onset"] - 0.1) * rate))
        b = min(len(wave), int((e["offset"] + 0.3) * rate))
        if b - a < rate // 2:
            b = min(len(wave), a + rate // 2)
        name = f"{r['id']}_{k}_{e['class']}"
        sf.write(OUT / "audio" / f"{name}.wav", wave[a:b], rate, subtype="PCM_16")
        rows.append(
            {
                "audio": str(OUT / "audio" / f"{name}.wav"),
                "caption": e["class"],
                "id": name,
                "split": "train",
            }
        )
for line in base.read_text().splitlines():  # the base manifest, its paths made absolute
    r = json.loads(line)
    if not Path(r["audio"]).is_absolute():
        r["audio"] = str(base.parent / r["audio"])
    rows.append(r)
lines = [json.dumps(x) for x in rows]
(OUT / "train.jsonl").write_text("\n".join(lines) + "\n")
from collections import Counter

print(Counter(x["caption"] for x in rows if x["id"].count("_") >= 3), len(lines))
