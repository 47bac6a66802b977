"""CLAP filtering of a manifest (``ezaudio.data.clap_filter``) with a tiny random CLAP."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from ezaudio.cli import main
from ezaudio.data.audio import read_audio
from ezaudio.data.clap_filter import check_threshold, clap_filter, read_scores
from ezaudio.data.manifest import read_manifest
from ezaudio.errors import InvalidInputError

GOOD = 8
BAD = {"garbage": "unreadable", "silent": "silent", "missing": "missing"}


def write_tiny_clap(folder: Path) -> Path:
    """A randomly initialised ClapModel (1 M parameters) with the offline MiniLM tokenizer."""
    from transformers import AutoTokenizer, ClapConfig, ClapFeatureExtractor, ClapModel

    from ezaudio.text.encoder import minilm_folder

    tokenizer = AutoTokenizer.from_pretrained(minilm_folder())
    config = ClapConfig(
        text_config={
            "vocab_size": tokenizer.vocab_size, "hidden_size": 32, "num_hidden_layers": 1,
            "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 80,
            "pad_token_id": tokenizer.pad_token_id,
        },
        audio_config={"patch_embeds_hidden_size": 8, "hidden_size": 64, "depths": [1, 1, 1, 1],
                      "num_attention_heads": [1, 1, 1, 1]},
        projection_dim=16,
    )  # fmt: skip
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = ClapModel(config)
    model.save_pretrained(folder)
    ClapFeatureExtractor().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def write_world(folder: Path) -> Path:
    """Eight clips (tones and noise, 16 and 44.1 kHz, mono and stereo), three bad files."""
    audio = folder / "audio"
    audio.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for index in range(GOOD):
        rate = 44100 if index % 3 == 0 else 16000
        t = np.arange(int(rate * (0.3 + 0.1 * index))) / rate
        wave = 0.4 * np.sin(2 * np.pi * (110 * (index + 1)) * t) * (index % 2)
        wave = wave + (0.05 + 0.1 * (index % 4)) * rng.standard_normal(len(t))
        if index == 5:
            wave = np.stack([wave, rng.standard_normal(len(t)) * 0.2], axis=1)
        sf.write(audio / f"clip{index}.wav", wave.astype(np.float32), rate)
        split = "val" if index == 7 else "train"
        caption = ["a dog barks", "rain on a roof", "a bell rings twice", "wind", "engine noise",
                   "birds sing at dawn", "", "a man speaks"][index]  # fmt: skip
        rows.append({"audio": f"audio/clip{index}.wav", "caption": caption, "split": split})
    (audio / "garbage.wav").write_bytes(b"no audio here" * 30)
    sf.write(audio / "silent.wav", np.zeros(8000, np.float32), 16000)
    for name in BAD:
        rows.insert(2 * len(rows) // 3, {"audio": f"audio/{name}.wav", "caption": name})
    (folder / "pairs.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return folder


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = write_world(tmp_path_factory.mktemp("clap_world"))
    write_tiny_clap(folder / "clap")
    return folder


@pytest.fixture(scope="module")
def scored(world: Path) -> Path:
    """Every pair scored once through the CLI (threshold -1 keeps all); the report folder."""
    report = world / "all.report"
    code = main(["data", "clap-filter", str(world / "pairs.jsonl"), "--clap", str(world / "clap"),
                 "--out", str(world / "all.jsonl"), "--threshold", "-1", "--report", str(report),
                 "--batch-size", "3", "--device", "cpu", "--quiet"])  # fmt: skip
    assert code == 0
    return report


def test_scores_are_the_clap_cosines_of_each_pair(world, scored):
    from ezaudio.eval.clap import ClapScorer

    scores, skipped = read_scores(scored / "clap_scores.csv")
    assert skipped == BAD
    scorer = ClapScorer.from_pretrained(world / "clap", device="cpu")
    for entry in read_manifest(world / "pairs.jsonl"):
        if entry.id in BAD:
            continue
        audio, rate = read_audio(entry.audio)
        expected = scorer.score_pairs([audio], rate, [entry.caption])[0]
        assert scores[entry.id] == pytest.approx(expected, abs=1e-5)
    assert len(set(scores.values())) == GOOD  # distinct scores: the thresholds below bite


def test_the_output_holds_exactly_the_pairs_at_or_above_the_threshold(world, scored, tmp_path):
    scores, _ = read_scores(scored / "clap_scores.csv")
    entries = read_manifest(world / "pairs.jsonl")
    ranked = sorted(scores.values())
    threshold = ranked[3]  # a pair scores exactly the threshold: kept
    out = tmp_path / "kept.csv"
    # Re-threshold from the stored scores (no CLAP model is loaded) ...
    report = clap_filter(world / "pairs.jsonl", out, clap="unused", threshold=threshold,
                         scores=scored / "clap_scores.csv", progress=False)  # fmt: skip
    expected = [e for e in entries if e.id in scores and scores[e.id] >= threshold]
    assert len(expected) == GOOD - 3
    assert read_manifest(out) == expected  # same order, paths, captions, ids and splits
    assert report["counts"] == {"pairs": GOOD + 3, "scored": GOOD, "kept": GOOD - 3,
                                "dropped": 3, "skipped": 3}  # fmt: skip
    assert report["model"] == str(world / "clap")  # taken over from the scoring run
    # ... and scoring afresh (other batches: scores equal up to float rounding) with a
    # threshold between the same two scores keeps the same pairs, as its own scores say.
    fresh = tmp_path / "fresh.jsonl"
    between = (ranked[2] + ranked[3]) / 2
    clap_filter(world / "pairs.jsonl", fresh, clap=world / "clap", threshold=between,
                batch_size=4, device="cpu", progress=False)  # fmt: skip
    assert read_manifest(fresh) == expected
    fresh_scores, _ = read_scores(tmp_path / "fresh.clap-report" / "clap_scores.csv")
    assert [e for e in entries if fresh_scores.get(e.id, -2) >= between] == expected
    with open(tmp_path / "fresh.clap-report" / "clap_scores.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["id"] for r in rows] == [e.id for e in entries]
    assert {r["id"] for r in rows if r["kept"] == "1"} == {e.id for e in expected}


def test_the_report_has_counts_histogram_and_model(world, scored, tmp_path, monkeypatch):
    report = json.loads((scored / "clap_report.json").read_text())
    assert report["threshold"] == -1.0 and report["model"] == str(world / "clap")
    assert report["counts"] == {"pairs": GOOD + 3, "scored": GOOD, "kept": GOOD, "dropped": 0,
                                "skipped": 3}  # fmt: skip
    assert report["skipped"] == {"missing": 1, "silent": 1, "unreadable": 1}
    histogram = report["histogram"]
    assert len(histogram["bin_edges"]) == 41 and sum(histogram["counts"]) == GOOD
    assert histogram["bin_edges"][0] == -1 and histogram["bin_edges"][-1] == 1
    assert report["model_info"]["fingerprint"] and report["scores_csv"] == "clap_scores.csv"
    assert -1 <= report["scores"]["min"] <= report["scores"]["median"] <= report["scores"]["max"]
    try:
        import matplotlib  # noqa: F401

        assert report["png"] == "clap_histogram.png" and (scored / report["png"]).stat().st_size
    except ImportError:
        assert report["png"] is None and "matplotlib" in report["png_note"]
    # Without matplotlib the PNG is skipped and the JSON says so.
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    again = clap_filter(world / "pairs.jsonl", tmp_path / "k.jsonl", threshold=-1,
                        report_dir=tmp_path / "r", scores=scored / "clap_scores.csv")  # fmt: skip
    assert again["png"] is None and "matplotlib" in again["png_note"]
    assert not (tmp_path / "r" / "clap_histogram.png").exists()
    assert json.loads((tmp_path / "r" / "clap_report.json").read_text())["png"] is None


def test_thresholds_and_outputs_are_checked(world, scored, tmp_path, capsys):
    for bad in (1.5, -1.01, float("nan"), "0.4", True):
        with pytest.raises(InvalidInputError, match="threshold"):
            check_threshold(bad)
    assert check_threshold(0.4) == 0.4
    pairs = str(world / "pairs.jsonl")
    scores = str(scored / "clap_scores.csv")
    assert main(["data", "clap-filter", pairs, "--out", str(tmp_path / "o.jsonl"),
                 "--threshold", "2", "--scores", scores]) == 1  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert "threshold must be in [-1, 1]" in err and "\n" not in err
    # Nothing reaches the threshold: a one-line error, the report written, no manifest.
    out = tmp_path / "none.jsonl"
    assert main(["data", "clap-filter", pairs, "--out", str(out), "--threshold", "1",
                 "--scores", scores, "--report", str(tmp_path / "rep")]) == 1  # fmt: skip
    assert "no pair reaches CLAP score 1.0" in capsys.readouterr().err
    assert not out.exists() and (tmp_path / "rep" / "clap_scores.csv").is_file()
    with pytest.raises(InvalidInputError, match="overwrite the input"):
        clap_filter(pairs, pairs, scores=scores)
    with pytest.raises(InvalidInputError, match=r"\.csv or \.jsonl"):
        clap_filter(pairs, tmp_path / "out.txt", scores=scores)
    with pytest.raises(InvalidInputError, match="batch size"):
        clap_filter(pairs, tmp_path / "o.jsonl", batch_size=0, scores=scores)
    with pytest.raises(SystemExit):
        main(["data", "clap-filter", pairs])
    assert "--out" in capsys.readouterr().err
