"""Finding a model by name: local folders, official presets (download + conversion), hub ids.

No network: ``huggingface_hub.hf_hub_download`` / ``snapshot_download`` are replaced
by fakes that hand out local files, and the official preset is a temporary entry
whose checkpoints are the small reference DiT and VAE written in the official
formats.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import huggingface_hub
import pytest
import torch
from safetensors.torch import load_file

import ezaudio.hub as hub
from ezaudio.checkpoints.official_dit import dit_config_from_official
from ezaudio.checkpoints.official_vae import vae_config_from_official
from ezaudio.config import DIT_PRESETS, VAE_PRESETS, SamplingDefaults
from ezaudio.errors import CheckpointError
from ezaudio.model_folder import INDEX_NAME, read_index
from ezaudio.nn.dit import EzAudioDiT
from ezaudio.nn.oobleck import WaveformVAE
from ezaudio.pipeline import EzAudio

PRESET = "ezaudio-test-small"
REPO = "OpenSound/EzAudio-test"
DIT_FILE, VAE_FILE = "ckpts/s3/ezaudio_s3_small.pt", "ckpts/vae/small.pt"


def relative_error(ours: torch.Tensor, ref: torch.Tensor) -> float:
    return float((ours - ref).abs().max() / ref.abs().max())


def assert_one_line(error: pytest.ExceptionInfo, *parts: str) -> None:
    message = str(error.value)
    assert "\n" not in message
    for part in parts:
        assert part in message


@pytest.fixture
def official(tmp_path, reference_dir, monkeypatch):
    """A temporary official preset whose hub files are the small reference checkpoints.

    Returns the fake hub's call log, the files it serves and the ezaudio cache folder.
    """
    dit_config = dit_config_from_official(
        json.loads((reference_dir / "dit_small_config.json").read_text())
    )
    vae_config = vae_config_from_official(
        json.loads((reference_dir / "vae_small_config.json").read_text())
    )
    monkeypatch.setitem(DIT_PRESETS, "test-small", dit_config)
    monkeypatch.setitem(VAE_PRESETS, "test-small", vae_config)
    sampling = SamplingDefaults(seconds=4.0, steps=25, guidance_scale=3.0)
    spec = hub.OfficialModel(
        REPO, DIT_FILE, VAE_FILE, "test-small", "test-small", "google/flan-t5-small", sampling
    )
    monkeypatch.setitem(hub.OFFICIAL_MODELS, PRESET, spec)

    remote = tmp_path / "remote"
    remote.mkdir()
    dit_weights = load_file(reference_dir / "dit_small_weights.safetensors")
    vae_weights = load_file(reference_dir / "vae_small_weights.safetensors")
    torch.save({"model": dit_weights}, remote / "dit.pt")
    torch.save(
        {"state_dict": {"autoencoder." + k: v for k, v in vae_weights.items()}}, remote / "vae.pt"
    )
    files = {DIT_FILE: remote / "dit.pt", VAE_FILE: remote / "vae.pt"}
    calls: list[tuple[str, str, dict]] = []

    def fake_download(repo_id, filename, **kwargs):
        calls.append((repo_id, filename, kwargs))
        return str(files[filename])

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    monkeypatch.setattr(hub, "_download_allowed", lambda: True)
    cache = tmp_path / "cache"
    monkeypatch.setenv("EZAUDIO_CACHE", str(cache))
    return SimpleNamespace(calls=calls, files=files, cache=cache, spec=spec)


# ------------------------------------------------------------------- local names


def test_folder_without_index_is_refused(tmp_path):
    with pytest.raises(CheckpointError) as error:
        hub.resolve_model_folder(tmp_path)
    assert_one_line(error, str(tmp_path), INDEX_NAME)


def test_file_is_refused(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"weights")
    with pytest.raises(CheckpointError) as error:
        hub.resolve_model_folder(path)
    assert_one_line(error, str(path), "file")


@pytest.mark.parametrize("name", ["no-such-model", "ezaudio-xxl", "./missing/model", "a/b/c"])
def test_unknown_name_is_refused(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def no_hub(*args, **kwargs):
        raise AssertionError("an unknown name must not reach the hub")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_hub)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_hub)
    with pytest.raises(CheckpointError) as error:
        hub.resolve_model_folder(name)
    assert_one_line(error, "ezaudio-l", "ezaudio-xl")


def test_empty_name_is_refused_even_in_a_model_folder(tiny_pipeline, tmp_path, monkeypatch):
    folder = tiny_pipeline.save_pretrained(tmp_path / "model")
    monkeypatch.chdir(folder)  # "" must not mean "the current folder"
    for name in ["", "  "]:
        with pytest.raises(CheckpointError) as error:
            hub.resolve_model_folder(name)
        assert_one_line(error, "empty model name")


def test_missing_absolute_path_is_refused(tmp_path):
    missing = tmp_path / "nowhere" / "model"
    with pytest.raises(CheckpointError) as error:
        hub.resolve_model_folder(missing)
    assert_one_line(error, str(missing))


def test_model_folder_resolves_to_itself(tiny_pipeline, tmp_path):
    folder = tiny_pipeline.save_pretrained(tmp_path / "model")
    assert hub.resolve_model_folder(folder) == folder
    assert hub.resolve_model_folder(str(folder)) == folder


def test_no_name_gives_the_bundled_model_or_says_there_is_none():
    bundled = hub.default_model_folder()
    if bundled is None:
        with pytest.raises(CheckpointError) as error:
            hub.resolve_model_folder(None)
        assert_one_line(error, "no default model")
    else:
        folder = hub.resolve_model_folder(None)
        assert folder == bundled and (folder / INDEX_NAME).is_file()


# --------------------------------------------------------------- official presets


def test_official_preset_is_downloaded_and_converted(official, reference_dir):
    folder = hub.resolve_model_folder(PRESET)
    assert folder == official.cache / PRESET
    assert (folder / INDEX_NAME).is_file()
    assert (folder / "dit" / "model.safetensors").is_file()
    assert (folder / "vae" / "model.safetensors").is_file()
    assert sorted(p.name for p in official.cache.iterdir()) == [PRESET]  # no staging left
    assert [(repo, name) for repo, name, _ in official.calls] == [
        (REPO, DIT_FILE),
        (REPO, VAE_FILE),
    ]
    assert all(kwargs.get("local_files_only") is False for _, _, kwargs in official.calls)

    index = read_index(folder)
    assert index.name == PRESET
    assert index.sample_rate == 24000 and index.latent_rate == pytest.approx(600.0)
    assert index.text_encoder["name"] == "google/flan-t5-small"
    assert index.sampling == official.spec.sampling

    io = load_file(reference_dir / "dit_small_io.safetensors")
    dit = EzAudioDiT.from_pretrained(folder / "dit")
    assert dit.config == DIT_PRESETS["test-small"]
    with torch.no_grad():
        text_to_audio = dit(io["x"], io["timesteps"], io["context"], io["context_mask"])
        edit = dit(
            io["x"], io["timesteps"], io["context"], io["context_mask"], io["gt"], io["gt_mask"]
        )
    assert relative_error(text_to_audio, io["v_text_to_audio"]) <= 1e-5
    assert relative_error(edit, io["v_edit"]) <= 1e-5

    vae_io = load_file(reference_dir / "vae_small_io.safetensors")
    vae = WaveformVAE.from_pretrained(folder / "vae")
    with torch.no_grad():
        decoded = vae.decode(vae_io["latent"])
    assert relative_error(decoded, vae_io["decoded"]) <= 1e-5


def test_converted_preset_is_taken_from_the_cache(official):
    first = hub.resolve_model_folder(PRESET)
    assert len(official.calls) == 2
    stamp = (first / "dit" / "model.safetensors").stat().st_mtime_ns
    second = hub.resolve_model_folder(PRESET)
    assert second == first
    assert len(official.calls) == 2  # no download, no conversion
    assert (second / "dit" / "model.safetensors").stat().st_mtime_ns == stamp


def test_offline_hub_asks_for_cached_files_only(official, monkeypatch):
    monkeypatch.setattr(hub, "_download_allowed", lambda: False)
    hub.resolve_model_folder(PRESET)
    assert [kwargs.get("local_files_only") for _, _, kwargs in official.calls] == [True, True]


def test_download_failure_is_a_one_line_checkpoint_error(official, monkeypatch):
    def failing_download(repo_id, filename, **kwargs):
        raise OSError("connection reset by peer\nTraceback (most recent call last): ...")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", failing_download)
    with pytest.raises(CheckpointError) as error:
        hub.resolve_model_folder(PRESET)
    assert_one_line(error, REPO, DIT_FILE)
    assert not (official.cache / PRESET).exists()


def test_checkpoint_that_does_not_fit_the_preset_leaves_no_cache(official):
    official.files[VAE_FILE] = official.files[DIT_FILE]  # the DiT where the VAE should be
    with pytest.raises(CheckpointError) as error:
        hub.resolve_model_folder(PRESET)
    assert "\n" not in str(error.value)
    assert not (official.cache / PRESET).exists()
    assert not any(official.cache.glob(f".{PRESET}*"))

    official.files[VAE_FILE] = official.files[DIT_FILE].parent / "vae.pt"  # fixed upstream
    folder = hub.resolve_model_folder(PRESET)
    assert (folder / INDEX_NAME).is_file()


def test_stale_half_converted_cache_is_rebuilt(official):
    stale = official.cache / PRESET
    (stale / "dit").mkdir(parents=True)  # an interrupted conversion: no ezaudio.json
    folder = hub.resolve_model_folder(PRESET)
    assert folder == stale and (folder / INDEX_NAME).is_file()
    assert len(official.calls) == 2


# ----------------------------------------------------------------------- hub ids


@pytest.fixture
def fake_snapshot(monkeypatch):
    """Replace ``snapshot_download`` by one serving ``served[repo_id]``; returns (served, calls)."""
    served: dict[str, Path] = {}
    calls: list[tuple[str, dict]] = []

    def snapshot_download(repo_id, **kwargs):
        calls.append((repo_id, kwargs))
        if repo_id not in served:
            raise huggingface_hub.errors.LocalEntryNotFoundError(f"{repo_id}\nmore lines")
        return str(served[repo_id])

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    monkeypatch.setattr(hub, "_download_allowed", lambda: True)
    return served, calls


def test_hub_id_resolves_to_its_snapshot(tiny_pipeline, tmp_path, fake_snapshot):
    served, calls = fake_snapshot
    served["someone/ezaudio-tiny"] = tiny_pipeline.save_pretrained(tmp_path / "snapshot")
    folder = hub.resolve_model_folder("someone/ezaudio-tiny")
    assert folder == tmp_path / "snapshot"
    assert calls == [("someone/ezaudio-tiny", {"local_files_only": False})]

    loaded = EzAudio.from_pretrained(
        "someone/ezaudio-tiny", device="cpu", text_encoder=tiny_pipeline.text_encoder
    )
    assert loaded.name == "someone/ezaudio-tiny"
    out = loaded.generate("a dog barks", seconds=0.25, steps=2, seed=3, progress=False)
    reference = tiny_pipeline.generate("a dog barks", seconds=0.25, steps=2, seed=3, progress=False)
    assert (out.waveforms == reference.waveforms).all()


def test_hub_snapshot_without_index_is_refused(tmp_path, fake_snapshot):
    served, _ = fake_snapshot
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "README.md").write_text("not a model\n")
    served["someone/not-a-model"] = tmp_path / "repo"
    with pytest.raises(CheckpointError) as error:
        hub._snapshot("someone/not-a-model")
    assert_one_line(error, "someone/not-a-model", INDEX_NAME)
    with pytest.raises(CheckpointError):
        hub.resolve_model_folder("someone/not-a-model")


def test_failing_snapshot_download_is_a_one_line_checkpoint_error(fake_snapshot, monkeypatch):
    _, calls = fake_snapshot
    monkeypatch.setattr(hub, "_download_allowed", lambda: False)
    with pytest.raises(CheckpointError) as error:
        hub.resolve_model_folder("someone/missing-repo")
    assert_one_line(error, "someone/missing-repo", "LocalEntryNotFoundError")
    assert calls == [("someone/missing-repo", {"local_files_only": True})]
