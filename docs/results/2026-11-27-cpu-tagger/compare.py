"""Two taggers on the same clips: per-clip agreement of the tag sets in two measure.py
results of one model (same fingerprint and seeds), and each one's adherence scores.

    python compare.py OLD/results.json NEW/results.json [--out compare.json]
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "scripts" / "world"))
import measure as M

FIELDS = {"template": "template", "paraphrase": "paraphrase_tags", "real": "real"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--out")
    args = parser.parse_args()
    old, new = (json.loads(Path(p).read_text()) for p in (args.old, args.new))
    same_model = old["model"]["fingerprint"] == new["model"]["fingerprint"]
    same_sampler = old["adherence"]["sampler"] == new["adherence"]["sampler"]
    clips_old = {c["id"]: c for c in old["adherence"]["clips"]}
    clips_new = {c["id"]: c for c in new["adherence"]["clips"]}
    ids = [i for i in clips_old if i in clips_new]
    report = {"same_model": same_model, "same_sampler": same_sampler, "clips": len(ids)}
    for name, field in FIELDS.items():
        for subset, keep in (("one-event", lambda c: len(c["true"]) == 1), ("all", lambda c: True)):
            rows = [i for i in ids if keep(clips_old[i])]
            truth = [set(clips_old[i]["true"]) for i in rows]
            a = [set(clips_old[i][field]) for i in rows]
            b = [set(clips_new[i][field]) for i in rows]
            found_a = [t & p for t, p in zip(truth, a)]
            found_b = [t & p for t, p in zip(truth, b)]
            report[f"{name}/{subset}"] = {
                "clips": len(rows),
                "same_tag_set": sum(x == y for x, y in zip(a, b)) / len(rows),
                "same_true_events_found": sum(x == y for x, y in zip(found_a, found_b)) / len(rows),
                "old": M.adherence_scores(a, truth),
                "new": M.adherence_scores(b, truth),
            }
    text = json.dumps(report, indent=1)
    if args.out:
        Path(args.out).write_text(text + "\n")
    for key, value in report.items():
        if isinstance(value, dict):
            o, n = value["old"], value["new"]
            print(
                f"{key:22s} n={value['clips']:3d} same set {value['same_tag_set']:.3f} "
                f"same found {value['same_true_events_found']:.3f} | recall "
                f"{o['recall_micro']:.3f} -> {n['recall_micro']:.3f}, precision "
                f"{o['precision_micro']:.3f} -> {n['precision_micro']:.3f}"
            )
        else:
            print(key, value)


if __name__ == "__main__":
    main()
