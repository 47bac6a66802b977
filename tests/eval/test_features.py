"""The content-keyed feature cache: hits on a second run, misses on any change that matters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch import nn

from ezaudio.errors import AudioFileError, InvalidInputError
from ezaudio.eval.features import (
    FeatureExtractor,
    PannsExtractor,
    compute_features,
    state_fingerprint,
)
from ezaudio.eval.panns import Cnn14, Cnn14Config
from ezaudio.eval.prepare import PrepareSettings, read_for_eval

RATE = 16000


class CountingExtractor:
    """A feature model of summary statistics that counts its calls and clips."""

    sample_rate = RATE
    name = "counting"

    def __init__(self, version: str = "1", classes: int = 5) -> None:
        self.version, self.classes = version, classes
        self.calls = 0
        self.clips = 0

    def fingerprint(self) -> str:
        return f"counting-{self.version}"

    def __call__(self, waveform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.calls += 1
        self.clips += waveform.shape[0]
        length = torch.full_like(waveform[:, 0], waveform.shape[1])
        stats = torch.stack([waveform.mean(1), waveform.std(1), waveform.abs().amax(1), length], 1)
        logits = stats[:, :1] * torch.arange(self.classes, dtype=stats.dtype)  # [B, C]
        return stats, logits


class TinyNet(nn.Module):
    """A torch feature model whose fingerprint hashes its weights."""

    sample_rate = RATE
    name = "tiny-net"

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Linear(4, 6)
        self.head = nn.Linear(6, 3)

    def fingerprint(self) -> str:
        return state_fingerprint(self, {"frames": 4})

    @torch.no_grad()
    def forward(self, waveform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        frames = waveform[:, : waveform.shape[1] // 4 * 4].reshape(waveform.shape[0], -1, 4)
        embedding = torch.relu(self.embed(frames)).mean(1)  # [B, 6]
        return embedding, self.head(embedding)


def write_clips(folder: Path, lengths: list[float], rate: int = 22050) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for index, seconds in enumerate(lengths):
        path = folder / f"clip{index}.wav"
        sf.write(path, 0.1 * rng.standard_normal(round(seconds * rate)), rate, subtype="FLOAT")
        paths.append(path)
    return paths


def test_second_run_hits_the_cache(tmp_path: Path) -> None:
    paths = write_clips(tmp_path / "audio", [1.0, 2.5, 3.0])
    first_model = CountingExtractor()
    first = compute_features(paths, first_model, tmp_path / "cache", progress=False)
    assert (first.computed, first.cached) == (3, 0)
    assert first.embeddings.shape == (3, 4) and first.logits.shape == (3, 5)
    assert first_model.clips == 3
    second_model = CountingExtractor()
    second = compute_features(paths, second_model, tmp_path / "cache", progress=False)
    assert (second.computed, second.cached) == (0, 3)
    assert second_model.calls == 0
    np.testing.assert_array_equal(second.embeddings, first.embeddings)
    np.testing.assert_array_equal(second.logits, first.logits)
    # keyed by content, not by name: a renamed copy hits too
    copy = tmp_path / "elsewhere" / "renamed.wav"
    copy.parent.mkdir()
    copy.write_bytes(paths[1].read_bytes())
    third = compute_features([copy], CountingExtractor(), tmp_path / "cache", progress=False)
    assert third.cached == 1
    np.testing.assert_array_equal(third.embeddings[0], first.embeddings[1])


def test_a_changed_file_misses(tmp_path: Path) -> None:
    paths = write_clips(tmp_path / "audio", [1.0, 1.0, 1.0])
    compute_features(paths, CountingExtractor(), tmp_path / "cache", progress=False)
    data, rate = sf.read(paths[1], dtype="float32")
    sf.write(paths[1], data * 0.5, rate, subtype="FLOAT")  # same name, same length
    model = CountingExtractor()
    again = compute_features(paths, model, tmp_path / "cache", progress=False)
    assert (again.computed, again.cached) == (1, 2)
    assert model.clips == 1
    fresh = compute_features([paths[1]], CountingExtractor(), None, progress=False)
    np.testing.assert_array_equal(again.embeddings[1], fresh.embeddings[0])


def test_a_changed_extractor_weight_misses(tmp_path: Path) -> None:
    paths = write_clips(tmp_path / "audio", [1.0, 2.0])
    net = TinyNet()
    before = compute_features(paths, net, tmp_path / "cache", progress=False)
    assert before.computed == 2
    assert compute_features(paths, net, tmp_path / "cache", progress=False).cached == 2
    with torch.no_grad():
        net.head.bias[0] += 1e-3  # one weight, changed in place
    after = compute_features(paths, net, tmp_path / "cache", progress=False)
    assert (after.computed, after.cached) == (2, 0)
    assert after.fingerprint != before.fingerprint
    assert not np.array_equal(after.logits, before.logits)
    # another model version through the protocol's fingerprint misses as well
    other = compute_features(paths, CountingExtractor("2"), tmp_path / "cache", progress=False)
    assert other.computed == 2


def test_changed_preparation_misses(tmp_path: Path) -> None:
    paths = write_clips(tmp_path / "audio", [1.0])
    compute_features(paths, CountingExtractor(), tmp_path / "cache", progress=False)
    settings = PrepareSettings(min_seconds=3.0)
    again = compute_features(
        paths, CountingExtractor(), tmp_path / "cache", settings=settings, progress=False
    )
    assert again.computed == 1
    assert again.embeddings[0, 3] == 3 * RATE  # the extractor saw the 3 s padded clip


def test_batches_hold_equal_lengths_only(tmp_path: Path) -> None:
    paths = write_clips(tmp_path / "audio", [3.0, 3.0, 5.0, 3.0, 1.0])  # 1 s pads to 2 s
    model = CountingExtractor()
    batched = compute_features(paths, model, None, batch_size=8, progress=False)
    assert model.calls == 3  # lengths 3 s (x3), 5 s, 2 s
    for index, path in enumerate(paths):
        alone = CountingExtractor()(torch.from_numpy(read_for_eval(path))[None])
        np.testing.assert_allclose(
            batched.embeddings[index], alone[0][0].numpy(), rtol=1e-6, atol=1e-9
        )
    small = CountingExtractor()
    compute_features(paths, small, None, batch_size=2, progress=False)
    assert small.calls == 4


def test_duplicates_and_corrupt_entries(tmp_path: Path) -> None:
    paths = write_clips(tmp_path / "audio", [1.0, 1.5])
    model = CountingExtractor()
    result = compute_features([paths[0], paths[1], paths[0]], model, tmp_path / "c", progress=False)
    assert model.clips == 2 and result.computed == 2
    np.testing.assert_array_equal(result.embeddings[0], result.embeddings[2])
    entries = sorted((tmp_path / "c").rglob("*.npz"))
    assert len(entries) == 2
    entries[0].write_bytes(b"garbage")  # unreadable: recomputed and rewritten
    again = compute_features(paths, CountingExtractor(), tmp_path / "c", progress=False)
    assert (again.computed, again.cached) == (1, 1)
    np.testing.assert_array_equal(again.embeddings, result.embeddings[:2])
    assert not list((tmp_path / "c").rglob("*.tmp"))


def test_panns_extractor_fits_the_protocol(tmp_path: Path) -> None:
    torch.manual_seed(0)
    extractor = PannsExtractor(Cnn14(Cnn14Config()), name="random-cnn14")
    assert isinstance(extractor, FeatureExtractor)
    paths = write_clips(tmp_path / "audio", [1.0, 1.0])
    features = compute_features(paths, extractor, tmp_path / "cache", progress=False)
    assert features.embeddings.shape == (2, 2048) and features.logits.shape == (2, 527)
    assert np.isfinite(features.embeddings).all()
    before = extractor.fingerprint()
    with torch.no_grad():
        extractor.model.fc_audioset.bias[3] += 0.5
    assert extractor.fingerprint() != before
    assert compute_features(paths, extractor, tmp_path / "cache", progress=False).computed == 2


def test_bad_input(tmp_path: Path) -> None:
    paths = write_clips(tmp_path / "audio", [1.0])
    with pytest.raises(AudioFileError, match="not found"):
        compute_features([tmp_path / "missing.wav"], CountingExtractor(), None, progress=False)
    with pytest.raises(InvalidInputError, match="no audio files"):
        compute_features([], CountingExtractor(), None, progress=False)
    with pytest.raises(InvalidInputError, match="fingerprint"):
        compute_features(paths, object(), None, progress=False)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="batch_size"):
        compute_features(paths, CountingExtractor(), None, batch_size=0, progress=False)

    class Broken(CountingExtractor):
        def __call__(self, waveform):
            embedding, logits = super().__call__(waveform)
            return embedding[:, :, None], logits

    with pytest.raises(InvalidInputError, match="embeddings of shape"):
        compute_features(paths, Broken(), None, progress=False)
    with pytest.raises(InvalidInputError, match="differs from the extractor"):
        compute_features(
            paths, CountingExtractor(), None, settings=PrepareSettings(sample_rate=8000),
            progress=False,
        )  # fmt: skip
