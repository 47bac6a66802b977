"""scripts/world/vae_spectrograms.py: a figure from a tiny world and tiny random VAEs, and
its one-line errors."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts" / "world"))
import vae_spectrograms as spectrograms


@pytest.fixture(scope="module")
def inputs(tiny_world_and_vaes) -> dict[str, Path]:
    return tiny_world_and_vaes


def one_event_classes(world_folder: Path) -> list[str]:
    world = spectrograms.load_world(world_folder)
    return sorted({c.record["events"][0]["class"] for c in world.clips
                   if len(c.record["events"]) == 1})  # fmt: skip


def test_first_clips_follow_the_order_asked(inputs) -> None:
    world = spectrograms.load_world(inputs["world"])
    names = one_event_classes(inputs["world"])[:2][::-1]
    chosen = spectrograms.first_clips(world, names)
    assert [c.record["events"][0]["class"] for c in chosen] == names
    for clip in chosen:
        assert len(clip.record["events"]) == 1


def test_a_figure_has_a_row_per_class(inputs, tmp_path, capsys) -> None:
    names = one_event_classes(inputs["world"])[:2]
    out = tmp_path / "fig" / "spec.png"
    argv = [inputs["world"], "--vae", inputs["vae16000"], "--vae", inputs["vae16000"],
            "--labels", "a,b", "--classes", ",".join(names), "--out", out]  # fmt: skip
    assert spectrograms.main([str(a) for a in argv]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    width, height = Image.open(out).size
    assert width > height  # 2 rows x 3 columns (real + two VAEs)
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--classes", "no_such_class"], "no one-event test clip of no_such_class"),
        (["--classes", " , "], "names no class"),
        (["--classes", "CLASS", "--labels", "a,b"], "2 names for 1 VAEs"),
        (["--classes", "CLASS", "--vae8000"], "runs at 8000 Hz"),
    ],
)
def test_bad_input_is_one_line(inputs, tmp_path, capsys, extra, message) -> None:
    name = one_event_classes(inputs["world"])[0]
    vae = inputs["vae8000"] if "--vae8000" in extra else inputs["vae16000"]
    extra = [name if a == "CLASS" else a for a in extra if a != "--vae8000"]
    out = tmp_path / "spec.png"
    argv = [inputs["world"], "--vae", vae, "--out", out, *extra]
    assert spectrograms.main([str(a) for a in argv]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1
    assert not out.exists()
