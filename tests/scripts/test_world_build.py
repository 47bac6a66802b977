"""scripts/world/build.py: the default model's build, end to end at smoke scale (slow)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).parents[2] / "scripts" / "world"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"world_{name}", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_planned_and_last_steps(tmp_path: Path) -> None:
    build = load("build")
    assert build.planned_steps(["optim.max_steps=5", "x=1", "optim.max_steps=7"]) == 7
    assert build.planned_steps(["x=1"]) is None
    assert build.last_step(tmp_path) is None
    for step in (2, 10, 4):
        (tmp_path / f"step-{step:08d}").mkdir()
    assert build.last_step(tmp_path) == 10


@pytest.mark.slow
def test_the_smoke_build_trains_every_step_and_packs_a_float16_model(tmp_path: Path) -> None:
    build = load("build")
    work = tmp_path / "work"
    scale = build.SCALES["smoke"]
    record = build.build(work, scale, "cpu", {"stage3": 5.0}, ablations=True)
    steps = record["steps"]
    for name in ("world", "vae", "tagger", "clap", "stage1", "stage2", "stage3", "package",
                 "table1-no-stage1", "table1-unfiltered", "fig2-pixart-s"):  # fmt: skip
        assert steps[name]["done"], name
    assert steps["stage3"]["overrides"][-1] == "run.max_minutes=5.0"
    assert steps["table1-no-stage1"]["steps"] == sum(scale.stage_steps[:2])
    index = json.loads((work / "default_model" / "ezaudio.json").read_text())
    assert index["sampling"]["steps"] == 25 and index["name"] == "ezaudio-s-world"
    assert sorted(record["thresholds"]) == ["q15", "q30", "q50"]
    # Fig. 2: every kept checkpoint of a run gets a validation loss.
    val_loss = load("val_loss")
    rows = val_loss.validation_losses(work / "fig2-ezaudio-s", split="valid", batches=1)
    assert [row["step"] for row in rows] == [2, 4] and all(row["loss"] > 0 for row in rows)
    # A second call finds every step done and trains nothing.
    again = build.build(work, scale, "cpu", {}, ablations=True)
    assert again["steps"]["stage1"] == steps["stage1"]
