"""scripts/world/event_cuts.py: cuts around chosen events of a world's training clips, a
manifest (optionally mixed with another), one-line errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts" / "world"))
import event_cuts

RATE = 16000


def records(world: Path) -> list[dict]:
    lines = (world / "metadata.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line]


def test_cut_span_keeps_margins_within_the_clip_and_a_shortest_length() -> None:
    span = event_cuts.cut_span
    # 0.1 s ahead, 0.3 s past
    assert span(1.0, 2.0, 10 * RATE, RATE, 0.1, 0.3, 0.5) == (int(0.9 * RATE), int(2.3 * RATE))
    # held to the clip's ends
    assert span(0.05, 9.9, 10 * RATE, RATE, 0.1, 0.3, 0.5) == (0, 10 * RATE)
    # a 0.1 s event grows to 0.5 s, forwards, or backwards at the clip's end
    assert span(1.0, 1.1, 10 * RATE, RATE, 0.0, 0.0, 0.5) == (RATE, RATE + RATE // 2)
    assert span(9.9, 10.0, 10 * RATE, RATE, 0.0, 0.0, 0.5) == (10 * RATE - RATE // 2, 10 * RATE)
    # a clip shorter than the shortest cut gives the whole clip
    assert span(0.1, 0.2, RATE // 4, RATE, 0.1, 0.3, 0.5) == (0, RATE // 4)


def test_cuts_hold_the_chosen_events_of_the_training_clips(tiny_world_and_vaes, tmp_path) -> None:
    world = tiny_world_and_vaes["world"]
    train = [r for r in records(world) if r["split"] == "train"]
    chosen = sorted({e["class"] for e in train[0]["events"]})  # some classes, not all
    rows = event_cuts.cut_events(world, tmp_path / "cuts", chosen)
    expected = [(r, k, e) for r in train for k, e in enumerate(r["events"]) if e["class"] in chosen]
    assert len(rows) == len(expected) > 0
    for row, (record, k, event) in zip(rows, expected):
        assert row["id"] == f"{record['id']}_{k}_{event['class']}"
        assert row["caption"] == event["class"] and row["split"] == "train"
        assert Path(row["audio"]).is_absolute()
        cut, rate = sf.read(row["audio"], dtype="float32")
        source, _ = sf.read(world / record["audio"], dtype="float32")
        start, stop = event_cuts.cut_span(event["onset"], event["offset"], len(source), rate,
                                          0.1, 0.3, 0.5)  # fmt: skip
        assert rate == RATE and start <= event["onset"] * rate and stop >= event["offset"] * rate
        # the same samples as the clip at that time, to 16-bit precision
        np.testing.assert_allclose(cut, source[start:stop], atol=1.0 / 32768 + 1e-6)
        # the event is heard in the cut: its span is not silent
        inside = cut[int((event["onset"] * rate) - start) : int(event["offset"] * rate) - start]
        assert np.sqrt(np.mean(inside**2)) > 1e-4
    # test clips give none; a second run writes the same files
    test_ids = {r["id"] for r in records(world) if r["split"] == "test"}
    assert not any(row["id"].rsplit("_", 2)[0] in test_ids for row in rows)
    again = event_cuts.cut_events(world, tmp_path / "again", chosen)
    for first, second in zip(rows, again):
        assert Path(first["audio"]).read_bytes() == Path(second["audio"]).read_bytes()


def test_the_manifest_lists_the_cuts_then_the_mixed_manifest(tiny_world_and_vaes, tmp_path) -> None:
    world = tiny_world_and_vaes["world"]
    classes = ",".join(sorted({e["class"] for r in records(world) for e in r["events"]}))
    out = tmp_path / "cuts"
    assert event_cuts.main([str(world), str(out), "--classes", classes,
                            "--mix-with", str(world / "train.jsonl")]) == 0  # fmt: skip
    rows = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    cuts = [row for row in rows if Path(row["audio"]).parent == (out / "audio").resolve()]
    world_rows = [json.loads(line) for line in (world / "train.jsonl").read_text().splitlines()]
    assert len(cuts) == len(list((out / "audio").glob("*.wav"))) > 0
    assert rows[len(cuts) :] == [
        {**row, "audio": str(world.resolve() / row["audio"])} for row in world_rows
    ]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--classes", "piano,unicorn"], "--classes: unknown ['unicorn']"),
        (["--before", "-1"], "--before must not be negative"),
        (["--mix-with", "missing.jsonl"], "--mix-with missing.jsonl: not found"),
        (["--split", "trian"], "--split trian: the world has test, train"),
    ],
)
def test_bad_options_fail_in_one_line_and_write_nothing(
    tiny_world_and_vaes, tmp_path, capsys, extra, message
) -> None:
    out = tmp_path / "cuts"
    assert event_cuts.main([str(tiny_world_and_vaes["world"]), str(out), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("event_cuts: error: ") and message in err and "\n" not in err
    assert not out.exists()


def test_a_folder_that_is_not_a_world_is_refused(tmp_path, capsys) -> None:
    assert event_cuts.main([str(tmp_path), str(tmp_path / "cuts")]) == 2
    assert "no metadata.jsonl" in capsys.readouterr().err


def test_repeats_parse_and_list_each_chosen_cut_that_many_times() -> None:
    assert event_cuts.parse_repeats("piano=3, bell=2,") == {"piano": 3, "bell": 2}
    assert event_cuts.parse_repeats("") == {}
    for bad, reason in [("piano", "not CLASS=N"), ("piano=0", "at least 1"),
                        ("piano=x", "at least 1"), ("piano=2,piano=3", "named twice")]:  # fmt: skip
        with pytest.raises(ValueError, match=reason):
            event_cuts.parse_repeats(bad)
    rows = [{"id": "a", "caption": "piano"}, {"id": "b", "caption": "bell"},
            {"id": "c", "caption": "piano"}]  # fmt: skip
    ids = [row["id"] for row in event_cuts.repeated(rows, {"piano": 3})]
    assert ids == ["a", "b", "c", "a_r1", "c_r1", "a_r2", "c_r2"]
    assert event_cuts.repeated(rows, {}) == rows


def test_the_manifest_lists_repeated_cuts_with_unique_ids(tiny_world_and_vaes, tmp_path) -> None:
    world = tiny_world_and_vaes["world"]
    train = [r for r in records(world) if r["split"] == "train"]
    chosen = sorted({e["class"] for r in train for e in r["events"]})[:2]
    out = tmp_path / "cuts"
    argv = [str(world), str(out), "--classes", ",".join(chosen), "--repeat", f"{chosen[0]}=3"]
    assert event_cuts.main(argv) == 0
    rows = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    once = event_cuts.cut_events(world, tmp_path / "once", chosen)
    first = [row for row in once if row["caption"] == chosen[0]]
    assert first
    assert len(rows) == len(once) + 2 * len(first) and len({row["id"] for row in rows}) == len(rows)
    for copy in (1, 2):  # the copies point at the same cut files as the first listing
        copies = [row for row in rows if row["id"].endswith(f"_r{copy}")]
        assert [row["id"] for row in copies] == [f"{row['id']}_r{copy}" for row in first]
        assert {Path(row["audio"]).name for row in copies} == {
            Path(row["audio"]).name for row in first
        }


@pytest.mark.parametrize(
    "repeat, message",
    [("piano", "--repeat: 'piano' is not CLASS=N"), ("bell=2", "--repeat: bell not among")],
)
def test_bad_repeats_fail_in_one_line(tiny_world_and_vaes, tmp_path, capsys, repeat, message):
    out = tmp_path / "cuts"
    argv = [str(tiny_world_and_vaes["world"]), str(out), "--classes", "piano", "--repeat", repeat]
    assert event_cuts.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("event_cuts: error: ") and message in err and "\n" not in err
    assert not out.exists()
