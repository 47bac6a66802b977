"""Training manifests in CSV and JSONL (``ezaudio.data.manifest``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ezaudio.data.manifest import ManifestEntry, read_manifest, write_manifest
from ezaudio.errors import InvalidInputError


def entries_in(folder: Path) -> list[ManifestEntry]:
    return [
        ManifestEntry(folder / "audio" / "dog.wav", "A dog barks, twice", "dog", "train"),
        ManifestEntry(folder / "rain.flac", 'Rain on a "tin" roof\nthen thunder', "", "val"),
        ManifestEntry(Path("/elsewhere/bird.wav"), "", "bird-1", "test"),
    ]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_round_trip(tmp_path: Path, suffix: str) -> None:
    entries = entries_in(tmp_path)
    path = write_manifest(tmp_path / f"manifest{suffix}", entries)
    assert read_manifest(path) == entries
    assert entries[1].id == "rain"  # the default id is the path stem
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write left no temp file


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_paths_inside_the_manifest_folder_are_written_relative(tmp_path: Path, suffix: str):
    path = write_manifest(tmp_path / f"m{suffix}", entries_in(tmp_path))
    text = path.read_text(encoding="utf-8")
    assert "audio/dog.wav" in text and str(tmp_path) not in text
    assert "/elsewhere/bird.wav" in text


def test_relative_paths_resolve_against_the_manifest_folder(tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "m.csv").write_text("audio,caption\nclips/a.wav,hello\n/abs/b.wav,\n")
    monkeypatch.chdir(tmp_path)  # the working folder must not matter
    a, b = read_manifest(Path("data/m.csv"))
    assert a.audio == folder / "clips" / "a.wav" and a.audio.is_absolute()
    assert b.audio == Path("/abs/b.wav")
    assert (a.caption, b.caption) == ("hello", "")
    assert (a.id, a.split) == ("a", "train")
    (c,) = read_manifest(folder / "m.csv", audio_root=tmp_path / "root")[:1]
    assert c.audio == tmp_path / "root" / "clips" / "a.wav"


def test_jsonl_fields(tmp_path: Path) -> None:
    lines = [
        {"audio": "a.wav", "caption": "café ☕", "id": 7, "split": "val"},
        {"audio": "b.wav", "caption": None},
        {"audio": "c.wav"},
    ]
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n", encoding="utf-8")
    a, b, c = read_manifest(path)
    assert (a.caption, a.id, a.split) == ("café ☕", "7", "val")
    assert (b.caption, b.id, b.split) == ("", "b", "train")
    assert c.audio == tmp_path / "c.wav"


def test_split_filter(tmp_path: Path) -> None:
    path = write_manifest(tmp_path / "m.csv", entries_in(tmp_path))
    assert [entry.id for entry in read_manifest(path, split="val")] == ["rain"]
    assert read_manifest(path, split="nope") == []


def test_official_ezaudio_meta_csv(tmp_path: Path) -> None:
    # The header and rows of the official src/dataset/meta_example.csv, plus the
    # columns of the full official meta that we ignore.
    path = tmp_path / "meta.csv"
    path.write_text(
        "audio_path,caption,split,fine_tune_data,audio_length\n"
        "audiocaps/audiocaps_48k/train/91139.wav,A woman talks nearby as water pours,train,"
        "True,10.0\n"
        "audiocaps/audiocaps_48k/train/58146.wav,Multiple clanging and clanking sounds,val,"
        "False,9.5\n"
    )
    first, second = read_manifest(path, audio_root=tmp_path / "t2adata_24k")
    assert first.audio == tmp_path / "t2adata_24k/audiocaps/audiocaps_48k/train/91139.wav"
    assert (first.id, first.caption, first.split) == (
        "91139",
        "A woman talks nearby as water pours",
        "train",
    )
    assert (second.id, second.split) == ("58146", "val")


def test_csv_with_a_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_bytes("audio,caption\na.wav,x\n".encode("utf-8-sig"))
    assert read_manifest(path)[0].caption == "x"


def error_of(path: Path) -> str:
    with pytest.raises(InvalidInputError) as info:
        read_manifest(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


def test_missing_audio_column(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("file,caption\na.wav,x\n")
    message = error_of(path)
    assert "line 1" in message and "missing required column 'audio'" in message
    assert "file, caption" in message


def test_missing_audio_field_in_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text('{"audio": "a.wav"}\n{"caption": "no audio"}\n')
    assert "line 2: missing required field 'audio'" in error_of(path)


def test_empty_audio_value(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("audio,caption\na.wav,x\n ,y\n")
    assert "line 3: empty 'audio' path" in error_of(path)


@pytest.mark.parametrize("text", ["", "\n  \n"])
@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_empty_file(tmp_path: Path, text: str, suffix: str) -> None:
    path = tmp_path / f"m{suffix}"
    path.write_text(text)
    assert "the manifest is empty" in error_of(path)


def test_header_only_csv_has_no_entries(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("audio,caption\n")
    assert "no entries" in error_of(path)


def test_duplicate_ids(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    # The second row's id defaults to its stem, "a", which the first row already uses;
    # the quoted caption spans two lines, so the duplicate is on line 4.
    path.write_text('audio,caption,id\nx/a.wav,"two\nlines",\ny/a.wav,z,\n')
    assert "line 4: duplicate id 'a' (first on line 2)" in error_of(path)


def test_duplicate_ids_across_splits_in_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text(
        '{"audio": "a.wav", "id": "k", "split": "train"}\n'
        '{"audio": "b.wav", "id": "k", "split": "val"}\n'
    )
    assert "line 2: duplicate id 'k' (first on line 1)" in error_of(path)


def test_malformed_json_line(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text('{"audio": "a.wav"}\n\n{"audio": "b.wav",\n')
    assert "line 3: malformed JSON" in error_of(path)


def test_json_line_that_is_not_an_object(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text('["a.wav"]\n')
    assert "line 1: expected a JSON object, got list" in error_of(path)


def test_non_text_field(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text('{"audio": "a.wav", "caption": ["x"]}\n')
    assert "line 1: 'caption' must be text, got list" in error_of(path)


def test_too_many_csv_fields(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("audio,caption\na.wav,x,extra\n")
    assert "line 2: 3 fields but the header has 2" in error_of(path)


def test_audio_and_audio_path_together(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("audio,audio_path\na.wav,b.wav\n")
    assert "given more than once" in error_of(path)


def test_missing_file_and_unknown_suffix(tmp_path: Path) -> None:
    assert "manifest not found" in error_of(tmp_path / "nope.csv")
    path = tmp_path / "m.txt"
    path.write_text("audio\na.wav\n")
    assert "must end in one of .csv, .jsonl" in error_of(path)
    with pytest.raises(InvalidInputError, match="must end in"):
        write_manifest(tmp_path / "m.tsv", entries_in(tmp_path))


def test_write_refuses_no_entries_and_keeps_the_old_file(tmp_path: Path) -> None:
    path = write_manifest(tmp_path / "m.jsonl", entries_in(tmp_path))
    before = path.read_bytes()
    with pytest.raises(InvalidInputError, match="no entries"):
        write_manifest(path, [])
    assert path.read_bytes() == before
