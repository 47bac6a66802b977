"""A tagger's probability of the true class on the one-event template clips that
measure.py generated (AUDIO = its protocol/audio folder) and on the real clips, beside
whether the lost H100 tagger had found the class (measure_means_results.json).

    python probs.py RESULTS.json AUDIO WORLD OLD_RESULTS.json TAGGER
"""

import json
import sys

import numpy as np
import soundfile as sf

from ezaudio.eval.features import load_panns
from ezaudio.eval.tagger import tag_probabilities

results, audio, world, old_results, tagger_folder = sys.argv[1:6]
tagger = load_panns(tagger_folder, device="cpu").model
names = list(tagger.config.class_names)
clips = [c for c in json.load(open(results))["adherence"]["clips"] if len(c["true"]) == 1]
generated = [sf.read(f"{audio}/{c['id']}.wav", dtype="float32")[0] for c in clips]
real = [sf.read(f"{world}/audio/{c['id']}.wav", dtype="float32")[0] for c in clips]
p_gen, p_real = (tag_probabilities(tagger, w, 16000) for w in (generated, real))
true = np.array([names.index(c["true"][0]) for c in clips])
gen_true = p_gen[np.arange(len(true)), true]
real_true = p_real[np.arange(len(true)), true]
old = {c["id"]: c for c in json.load(open(old_results))["adherence"]["clips"]}
old_hit = np.array([c["true"][0] in old[c["id"]]["template"] for c in clips])
peak = np.array([np.abs(w).max() for w in generated])
top1_gen, top1_real = (np.mean(p.argmax(1) == true) for p in (p_gen, p_real))
print(f"top-1: generated {top1_gen:.3f}, real {top1_real:.3f}")
print(
    "true-class probability of generated clips, quantiles 10/25/50/75/90 %:",
    np.round(np.quantile(gen_true, [0.1, 0.25, 0.5, 0.75, 0.9]), 3).tolist(),
)
for threshold in (0.5, 0.3, 0.2, 0.1):
    print(
        f"generated clips with the true class >= {threshold}: {np.mean(gen_true >= threshold):.3f}"
        f" (real {np.mean(real_true >= threshold):.3f})"
    )
print(f"near-silent generated clips (peak < 0.05): {int((peak < 0.05).sum())} of {len(clips)}")
print(
    f"found by the H100 tagger: {int(old_hit.sum())};"
    f" by this one (0.5): {int((gen_true >= 0.5).sum())};"
    f" of the H100's hits, median probability here {np.median(gen_true[old_hit]):.3f}"
)
per = {}
for clip, p, hit in zip(clips, gen_true, old_hit):
    per.setdefault(clip["true"][0], []).append(f"{p:.2f}{'*' if hit else ''}")
print("per class (probability here; * = the H100 tagger found it):")
for name, values in sorted(per.items()):
    print(f"  {name}: {' '.join(values)}")
