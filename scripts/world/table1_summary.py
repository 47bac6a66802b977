"""Collect the rows of Table I in miniature (``scripts/world/table1_cpu.sh``) into one table.

    python scripts/world/table1_summary.py ROW [ROW ...] --out table1

Each ``ROW`` is a training run folder with ``metrics.jsonl``, ``recipe.yaml`` and
``measure/results.json`` (``scripts/world/measure.py``). Writes ``OUT.json`` (every number)
and ``OUT.md`` (a Markdown table): the run's steps and training pairs, its validation loss
(``--val-loss``: the output of ``scripts/world/val_loss.py``), FD, KL, IS, CLAP and
prompt adherence (one-event template recall, all-clip template precision and recall,
paraphrase recall), with the real test clips' ceiling below.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml


def run_steps(run: Path) -> int | None:
    """The last step logged in ``metrics.jsonl`` (None without one)."""
    steps = None
    path = run / "metrics.jsonl"
    if path.is_file():
        for line in path.read_text().splitlines():
            if line.strip():
                steps = json.loads(line).get("step", steps)
    return steps


def training_pairs(run: Path) -> int | None:
    """The number of training clips in the run's latent cache (``index.json``), if readable."""
    recipe = yaml.safe_load((run / "recipe.yaml").read_text())
    latents = Path(recipe["data"]["latents"])
    if not latents.is_absolute():
        latents = run.parent / latents
    index = latents / "index.json"
    if not index.is_file():
        return None
    split = recipe["data"].get("split")
    clips = json.loads(index.read_text())["clips"]
    return sum(1 for clip in clips if split is None or clip.get("split") == split)


def row(run: Path, val_loss: dict[str, list[dict]] | None = None) -> dict[str, Any]:
    """One table row: training facts and the measured numbers of ``run`` (``val_loss``:
    ``scripts/world/val_loss.py`` output; the row gets its last checkpoint's loss)."""
    recipe = yaml.safe_load((run / "recipe.yaml").read_text())
    results = json.loads((run / "measure" / "results.json").read_text())
    metrics = results["protocol"]["metrics"]
    subsets = results["adherence"]["subsets"]

    def model(subset: str, key: str) -> float:
        return subsets[subset]["model"][key]

    return {
        "run": run.name,
        "init_from": recipe["model"].get("init_from"),
        "steps": run_steps(run),
        "val_loss": (val_loss or {}).get(run.name, [{"loss": None}])[-1]["loss"],
        "pairs": training_pairs(run),
        "clips": metrics["clips"],
        "fd": metrics["fd"],
        "kl": metrics["kl"],
        "is": metrics["is"],
        "clap": metrics["clap"],
        "one_event_recall": model("single_template", "recall_micro"),
        "template_precision": model("all_template", "precision_micro"),
        "template_recall": model("all_template", "recall_micro"),
        "paraphrase_recall": model("all_paraphrase", "recall_micro"),
        "ceiling": {
            "clap": metrics["clap_reference"],
            "one_event_recall": subsets["single_template"]["ceiling"]["recall_micro"],
            "template_precision": subsets["all_template"]["ceiling"]["precision_micro"],
            "template_recall": subsets["all_template"]["ceiling"]["recall_micro"],
        },
        "machine": results["machine"],
        "measure_seconds": results.get("seconds"),
    }


COLUMNS = (
    ("run", "{}"), ("steps", "{}"), ("pairs", "{}"), ("val_loss", "{:.4f}"), ("fd", "{:.1f}"),
    ("kl", "{:.2f}"), ("is", "{:.2f}"), ("clap", "{:.3f}"), ("one_event_recall", "{:.3f}"),
    ("template_precision", "{:.3f}"), ("template_recall", "{:.3f}"),
    ("paraphrase_recall", "{:.3f}"),
)  # fmt: skip


def markdown(rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table, the real clips' ceiling as the last line."""
    lines = [
        "| " + " | ".join(name for name, _ in COLUMNS) + " |",
        "|" + " --- |" * len(COLUMNS),
    ]
    for r in rows:
        cells = [fmt.format(r[name]) if r[name] is not None else "-" for name, fmt in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    ceiling = rows[0]["ceiling"]
    cells = [
        fmt.format(ceiling[name]) if name in ceiling else ("real clips" if name == "run" else "")
        for name, fmt in COLUMNS
    ]
    lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="training run folders")
    parser.add_argument("--out", required=True, type=Path, help="output stem (.json, .md)")
    parser.add_argument("--val-loss", type=Path, help="val_loss.py output for the rows")
    args = parser.parse_args(argv)
    missing = [str(r) for r in args.runs if not (r / "measure" / "results.json").is_file()]
    if missing:
        print(f"error: not measured: {', '.join(missing)}", file=sys.stderr)
        return 1
    val_loss = json.loads(args.val_loss.read_text()) if args.val_loss else None
    rows = [row(r, val_loss) for r in args.runs]
    args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
    args.out.with_suffix(".md").write_text(markdown(rows))
    print(markdown(rows), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
