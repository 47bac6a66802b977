"""scripts/world/measure.py: scoring functions by hand, and one end-to-end run on the CPU.

The end-to-end run uses a 12-clip world of 4 s clips (6 test clips), the tiny random
model of ``ezaudio init``, a tiny random tagger naming the 19 world classes and a tiny
random small CLAP; 2 DDIM steps, a 2 x 1 sweep on 2 clips and 2 inpainted clips.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "world" / "measure.py"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("world_measure", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


measure = load_script()


# ---- scoring by hand -----------------------------------------------------------------------


def test_adherence_scores_by_hand() -> None:
    truth = [{"dog_bark"}, {"bell", "rain"}, {"siren"}, {"wind", "bird", "drum"}]
    predicted = [{"dog_bark"}, {"bell", "piano"}, set(), {"wind", "bird", "drum", "clock"}]
    s = measure.adherence_scores(predicted, truth)
    # hits 1 + 1 + 0 + 3 = 5; predicted 1 + 2 + 0 + 4 = 7; events 1 + 2 + 1 + 3 = 7
    assert (s["clips"], s["events"], s["predicted"], s["hits"]) == (4, 7, 7, 5)
    assert s["precision_micro"] == pytest.approx(5 / 7)
    assert s["recall_micro"] == pytest.approx(5 / 7)
    assert s["f1_micro"] == pytest.approx(5 / 7)
    # per clip: precision 1, 1/2, 0 (nothing predicted), 3/4; recall 1, 1/2, 0, 1
    assert s["precision_clip_mean"] == pytest.approx((1 + 0.5 + 0 + 0.75) / 4)
    assert s["recall_clip_mean"] == pytest.approx((1 + 0.5 + 0 + 1) / 4)
    assert s["exact_share"] == pytest.approx(1 / 4)
    assert s["contains_all_share"] == pytest.approx(2 / 4)


def test_adherence_scores_edge_cases() -> None:
    nothing = measure.adherence_scores([set(), set()], [{"bell"}, {"rain"}])
    assert nothing["precision_micro"] == 0.0 and nothing["recall_micro"] == 0.0
    assert nothing["f1_micro"] == 0.0 and nothing["exact_share"] == 0.0
    perfect = measure.adherence_scores([{"bell"}, {"rain", "wind"}], [{"bell"}, {"wind", "rain"}])
    assert all(perfect[key] == 1.0 for key in measure.SCORE_KEYS)
    empty = measure.adherence_scores([], [])
    assert empty["clips"] == 0 and all(empty[key] is None for key in measure.SCORE_KEYS)
    with pytest.raises(ValueError):
        measure.adherence_scores([set()], [])
    ratio = measure.ratios({**perfect, "exact_share": 0.5}, {**perfect, "recall_micro": 0.0})
    assert ratio["exact_share"] == 0.5 and ratio["recall_micro"] is None


def test_predicted_sets_threshold_and_per_class() -> None:
    import numpy as np

    probabilities = np.array([[0.9, 0.5, 0.49], [0.1, 0.2, 0.3]])
    sets = measure.predicted_sets(probabilities, ["a", "b", "c"], 0.5)
    assert sets == [{"a", "b"}, set()]
    table = measure.per_class_recall(sets, [{"a", "c"}, {"a"}])
    assert table == {"a": {"events": 2, "recall": 0.5}, "c": {"events": 1, "recall": 0.0}}


def test_edit_region() -> None:
    assert measure.edit_region(1.0, 2.0, 10.0) == (0.75, 2.25)
    assert measure.edit_region(1.0, 9.5, 10.0) == (0.75, 5.75)  # at most 5 s
    assert measure.edit_region(2.0, 2.1, 10.0) == (1.55, 2.55)  # at least 1 s, centred
    assert measure.edit_region(0.0, 0.1, 10.0) == (0.0, 1.0)  # shifted into the clip
    assert measure.edit_region(9.9, 10.0, 10.0) == (9.0, 10.0)
    with pytest.raises(ValueError):
        measure.edit_region(1.0, 2.0, 10.0, min_seconds=3.0, max_seconds=2.0)


def test_snr_db() -> None:
    import numpy as np

    x = np.array([1.0, -1.0, 1.0, -1.0])
    assert measure.snr_db(x, x) == math.inf
    assert measure.snr_db(x, 0.9 * x) == pytest.approx(20.0)
    assert measure.snr_db(np.zeros(3), np.ones(3)) == -math.inf


def test_summarise_runs(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    lines = [{"step": s, "loss": 1.0 / s, "lr": 1e-4, "steps_per_s": 2.0} for s in (1, 2, 4)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    summaries = measure.summarise_runs([run, tmp_path / "missing"])
    assert summaries[str(tmp_path / "missing")]["validation_note"] == "run folder not found"
    summary = summaries[str(run)]
    assert summary["steps"] == 4 and summary["validation"] is None
    assert summary["validation_note"] == "no validation loss logged"
    assert summary["train_loss"]["first"] == 1.0 and summary["train_loss"]["min"] == 0.25
    with open(run / "metrics.jsonl", "a") as handle:
        handle.write(json.dumps({"step": 4, "val_loss": 0.5}) + "\n")
    summary = measure.summarise_runs([run])[str(run)]
    assert summary["validation"] == {"metrics.jsonl:val_loss": [{"step": 4, "value": 0.5}]}


# ---- end to end ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from ezaudio.cli import main as ezaudio_main
    from ezaudio.eval.panns import Cnn14, Cnn14Config
    from ezaudio.eval.small_clap import SmallClap, SmallClapConfig
    from ezaudio.synth import classes, write_world

    folder = tmp_path_factory.mktemp("measure_inputs")
    write_world(folder / "world", clips=12, seed=0, seconds=4.0, splits=(0.5, 0.0, 0.5),
                progress=False)  # fmt: skip
    assert ezaudio_main(["init", "--output", str(folder / "model")]) == 0
    with torch.random.fork_rng():
        torch.manual_seed(0)
        names = tuple(classes())
        tagger = Cnn14(Cnn14Config(widths=(4, 4, 8, 8, 16, 16), embedding_dim=16,
                                   classes_num=len(names), class_names=names))  # fmt: skip
        torch.nn.init.normal_(tagger.fc_audioset.bias, 0.0, 1.0)  # some tags on, some off
        tagger.save_pretrained(folder / "tagger")
        clap = SmallClap(SmallClapConfig(widths=(4, 4, 8, 8, 16, 16), audio_dim=16,
                                         embed_dim=16, text_hidden=16))  # fmt: skip
        clap.save_pretrained(folder / "clap")
    return {name: folder / name for name in ("world", "model", "tagger", "clap")}


@pytest.fixture(scope="module")
def run(inputs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("measure_out") / "out"
    argv = [
        "--model", inputs["model"], "--world", inputs["world"], "--tagger", inputs["tagger"],
        "--clap", inputs["clap"], "--out", out, "--clips", "4", "--steps", "2",
        "--batch-size", "4", "--boundary", "0.5", "--sweep-clips", "2",
        "--guidance-scales", "1", "3", "--rescales", "0.5", "--edit-clips", "2",
        "--device", "cpu", "--quiet",
    ]  # fmt: skip
    assert measure.main([str(arg) for arg in argv]) == 0
    return {"out": out, "results": json.loads((out / "results.json").read_text())}


def in_unit(value: object) -> bool:
    return isinstance(value, float) and 0.0 <= value <= 1.0


def test_files_and_header(run: dict) -> None:
    out, results = run["out"], run["results"]
    for name in ("results.json", "results.md", "sweep.png", "protocol/results.json"):
        assert (out / name).is_file(), name
    assert len(list((out / "protocol" / "audio").glob("*.wav"))) == 4
    assert len(list((out / "paraphrase" / "audio").glob("*.wav"))) == 4
    assert len(list((out / "edit" / "audio").glob("*.wav"))) == 2
    assert results["world"]["measured_clips"] == 4 and results["world"]["test_clips"] == 6
    assert results["world"]["seconds"] == 4.0
    assert len(results["tagger"]["class_names"]) == 19
    assert results["device"] == "cpu" and results["machine"]["cpu"]
    assert results["failed"] == []
    for section in ("adherence", "protocol", "sweep", "edit"):
        assert results[section]["seconds"] > 0 and results[section]["device"] == "cpu"
        assert results[section]["machine"]["cpu"]
    table = (out / "results.md").read_text()
    for heading in ("Prompt adherence", "FD, KL, IS, CLAP", "Guidance sweep", "Inpainting"):
        assert heading in table


def test_adherence_numbers(run: dict) -> None:
    adherence = run["results"]["adherence"]
    assert adherence["sampler"]["steps"] == 2 and adherence["sampler"]["seconds"] == 4.0
    assert adherence["threshold"] == 0.5
    subsets = adherence["subsets"]
    assert subsets["all_template"]["model"]["clips"] == 4
    assert subsets["single_template"]["model"]["clips"] == 1  # one one-event clip in the 4
    for name in measure.SUBSETS:
        for side in ("model", "ceiling"):
            for key in measure.SCORE_KEYS:
                assert in_unit(subsets[name][side][key]), (name, side, key)
        for key, value in subsets[name]["ratio"].items():
            assert value is None or value >= 0.0, (name, key)
    # The ceiling is the real clips': identical for template and paraphrase prompts.
    assert subsets["all_template"]["ceiling"] == subsets["all_paraphrase"]["ceiling"]
    clips = adherence["clips"]
    assert [clip["seed"] for clip in clips] == [0, 1, 2, 3]
    assert all(clip["true"] for clip in clips)
    acceptance = adherence["acceptance"]
    assert acceptance["subset"] == "single_template" and acceptance["target"] == 0.8
    assert set(adherence["per_class"]) == {c for clip in clips for c in clip["true"]}


def test_protocol_and_sweep_numbers(run: dict) -> None:
    results = run["results"]
    metrics = results["protocol"]["metrics"]
    assert metrics["clips"] == 4 and metrics["fd"] >= 0.0
    for key in ("kl", "is", "clap", "clap_reference"):
        assert math.isfinite(metrics[key]), key
    assert -1.0 <= metrics["clap"] <= 1.0 and metrics["is"] >= 1.0 - 1e-6
    sweep = results["sweep"]
    assert sweep["plot"] == "sweep.png" and sweep["clips"] == 2
    assert [(c["guidance_scale"], c["guidance_rescale"]) for c in sweep["cells"]] == [
        (1.0, 0.5), (3.0, 0.5),
    ]  # fmt: skip
    assert all(c["fd"] >= 0.0 and math.isfinite(c["clap"]) for c in sweep["cells"])


def test_edit_numbers(run: dict) -> None:
    edit = run["results"]["edit"]
    assert edit["clips"] == 2 and edit["eligible"] >= 2
    for condition in ("inpainted", "real", "silence", "other"):
        found = edit["found"][condition]
        assert found["clips"] == 2 and in_unit(found["found_share"]), condition
        assert in_unit(found["mean_probability"]), condition
    assert edit["outside_max_abs_diff"] == 0.0  # beyond the context band nothing changes
    assert math.isfinite(edit["kept_snr_db"]["mean"])
    assert math.isfinite(edit["context_snr_db"]["mean"])
    for row in edit["per_clip"]:
        start, end = row["region"]
        assert 1.0 - 1e-9 <= end - start <= 5.0 and 0.0 <= start < end <= 4.0
        assert row["other"] != row["id"]
    assert edit["settings"]["steps"] == 2


def test_rerun_resumes(inputs: dict[str, Path], run: dict) -> None:
    """A second run with the same settings regenerates nothing and gives the same numbers."""
    out = run["out"]
    argv = [
        "--model", inputs["model"], "--world", inputs["world"], "--tagger", inputs["tagger"],
        "--clap", "none", "--out", out, "--clips", "4", "--steps", "2", "--batch-size", "4",
        "--boundary", "0.5",
        "--edit-clips", "2", "--device", "cpu", "--quiet", "--skip", "sweep",
    ]  # fmt: skip
    assert measure.main([str(arg) for arg in argv]) == 0
    again = json.loads((out / "results.json").read_text())
    assert again["protocol"]["generation"]["generated"] == 0
    assert again["protocol"]["metrics"]["fd"] == pytest.approx(
        run["results"]["protocol"]["metrics"]["fd"]
    )
    assert again["protocol"]["metrics"]["clap"] is None and "sweep" not in again
    assert again["adherence"]["subsets"] == run["results"]["adherence"]["subsets"]
    assert again["edit"]["edit_seconds"] == 0.0
    assert again["edit"]["found"] == run["results"]["edit"]["found"]


def test_bad_arguments_are_one_line_errors(
    inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--model", inputs["model"], "--world", inputs["world"], "--tagger", inputs["tagger"],
            "--clap", "none", "--out", tmp_path / "o", "--clips", "1"]  # fmt: skip
    assert measure.main([str(arg) for arg in argv]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("measure: error: ")


def _tiny_tagger(seed: int, names: tuple[str, ...]):
    from ezaudio.eval.panns import Cnn14, Cnn14Config

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        tagger = Cnn14(Cnn14Config(widths=(4, 4, 8, 8, 16, 16), embedding_dim=16,
                                   classes_num=len(names), class_names=names))  # fmt: skip
        torch.nn.init.normal_(tagger.fc_audioset.bias, 0.0, 1.0)
    return tagger.eval()


def test_tag_waveforms_of_an_ensemble_is_the_mean() -> None:
    import numpy as np

    names = ("a", "b", "c")
    first, second = _tiny_tagger(1, names), _tiny_tagger(2, names)
    rng = np.random.default_rng(0)
    waves = [rng.standard_normal(16000).astype(np.float32) * 0.1 for _ in range(3)]
    one = measure.tag_waveforms(first, waves, 16000, 2)
    two = measure.tag_waveforms(second, waves, 16000, 2)
    assert one.shape == (3, 3) and not np.allclose(one, two)
    both = measure.tag_waveforms((first, second), waves, 16000, 2)
    np.testing.assert_allclose(both, (one + two) / 2, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(measure.tag_waveforms([first], waves, 16000, 2), one)


def test_tagger_ensemble_end_to_end(
    inputs: dict[str, Path], run: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two copies of one tagger score as that tagger; a tagger of other classes is refused."""
    out = run["out"]
    common = ["--model", inputs["model"], "--world", inputs["world"], "--clap", "none",
              "--clips", "4", "--steps", "2", "--batch-size", "4", "--device", "cpu",
              "--quiet"]  # fmt: skip
    argv = [*common, "--tagger", inputs["tagger"], inputs["tagger"], "--out", out,
            "--skip", "sweep", "edit"]  # fmt: skip
    assert measure.main([str(arg) for arg in argv]) == 0
    again = json.loads((out / "results.json").read_text())
    assert [e["folder"] for e in again["tagger"]["ensemble"]] == [str(inputs["tagger"])] * 2
    assert again["adherence"]["subsets"] == run["results"]["adherence"]["subsets"]
    capsys.readouterr()
    _tiny_tagger(3, ("a", "b")).save_pretrained(tmp_path / "other")
    argv = [*common, "--tagger", inputs["tagger"], tmp_path / "other", "--out", tmp_path / "o"]
    assert measure.main([str(arg) for arg in argv]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "names other classes" in err[0]
