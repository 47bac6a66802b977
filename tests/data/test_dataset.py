"""Training clips of a manifest (``ezaudio.data.dataset``)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader

from ezaudio.data.audio import read_audio
from ezaudio.data.dataset import AudioClipDataset, collate_skipping, latent_valid_mask
from ezaudio.data.manifest import ManifestEntry, read_manifest, write_manifest
from ezaudio.errors import InvalidInputError

RATE = 16000
CLIP_SECONDS = 0.5
N = 8000  # samples per clip
GOOD = ("long", "stereo", "other_rate")
BAD = {"silent": "silent", "empty": "empty", "no_frames": "empty", "garbage": "unreadable"}
BAD_AND_MISSING = {**BAD, "missing": "missing"}


def noise(samples: int, seed: int, amplitude: float = 0.5) -> np.ndarray:
    return (amplitude * np.random.default_rng(seed).uniform(-1, 1, samples)).astype(np.float32)


@pytest.fixture
def audio_folder(tmp_path: Path) -> Path:
    """Three usable files (1.5 s mono, 0.25 s stereo FLAC, 0.3 s at 44.1 kHz) and bad ones."""
    sf.write(tmp_path / "long.wav", noise(3 * N, 0), RATE, subtype="FLOAT")
    stereo = np.stack([noise(4000, 1), noise(4000, 2, 0.25)], axis=1)  # [n, 2]
    sf.write(tmp_path / "stereo.flac", stereo, RATE, subtype="PCM_24")
    sf.write(tmp_path / "other_rate.wav", noise(13230, 3), 44100, subtype="FLOAT")
    sf.write(tmp_path / "silent.wav", np.zeros(3200, np.float32), RATE)
    sf.write(tmp_path / "no_frames.wav", np.zeros(0, np.float32), RATE)
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "garbage.wav").write_bytes(np.random.default_rng(4).bytes(5000))
    return tmp_path


def manifest_of(folder: Path, names) -> Path:
    suffixes = {"stereo": ".flac"}
    entries = [
        ManifestEntry(folder / f"{name}{suffixes.get(name, '.wav')}", f"caption of {name}")
        for name in names
    ]
    return write_manifest(folder / "manifest.jsonl", entries)


def dataset_of(folder: Path, names, **kwargs) -> AudioClipDataset:
    entries = read_manifest(manifest_of(folder, names))
    return AudioClipDataset(entries, RATE, CLIP_SECONDS, **kwargs)


def test_items_have_the_documented_shapes(audio_folder: Path) -> None:
    dataset = dataset_of(audio_folder, GOOD)
    assert len(dataset) == 3 and dataset.clip_samples == N
    for index, name in enumerate(GOOD):
        item = dataset[index]
        assert item["audio"].shape == (1, N) and item["audio"].dtype == torch.float32
        assert item["valid"].shape == (N,) and item["valid"].dtype == torch.bool
        assert (item["id"], item["caption"]) == (name, f"caption of {name}")


def test_valid_marks_the_real_samples_of_padded_clips(audio_folder: Path) -> None:
    dataset = dataset_of(audio_folder, GOOD)
    resampled, _ = read_audio(audio_folder / "other_rate.wav", RATE)
    for index, real in enumerate([N, 4000, len(resampled)]):
        item = dataset[index]
        assert int(item["valid"].sum()) == real and item["valid"][:real].all()
        assert (item["audio"][0, real:] == 0).all()
    assert 4700 <= len(resampled) <= 4900  # 0.3 s at 16 kHz


def test_peak_normalisation(audio_folder: Path) -> None:
    dataset = dataset_of(audio_folder, GOOD)
    for index in range(len(dataset)):
        assert abs(float(dataset[index]["audio"].abs().max()) - 1.0) <= 1e-6
    raw = dataset_of(audio_folder, GOOD, normalize=False)
    assert float(raw[0]["audio"].abs().max()) <= 0.5


def test_stereo_is_mixed_to_mono(audio_folder: Path) -> None:
    item = dataset_of(audio_folder, ["stereo"], normalize=False)[0]
    stereo, _ = sf.read(audio_folder / "stereo.flac", dtype="float32")
    np.testing.assert_allclose(item["audio"][0, :4000].numpy(), stereo.mean(axis=1), atol=1e-6)


def test_crop_is_a_slice_of_the_file_at_crop_start(audio_folder: Path) -> None:
    dataset = dataset_of(audio_folder, ["long"], normalize=False, seed=5)
    source, _ = read_audio(audio_folder / "long.wav")
    start = dataset.crop_start(len(source), 0)
    assert 0 <= start <= 2 * N
    np.testing.assert_array_equal(dataset[0]["audio"][0].numpy(), source[start : start + N])
    assert dataset[0]["valid"].all()


def test_crops_are_reproducible_per_seed_epoch_and_index(audio_folder: Path) -> None:
    def clip(seed: int = 0, epoch: int = 0, index: int = 0) -> torch.Tensor:
        dataset = AudioClipDataset(
            [ManifestEntry(audio_folder / "long.wav", id=f"copy{i}") for i in range(2)],
            RATE,
            CLIP_SECONDS,
            seed=seed,
        )
        dataset.set_epoch(epoch)
        return dataset[index]["audio"]

    assert torch.equal(clip(), clip())
    assert torch.equal(clip(seed=3, epoch=2, index=1), clip(seed=3, epoch=2, index=1))
    assert not torch.equal(clip(epoch=0), clip(epoch=1))
    assert not torch.equal(clip(index=0), clip(index=1))
    assert not torch.equal(clip(seed=0), clip(seed=1))


def test_without_random_crop_the_clip_starts_at_zero(audio_folder: Path) -> None:
    dataset = dataset_of(audio_folder, ["long"], normalize=False, random_crop=False)
    dataset.set_epoch(3)
    source, _ = read_audio(audio_folder / "long.wav")
    np.testing.assert_array_equal(dataset[0]["audio"][0].numpy(), source[:N])


def test_bad_files_are_skipped_and_counted_once(audio_folder: Path, caplog) -> None:
    dataset = dataset_of(audio_folder, [*GOOD, *BAD_AND_MISSING])
    with caplog.at_level(logging.WARNING, logger="ezaudio.data.dataset"):
        for _ in range(2):  # a second pass neither counts nor logs again
            items = [dataset[index] for index in range(len(dataset))]
    assert [item is None for item in items] == [False] * 3 + [True] * 5
    assert dataset.skipped == {"silent": 1, "empty": 2, "unreadable": 1, "missing": 1}
    assert len(caplog.records) == 5
    for record, (name, reason) in zip(caplog.records, BAD_AND_MISSING.items()):
        assert record.levelno == logging.WARNING
        assert name in record.getMessage() and f"({reason})" in record.getMessage()


@pytest.mark.parametrize("workers", [0, 2])
def test_dataloader_runs_through_bad_files(audio_folder: Path, workers: int) -> None:
    names = ["missing", "long", "garbage", "empty", "stereo", "silent", "no_frames", "other_rate"]
    dataset = dataset_of(audio_folder, names)
    loader = DataLoader(dataset, batch_size=3, num_workers=workers, collate_fn=collate_skipping)
    batches = list(loader)
    ids = [clip_id for batch in batches if batch is not None for clip_id in batch["id"]]
    assert ids == ["long", "stereo", "other_rate"]
    for batch in batches:
        if batch is not None:
            size = len(batch["id"])
            assert batch["audio"].shape == (size, 1, N) and batch["valid"].shape == (size, N)
            assert batch["caption"] == [f"caption of {clip_id}" for clip_id in batch["id"]]


def test_collate_of_only_skipped_items_is_none() -> None:
    assert collate_skipping([None, None]) is None
    assert collate_skipping([]) is None


def test_latent_valid_mask_counts_a_frame_with_any_real_sample() -> None:
    valid = torch.zeros(2, 10, dtype=torch.bool)  # [B, N]
    valid[0, :10] = True
    valid[1, :5] = True  # frame 1 (samples 4..7) holds the end of the audio
    expected = torch.tensor([[True, True, True], [True, True, False]])
    assert torch.equal(latent_valid_mask(valid, 4), expected)  # ceil(10 / 4) = 3 frames
    assert torch.equal(latent_valid_mask(valid, 4, frames=2), expected[:, :2])
    assert latent_valid_mask(valid, 4, frames=4)[:, 3].logical_not().all()


def test_the_loudest_of_the_crop_candidates_is_kept(tmp_path: Path) -> None:
    # 4 s of faint noise with one loud second (1.5-2.5 s): four candidates find it far
    # more often than the uniform crop does
    wave = noise(4 * RATE, 7, amplitude=0.01)
    wave[int(1.5 * RATE) : int(2.5 * RATE)] *= 50.0
    sf.write(tmp_path / "event.wav", wave, RATE, subtype="FLOAT")
    entries = [ManifestEntry(tmp_path / "event.wav", id="event")]

    def loud_share(candidates: int) -> float:
        dataset = AudioClipDataset(entries, RATE, CLIP_SECONDS, normalize=False,
                                   crop_candidates=candidates)  # fmt: skip
        loud = 0
        for epoch in range(200):
            dataset.set_epoch(epoch)
            starts = dataset.crop_starts(len(wave), 0)
            assert len(starts) == candidates and dataset.crop_start(len(wave), 0) == starts[0]
            clip = dataset[0]["audio"][0].numpy()
            energies = [np.square(wave[s : s + N]).mean() for s in starts]
            kept = starts[int(np.argmax(energies))]
            np.testing.assert_array_equal(clip, wave[kept : kept + N])
            loud += np.abs(clip).max() > 0.1
        return loud / 200

    uniform, best_of_four = loud_share(1), loud_share(4)
    assert 0.2 < uniform < 0.5  # starts in [1.0, 2.5) s of [0, 3.5] touch the loud part
    assert best_of_four > 0.8


def test_one_crop_candidate_is_the_uniform_crop(audio_folder: Path) -> None:
    one = dataset_of(audio_folder, ["long"], seed=5)
    default = dataset_of(audio_folder, ["long"], seed=5, crop_candidates=1)
    for epoch in range(5):
        one.set_epoch(epoch), default.set_epoch(epoch)
        assert torch.equal(one[0]["audio"], default[0]["audio"])


@pytest.mark.parametrize("candidates", [0, -1, 1.5, True, "4"])
def test_bad_crop_candidates(audio_folder: Path, candidates) -> None:
    with pytest.raises(InvalidInputError, match="crop_candidates"):
        dataset_of(audio_folder, GOOD, crop_candidates=candidates)


def test_bad_arguments(audio_folder: Path) -> None:
    entries = read_manifest(manifest_of(audio_folder, GOOD))
    with pytest.raises(InvalidInputError):
        AudioClipDataset(entries, RATE, 0.0)
    with pytest.raises(InvalidInputError):
        AudioClipDataset(entries, RATE, 1.0, seed=-1)
    with pytest.raises(InvalidInputError):
        AudioClipDataset(entries, RATE, 1.0).set_epoch(-1)
    with pytest.raises(InvalidInputError):
        latent_valid_mask(torch.ones(1, 8, dtype=torch.bool), 0)
