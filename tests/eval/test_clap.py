"""ClapScorer on a tiny random ClapModel: shapes, deterministic 10 s crop, padding, loading."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch

from ezaudio.errors import CheckpointError, InvalidInputError
from ezaudio.eval.clap import ClapScorer
from ezaudio.eval.metrics import clap_score

DIM = 16


def save_tiny_clap(folder: Path, fusion: bool = False, seed: int = 0) -> Path:
    """A tiny random ClapModel + LAION-style feature extractor + the offline MiniLM tokenizer."""
    from transformers import AutoTokenizer, ClapConfig, ClapFeatureExtractor, ClapModel

    from ezaudio.text.encoder import minilm_folder

    tokenizer = AutoTokenizer.from_pretrained(str(minilm_folder()))
    config = ClapConfig(
        text_config={
            "vocab_size": len(tokenizer), "hidden_size": 32, "num_hidden_layers": 1,
            "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 130,
            "pad_token_id": tokenizer.pad_token_id,
        },
        audio_config={
            "depths": [1, 1], "num_attention_heads": [1, 2], "patch_embeds_hidden_size": 16,
            "hidden_size": 32, "enable_fusion": fusion,
            **({"fusion_type": "aff_2d"} if fusion else {}),
        },
        projection_dim=DIM,
    )  # fmt: skip
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = ClapModel(config)
    model.save_pretrained(folder)
    truncation = "fusion" if fusion else "rand_trunc"
    ClapFeatureExtractor(truncation=truncation, padding="repeatpad").save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def noise(seconds: float, rate: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal(round(seconds * rate))).astype(np.float32)


@pytest.fixture(scope="module")
def clap_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_clap(tmp_path_factory.mktemp("clap") / "tiny")


@pytest.fixture(scope="module")
def scorer(clap_folder: Path) -> ClapScorer:
    return ClapScorer.from_pretrained(clap_folder, device="cpu")


def test_embedding_shapes_and_unit_rows(scorer: ClapScorer) -> None:
    clips = [noise(1.0, 16000, 0), noise(2.5, 44100, 1), noise(0.2, 16000, 2)]
    audio = scorer.audio_embeddings(clips[:1] + clips[2:], 16000)
    assert audio.shape == (2, DIM) and audio.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(audio, axis=1), 1.0, atol=1e-5)
    text = scorer.text_embeddings(["a dog barks", "rain on a roof", ""])
    assert text.shape == (3, DIM)
    np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1.0, atol=1e-5)
    assert scorer.audio_embeddings([], 16000).shape == (0, DIM)
    assert scorer.sample_rate == 48000 and scorer.crop_samples == 480000
    assert scorer.crop_seconds == 10.0


def test_two_calls_give_the_same_embeddings(scorer: ClapScorer) -> None:
    clips = [noise(12.0, 48000, 3), noise(4.0, 48000, 4)]
    first = scorer.audio_embeddings(clips, 48000)
    second = scorer.audio_embeddings(clips, 48000)
    np.testing.assert_array_equal(first, second)
    # batch-independent: each clip alone gives its row
    alone = scorer.audio_embeddings(clips[1:], 48000)
    np.testing.assert_allclose(alone[0], first[1], atol=1e-5)


@pytest.mark.parametrize("rate", [48000, 16000])
def test_long_clip_is_its_first_ten_seconds(scorer: ClapScorer, rate: int) -> None:
    long = noise(12.0, rate, 5)
    head = long[: 10 * rate]
    np.testing.assert_array_equal(
        scorer.audio_embeddings([long], rate), scorer.audio_embeddings([head], rate)
    )


def test_short_clip_is_repeat_padded(scorer: ClapScorer) -> None:
    clip = noise(3.0, 48000, 6)  # 144000 samples: tiled 3 times, then zeros to 480000
    padded = np.concatenate([clip, clip, clip, np.zeros(480000 - 3 * 144000, np.float32)])
    np.testing.assert_allclose(
        scorer.audio_embeddings([clip], 48000), scorer.audio_embeddings([padded], 48000),
        atol=1e-6,
    )  # fmt: skip


def test_score_pairs_is_the_cosine_of_the_embeddings(scorer: ClapScorer) -> None:
    clips = [noise(1.0, 16000, 7), noise(1.5, 16000, 8), noise(0.7, 16000, 9)]
    texts = ["a dog barks", "a car passes by", "birds sing"]
    scores = scorer.score_pairs(clips, 16000, texts)
    audio = scorer.audio_embeddings(clips, 16000).astype(np.float64)
    text = scorer.text_embeddings(texts).astype(np.float64)
    expected = (audio * text).sum(1) / (
        np.linalg.norm(audio, axis=1) * np.linalg.norm(text, axis=1)
    )
    assert scores.shape == (3,)
    np.testing.assert_allclose(scores, expected, atol=1e-6)
    assert abs(clap_score(text, audio) - float(scores.mean())) < 1e-6


def test_fused_model_is_deterministic(tmp_path: Path) -> None:
    """HF's fusion mode marks a random clip 'longer'; the scorer sets every flag to False."""
    fused = ClapScorer.from_pretrained(save_tiny_clap(tmp_path / "fused", fusion=True), "cpu")
    assert fused.fused and fused.truncation == "fusion"
    clips = [noise(2.0, 48000, 10), noise(3.0, 48000, 11), noise(11.0, 48000, 12)]
    first = fused.audio_embeddings(clips, 48000)
    for _ in range(2):
        np.testing.assert_array_equal(fused.audio_embeddings(clips, 48000), first)


def test_bad_input(scorer: ClapScorer) -> None:
    clip = noise(1.0, 16000, 0)
    with pytest.raises(InvalidInputError, match="sample_rate"):
        scorer.audio_embeddings([clip], 0)
    with pytest.raises(InvalidInputError, match=r"waveforms\[1\]"):
        scorer.audio_embeddings([clip, np.zeros((2, 100), np.float32)], 16000)
    with pytest.raises(InvalidInputError, match="NaN"):
        scorer.audio_embeddings([np.full(100, np.nan, np.float32)], 16000)
    with pytest.raises(InvalidInputError, match="one text per clip"):
        scorer.score_pairs([clip], 16000, ["a", "b"])
    with pytest.raises(InvalidInputError, match="strings"):
        scorer.text_embeddings(["a", 3])
    with pytest.raises(InvalidInputError, match="list"):
        scorer.text_embeddings("a dog")


def test_loading_errors_are_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clap_folder: Path
) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        ClapScorer.from_pretrained(tmp_path / "missing" / "clap", device="cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no config.json"):
        ClapScorer.from_pretrained(tmp_path / "empty", device="cpu")
    from ezaudio.text.encoder import minilm_folder

    with pytest.raises(CheckpointError, match="not a CLAP model"):
        ClapScorer.from_pretrained(minilm_folder(), device="cpu")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    with pytest.raises(CheckpointError) as caught:
        ClapScorer.from_pretrained(
            "laion/larger_clap_general", device="cpu", cache_dir=tmp_path / "hf-cache"
        )
    assert time.perf_counter() - started < 10
    message = str(caught.value)
    assert "\n" not in message
    assert "not in the local Hugging Face cache" in message and "HF_HUB_OFFLINE" in message
    # a local folder needs no network at all
    assert ClapScorer.from_pretrained(clap_folder, device="cpu").dim == DIM
