"""Short clips cut around the events of chosen classes in a synth world's training clips: data
that lets a waveform VAE's decoder hear those events close up, many times per epoch
(docs/results.md, "Event cuts for the decoder").

Usage (from the repository root; the package need not be installed)::

    PYTHONPATH=src python scripts/world/event_cuts.py WORLD OUT_DIR \\
        [--classes piano,plucked_string,...] [--before 0.1] [--after 0.3] \\
        [--min-seconds 0.5] [--split train] [--repeat piano=3,...] [--mix-with MANIFEST]

Each event of a chosen class (any role, background included) gives one cut, from ``before``
seconds ahead of its onset to ``after`` seconds past its offset (the tail keeps its decay and
reverb), held to the clip's ends and lengthened to ``min-seconds`` where it is shorter. The cut
keeps whatever else sounds at that time in the scene. Writes
``OUT_DIR/audio/<clip>_<k>_<class>.wav`` (16-bit PCM) and ``OUT_DIR/train.jsonl``: the cuts
first, then, with ``--mix-with``, every entry of that manifest (paths made absolute). With
``--repeat CLASS=N``, the manifest lists each cut of CLASS N times (the copies after the first
with ids ending ``_r1``, ``_r2``, ...), so that an epoch holds those events N times as often.
The cuts depend on the world and the options alone.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tone_clips import absolute_rows

#: The classes whose reconstructions and generations the taggers missed most often with the
#: decoder bundled before the event cuts (docs/results.md); the bundled decoder learnt from
#: cuts of these.
WEAK_CLASSES = ("piano", "plucked_string", "siren", "alarm", "car_horn", "knocking", "bell", "bird")


def cut_span(
    onset_s: float, offset_s: float, samples: int, rate: int,
    before_s: float, after_s: float, min_seconds: float,
) -> tuple[int, int]:  # fmt: skip
    """The cut's first and one-past-last sample for an event from ``onset_s`` to ``offset_s``
    in a clip of ``samples`` samples: ``before_s`` ahead, ``after_s`` past, within the clip,
    at least ``min_seconds`` long where the clip allows."""
    start = max(0, int((onset_s - before_s) * rate))
    stop = min(samples, int((offset_s + after_s) * rate))
    shortest = round(min_seconds * rate)
    if stop - start < shortest:
        stop = min(samples, start + shortest)
        start = max(0, stop - shortest)
    return start, stop


def cut_events(
    world: Path, out: Path, chosen: Sequence[str], split: str = "train",
    before_s: float = 0.1, after_s: float = 0.3, min_seconds: float = 0.5,
) -> list[dict[str, Any]]:  # fmt: skip
    """Write the cuts of ``chosen`` classes' events in ``world``'s ``split`` clips to
    ``out/audio``; returns their manifest rows (absolute audio paths; the caption is the event's
    class), in clip order."""
    from ezaudio.synth.world import read_metadata

    wanted = set(chosen)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    rows = []
    for record in read_metadata(world):
        if record.get("split") != split:
            continue
        events = [(k, e) for k, e in enumerate(record["events"]) if e["class"] in wanted]
        if not events:
            continue
        wave, rate = sf.read(world / record["audio"], dtype="float32")  # [S] or [S, C]
        for k, event in events:
            start, stop = cut_span(float(event["onset"]), float(event["offset"]), len(wave),
                                   rate, before_s, after_s, min_seconds)  # fmt: skip
            name = f"{record['id']}_{k}_{event['class']}"
            path = (out / "audio" / f"{name}.wav").resolve()
            sf.write(path, wave[start:stop], rate, subtype="PCM_16")
            rows.append(
                {"audio": str(path), "caption": event["class"], "id": name, "split": "train"}
            )
    return rows


def parse_repeats(text: str) -> dict[str, int]:
    """``"piano=3,bell=2"`` -> ``{"piano": 3, "bell": 2}``; ``ValueError`` with a one-line
    reason for anything else (an entry without ``=``, a count that is not a whole number of
    at least 1, a class named twice)."""
    repeats: dict[str, int] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, sep, count = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ValueError(f"{item!r} is not CLASS=N")
        if not count.strip().isdigit() or int(count) < 1:
            raise ValueError(f"{item!r}: N must be a whole number of at least 1")
        if name in repeats:
            raise ValueError(f"{name} is named twice")
        repeats[name] = int(count)
    return repeats


def repeated(rows: Sequence[dict[str, Any]], repeats: dict[str, int]) -> list[dict[str, Any]]:
    """``rows`` listed once, then again for each further copy that ``repeats`` (class ->
    copies, 1 when not named) asks for: copy r of a row (r >= 1) has its id ending ``_r<r>``."""
    copies = max([1, *repeats.values()])
    out = list(rows)
    for r in range(1, copies):
        out += [
            {**row, "id": f"{row['id']}_r{r}"} for row in rows if repeats.get(row["caption"], 1) > r
        ]
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("world", type=Path, help="a folder written by `ezaudio data synth`")
    parser.add_argument("out", type=Path, help="folder to write (audio/ and train.jsonl)")
    parser.add_argument(
        "--classes",
        default=",".join(WEAK_CLASSES),
        help="comma-separated event classes to cut (default: %(default)s)",
    )
    parser.add_argument("--before", type=float, default=0.1, help="seconds kept ahead of onsets")
    parser.add_argument("--after", type=float, default=0.3, help="seconds kept past offsets")
    parser.add_argument("--min-seconds", type=float, default=0.5, help="shortest cut, seconds")
    parser.add_argument("--split", default="train", help="the world's split to cut from")
    parser.add_argument(
        "--repeat",
        default="",
        help="CLASS=N,...: list each cut of CLASS N times in the manifest (default: once each)",
    )
    parser.add_argument("--mix-with", type=Path, help="a manifest whose entries are listed too")
    args = parser.parse_args(argv)

    from ezaudio.synth.world import classes, read_metadata

    chosen = [name.strip() for name in args.classes.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(classes()))
    problems = []
    if not (args.world / "metadata.jsonl").is_file():
        problems.append(f"{args.world}: no metadata.jsonl (is it a synth world?)")
    if unknown or not chosen:
        problems.append(f"--classes: unknown {unknown}; known: {', '.join(classes())}")
    problems += [
        f"--{name} must not be negative, got {value}"
        for name, value in (
            ("before", args.before),
            ("after", args.after),
            ("min-seconds", args.min_seconds),
        )
        if not value >= 0
    ]
    repeats: dict[str, int] = {}
    try:
        repeats = parse_repeats(args.repeat)
    except ValueError as error:
        problems.append(f"--repeat: {error}")
    else:
        if not set(repeats) <= set(chosen):
            strays = sorted(set(repeats) - set(chosen))
            problems.append(f"--repeat: {', '.join(strays)} not among --classes")
    if args.mix_with is not None and not args.mix_with.is_file():
        problems.append(f"--mix-with {args.mix_with}: not found")
    if not problems:
        splits = sorted({str(record.get("split")) for record in read_metadata(args.world)})
        if args.split not in splits:
            problems.append(f"--split {args.split}: the world has {', '.join(splits)}")
    if problems:
        print(f"event_cuts: error: {problems[0]}", file=sys.stderr)
        return 2
    rows = cut_events(args.world, args.out, chosen, args.split, args.before, args.after,
                      args.min_seconds)  # fmt: skip
    counts = Counter(row["caption"] for row in rows)
    mixed = absolute_rows(args.mix_with) if args.mix_with is not None else []
    manifest = args.out / "train.jsonl"
    listed = repeated(rows, repeats)
    text = "".join(json.dumps(row) + "\n" for row in [*listed, *mixed])
    partial = manifest.with_suffix(".jsonl.partial")  # written last, renamed: present = complete
    partial.write_text(text, encoding="utf-8")
    partial.replace(manifest)
    per_class = ", ".join(
        f"{name} {counts[name]}" + (f" x{repeats[name]}" if repeats.get(name, 1) > 1 else "")
        for name in chosen
    )
    print(f"wrote {len(rows)} event cuts ({per_class}) and {manifest} ({len(listed) + len(mixed)} "
          "entries)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
