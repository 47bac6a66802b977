"""scripts/world/swap_decoder.py: a model re-packed with a fine-tuned decoder."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ezaudio.cli import main as ezaudio_main
from ezaudio.nn.oobleck import WaveformVAE

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "world" / "swap_decoder.py"
spec = importlib.util.spec_from_file_location("world_swap_decoder", SCRIPT)
swap = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = swap
spec.loader.exec_module(swap)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("swap") / "model"
    assert ezaudio_main(["init", "--output", str(folder), "--seed", "0"]) == 0
    return folder


def test_the_new_decoder_is_packed_with_the_model(model: Path, tmp_path: Path, capsys) -> None:
    vae = WaveformVAE.from_pretrained(model / "vae")
    with torch.no_grad():
        for parameter in vae.decoder.parameters():
            parameter.add_(0.01)
    vae.save_pretrained(tmp_path / "tuned")
    out = tmp_path / "out"
    assert swap.main([str(model), str(tmp_path / "tuned"), "--out", str(out)]) == 0
    packed, tuned = load_file(out / "vae" / "model.safetensors"), vae.state_dict()
    assert {v.dtype for v in packed.values()} == {torch.float16}
    assert all(torch.equal(packed[k], tuned[k].half()) for k in packed)
    dit_before = load_file(model / "dit" / "model.safetensors")
    dit_after = load_file(out / "dit" / "model.safetensors")
    assert all(torch.equal(dit_after[k], dit_before[k].half()) for k in dit_before)
    assert (out / "ezaudio.json").read_text() == (model / "ezaudio.json").read_text()


def test_a_vae_with_another_encoder_is_refused(model: Path, tmp_path: Path, capsys) -> None:
    other = tmp_path / "other"
    assert ezaudio_main(["init", "--output", str(other), "--seed", "1"]) == 0
    capsys.readouterr()
    out = tmp_path / "out"
    assert swap.main([str(model), str(other), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert "encoder differs" in err and "\n" not in err
    assert not out.exists()
