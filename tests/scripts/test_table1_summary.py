"""scripts/world/table1_summary.py: the rows of Table I in miniature, collected."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import yaml

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "world" / "table1_summary.py"
spec = importlib.util.spec_from_file_location("world_table1_summary", SCRIPT)
summary = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = summary
spec.loader.exec_module(summary)


def scores(model: tuple[float, float], ceiling: tuple[float, float]) -> dict:
    """A measure.py subset: (precision, recall) of the model and of the real clips."""
    return {
        "model": {"precision_micro": model[0], "recall_micro": model[1]},
        "ceiling": {"precision_micro": ceiling[0], "recall_micro": ceiling[1]},
    }


def make_run(work: Path, name: str, steps: int, split_sizes: dict[str, int], fd: float) -> Path:
    """A run folder as table1_cpu.sh leaves it: log, recipe, latent cache, measurements."""
    run = work / name
    (run / "measure").mkdir(parents=True)
    cache = work / "latents" / name
    cache.mkdir(parents=True)
    clips = [{"id": f"{s}{i}", "split": s} for s, n in split_sizes.items() for i in range(n)]
    (cache / "index.json").write_text(json.dumps({"clips": clips}))
    recipe = {"model": {"init_from": "stage1/model"}, "data": {"latents": f"latents/{name}",
              "split": "train"}}  # fmt: skip
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    log = [{"step": s, "loss": 1.0 / s} for s in (100, steps)] + [{"event": "export"}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))
    results = {
        "machine": {"cpu_count": 2},
        "seconds": 12.5,
        "protocol": {
            "metrics": {
                "clips": 100,
                "fd": fd,
                "kl": 2.0,
                "is": 3.0,
                "clap": 0.5,
                "clap_reference": 0.9,
            }
        },
        "adherence": {
            "subsets": {
                "single_template": scores((0.4, 0.6), (0.95, 0.99)),
                "all_template": scores((0.5, 0.45), (0.98, 0.9)),
                "all_paraphrase": scores((0.5, 0.44), (0.98, 0.9)),
            }
        },
    }
    (run / "measure" / "results.json").write_text(json.dumps(results))
    return run


def test_rows_are_collected_with_their_steps_pairs_and_scores(tmp_path: Path, capsys) -> None:
    q30 = make_run(tmp_path, "q30", 800, {"train": 7}, fd=123.45)
    unfiltered = make_run(tmp_path, "unfiltered", 800, {"train": 10, "valid": 3}, fd=150.0)
    losses = {"q30": [{"step": 700, "loss": 0.9}, {"step": 800, "loss": 0.61234}]}
    (tmp_path / "val_loss.json").write_text(json.dumps(losses))
    command = [str(q30), str(unfiltered), "--out", str(tmp_path / "table1")]
    assert summary.main([*command, "--val-loss", str(tmp_path / "val_loss.json")]) == 0
    rows = json.loads((tmp_path / "table1.json").read_text())
    assert [(r["run"], r["steps"], r["pairs"]) for r in rows] == [
        ("q30", 800, 7), ("unfiltered", 800, 10)
    ]  # fmt: skip
    assert rows[0]["fd"] == 123.45 and rows[0]["one_event_recall"] == 0.6
    assert rows[0]["val_loss"] == 0.61234 and rows[1]["val_loss"] is None
    assert rows[0]["paraphrase_recall"] == 0.44 and rows[0]["ceiling"]["one_event_recall"] == 0.99
    table = (tmp_path / "table1.md").read_text().splitlines()
    assert table[2].startswith("| q30 | 800 | 7 | 0.6123 | 123.5 | 2.00 | 3.00 | 0.500 | 0.600 |")
    assert table[3].startswith("| unfiltered | 800 | 10 | - | 150.0 |")
    assert table[-1].startswith("| real clips |") and "0.990" in table[-1]
    assert capsys.readouterr().out.splitlines() == table


def test_a_run_not_measured_is_named(tmp_path: Path, capsys) -> None:
    (tmp_path / "q50").mkdir()
    assert summary.main([str(tmp_path / "q50"), "--out", str(tmp_path / "t")]) == 1
    assert "not measured" in capsys.readouterr().err and not (tmp_path / "t.json").exists()
