"""``EzAudio``: generation, editing, input checks, saving and loading, on a tiny random model.

The model is the tiny DiT (text context 384) + tiny VAE (16 kHz, 40 samples per
latent frame) with the real offline MiniLM text encoder; see ``tests/conftest.py``.
Its audio is noise, but every check below is on values: seeds, batch rows,
guidance, which samples an edit may touch, and what a reloaded model produces.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch

import ezaudio.text.encoder as text_encoder_module
from ezaudio.config import DIT_PRESETS
from ezaudio.data.audio import resample
from ezaudio.errors import AudioFileError, CheckpointError, EzAudioError, InvalidInputError
from ezaudio.model_folder import INDEX_NAME
from ezaudio.nn.dit import EzAudioDiT
from ezaudio.pipeline import EzAudio
from ezaudio.text import TextEncoder

SR = 16000  # tiny VAE preset
STEPS = 3
SECONDS = 0.5
PROMPT = "a dog barks"


def generate(pipe: EzAudio, prompt: str | list[str] = PROMPT, **options):
    options = {"seconds": SECONDS, "steps": STEPS, "seed": 1, "progress": False, **options}
    return pipe.generate(prompt, **options)


def edit(pipe: EzAudio, audio, start=0.3, length=0.2, boundary=0.1, prompt=PROMPT, **options):
    if isinstance(audio, np.ndarray):
        options.setdefault("sample_rate", SR)
    options = {"steps": STEPS, "seed": 1, "progress": False, **options}
    return pipe.edit(audio, prompt, start, length, boundary=boundary, **options)


def assert_one_line_naming(error: pytest.ExceptionInfo, field: str) -> None:
    message = str(error.value)
    assert "\n" not in message
    assert field in message


@pytest.fixture
def sine() -> np.ndarray:
    """1 s of a 440 Hz sine at the model rate, [N] float32."""
    t = np.arange(SR) / SR
    return (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


@pytest.fixture
def saved_folder(tiny_pipeline, tmp_path):
    return tiny_pipeline.save_pretrained(tmp_path / "model")


# ---------------------------------------------------------------------------- generate


@pytest.mark.parametrize("seconds", [0.5, 0.3137])
def test_generate_returns_float32_rows_of_the_asked_length(tiny_pipeline, seconds):
    out = generate(tiny_pipeline, [PROMPT, "rain on a roof"], seconds=seconds, seed=11)
    assert out.waveforms.dtype == np.float32
    assert out.waveforms.shape == (2, round(seconds * SR))
    assert out.sample_rate == SR == tiny_pipeline.sample_rate
    assert out.seeds == [11, 12]
    assert np.isfinite(out.waveforms).all()
    assert np.abs(out.waveforms).max() > 0


def test_same_seed_same_audio_and_other_seed_other_audio(tiny_pipeline):
    first = generate(tiny_pipeline, seed=5).waveforms
    again = generate(tiny_pipeline, seed=5).waveforms
    other = generate(tiny_pipeline, seed=6).waveforms
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - other).max() > 1e-3


def test_batch_row_i_equals_a_single_generation_with_seed_plus_i(tiny_pipeline):
    prompts = [PROMPT, "rain on a roof", ""]  # the empty one is unconditional inside a CFG batch
    batch = generate(tiny_pipeline, prompts, seed=7, guidance_scale=4.0)
    assert batch.seeds == [7, 8, 9]
    for i, prompt in enumerate(prompts):
        single = generate(tiny_pipeline, prompt, seed=7 + i, guidance_scale=4.0)
        assert single.seeds == [7 + i]
        np.testing.assert_allclose(batch.waveforms[i], single.waveforms[0], rtol=0, atol=1e-5)


def test_random_seed_is_reported_and_reproduces_the_audio(tiny_pipeline):
    first = generate(tiny_pipeline, seed=None)
    second = generate(tiny_pipeline, seed=None)
    (seed,) = first.seeds
    assert isinstance(seed, int) and 0 <= seed < 2**63
    assert second.seeds != first.seeds
    replay = generate(tiny_pipeline, seed=seed)
    assert replay.seeds == [seed]
    np.testing.assert_array_equal(replay.waveforms, first.waveforms)


def test_text_and_guidance_change_the_audio(tiny_pipeline):
    dog = generate(tiny_pipeline, guidance_scale=1.0).waveforms
    rain = generate(tiny_pipeline, "rain on a roof", guidance_scale=1.0).waveforms
    guided = generate(tiny_pipeline, guidance_scale=4.0).waveforms
    assert np.abs(dog - rain).max() > 1e-3
    assert np.abs(dog - guided).max() > 1e-3


def test_negative_prompt_changes_guided_audio(tiny_pipeline):
    plain = generate(tiny_pipeline, guidance_scale=3.0).waveforms
    negative = generate(tiny_pipeline, guidance_scale=3.0, negative_prompt="wind noise").waveforms
    assert np.abs(plain - negative).max() > 1e-3


def test_guidance_scale_one_ignores_the_negative_prompt(tiny_pipeline):
    plain = generate(tiny_pipeline, guidance_scale=1.0).waveforms
    negative = generate(tiny_pipeline, guidance_scale=1.0, negative_prompt="wind noise").waveforms
    np.testing.assert_array_equal(plain, negative)


def test_empty_prompt_is_unconditional_whatever_the_guidance_scale(tiny_pipeline):
    scale_one = generate(tiny_pipeline, "", guidance_scale=1.0).waveforms
    for scale, negative in [(5.0, ""), (8.0, "wind noise"), (0.0, "")]:
        out = generate(tiny_pipeline, "", guidance_scale=scale, negative_prompt=negative)
        np.testing.assert_array_equal(out.waveforms, scale_one)


def test_one_negative_prompt_per_row(tiny_pipeline):
    prompts, negatives = [PROMPT, "rain on a roof"], ["wind noise", "music"]
    batch = generate(tiny_pipeline, prompts, seed=3, guidance_scale=3.0, negative_prompt=negatives)
    for i in range(2):
        single = generate(
            tiny_pipeline, prompts[i], seed=3 + i, guidance_scale=3.0, negative_prompt=negatives[i]
        )
        np.testing.assert_allclose(batch.waveforms[i], single.waveforms[0], rtol=0, atol=1e-5)


@pytest.mark.parametrize("negatives", [["a", "b", "c"], ["a", "b"], []])
def test_negative_prompt_list_of_the_wrong_length_is_refused(tiny_pipeline, negatives):
    with pytest.raises(InvalidInputError) as error:
        generate(tiny_pipeline, ["x", "y", "z", "w"], negative_prompt=negatives)
    assert_one_line_naming(error, "negative_prompt")


def test_progress_callback_sees_every_step(tiny_pipeline):
    seen = []
    generate(tiny_pipeline, steps=4, callback=lambda i, n: seen.append((i, n)))
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]


# ------------------------------------------------------------------ speed contract


@pytest.fixture
def spies(monkeypatch):
    """Count text encodings, context preparations and DiT forwards (batch size of each)."""
    calls: dict[str, list] = {"encode": [], "prepare_context": [], "forward": []}
    encode, prepare, forward = TextEncoder.encode, EzAudioDiT.prepare_context, EzAudioDiT.forward

    def spy_encode(self, prompts):
        calls["encode"].append(list(prompts))
        return encode(self, prompts)

    def spy_prepare(self, context, context_mask=None):
        calls["prepare_context"].append(context.shape[0])
        return prepare(self, context, context_mask)

    def spy_forward(self, x, *args, **kwargs):
        calls["forward"].append(x.shape[0])
        return forward(self, x, *args, **kwargs)

    monkeypatch.setattr(TextEncoder, "encode", spy_encode)
    monkeypatch.setattr(EzAudioDiT, "prepare_context", spy_prepare)
    monkeypatch.setattr(EzAudioDiT, "forward", spy_forward)
    return calls


def test_guided_generation_encodes_text_once_and_runs_the_dit_once_per_step(tiny_pipeline, spies):
    generate(tiny_pipeline, [PROMPT, "rain"], steps=4, guidance_scale=3.0, negative_prompt="wind")
    assert spies["encode"] == [[PROMPT, "rain", "wind", "wind"]]
    assert spies["prepare_context"] == [4]
    assert spies["forward"] == [4] * 4  # positive and negative rows in one batched call


def test_unguided_generation_runs_only_the_positive_rows(tiny_pipeline, spies):
    generate(tiny_pipeline, [PROMPT, "rain"], steps=3, guidance_scale=1.0)
    assert spies["encode"] == [[PROMPT, "rain"]]
    assert spies["prepare_context"] == [2]
    assert spies["forward"] == [2] * 3


def test_guided_edit_encodes_text_once_and_runs_the_dit_once_per_step(tiny_pipeline, spies, sine):
    edit(tiny_pipeline, sine, steps=3, guidance_scale=3.0)
    assert spies["encode"] == [[PROMPT, ""]]
    assert spies["prepare_context"] == [2]
    assert spies["forward"] == [2] * 3


# ------------------------------------------------------------------------ bad input

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("seconds", 0),
        ("seconds", -1),
        ("seconds", NAN),
        ("seconds", INF),
        ("seconds", 1e9),
        ("seconds", "10"),
        ("steps", 0),
        ("steps", 2.5),
        ("steps", 10**6),
        ("guidance_scale", -1),
        ("guidance_scale", NAN),
        ("guidance_rescale", 1.5),
        ("guidance_rescale", -0.1),
        ("eta", 2),
        ("eta", -0.5),
        ("seed", -1),
        ("seed", 1.5),
        ("seed", True),
    ],
)
def test_generate_refuses_bad_options_naming_the_field(tiny_pipeline, spies, field, value):
    with pytest.raises(InvalidInputError) as error:
        generate(tiny_pipeline, **{field: value})
    assert_one_line_naming(error, field)
    assert spies["encode"] == [] and spies["forward"] == []  # refused before any work


@pytest.mark.parametrize("prompt", [3, None, [PROMPT, 3], b"a dog", []])
def test_generate_refuses_bad_prompts(tiny_pipeline, prompt):
    with pytest.raises(InvalidInputError) as error:
        generate(tiny_pipeline, prompt)
    assert_one_line_naming(error, "prompt")


# ---------------------------------------------------------------------------- edit


def unchanged_limits(start: float, length: float, boundary: float) -> tuple[int, int]:
    """Sample indices [0, low) and [high, ...) that an edit must leave bit-identical."""
    margin = min(boundary, length / 2)
    return math.floor((start - margin) * SR), math.ceil((start + length + margin) * SR)


@pytest.mark.parametrize("boundary", [0.05, 0.1, 2.0])
def test_inpainting_keeps_the_audio_outside_the_region(tiny_pipeline, sine, boundary):
    out = edit(tiny_pipeline, sine, start=0.3, length=0.2, boundary=boundary)
    assert out.waveforms.dtype == np.float32
    assert out.waveforms.shape == (1, len(sine))
    assert out.sample_rate == SR and out.seeds == [1]
    low, high = unchanged_limits(0.3, 0.2, boundary)
    wave = out.waveforms[0]
    np.testing.assert_array_equal(wave[:low], sine[:low])
    np.testing.assert_array_equal(wave[high:], sine[high:])
    region = slice(round(0.3 * SR), round(0.5 * SR))
    assert np.abs(wave[region] - sine[region]).mean() > 1e-3
    assert np.isfinite(wave).all()


def test_a_region_past_the_end_outpaints(tiny_pipeline, sine):
    out = edit(tiny_pipeline, sine, start=0.8, length=0.4, boundary=0.1)
    wave = out.waveforms[0]
    assert wave.shape == (round(1.2 * SR),)
    low, _ = unchanged_limits(0.8, 0.4, 0.1)
    np.testing.assert_array_equal(wave[:low], sine[:low])
    assert np.abs(wave[len(sine) :]).max() > 0  # the silence that was added got generated
    assert np.isfinite(wave).all()


@pytest.mark.parametrize(("samples", "start", "length"), [(16001, 1.0, 0.25), (15999, 0.7, 0.55)])
def test_outpainted_length_is_the_region_end(tiny_pipeline, sine, samples, start, length):
    audio = np.resize(sine, samples)
    out = edit(tiny_pipeline, audio, start=start, length=length, boundary=0.1)
    assert out.waveforms.shape == (1, round((start + length) * SR))
    low, _ = unchanged_limits(start, length, 0.1)
    np.testing.assert_array_equal(out.waveforms[0, :low], audio[:low])


def test_silent_clip_is_a_valid_input(tiny_pipeline):
    silence = np.zeros(SR, dtype=np.float32)
    wave = edit(tiny_pipeline, silence).waveforms[0]
    assert wave.shape == (SR,)
    assert np.isfinite(wave).all()
    low, high = unchanged_limits(0.3, 0.2, 0.1)
    assert not wave[:low].any() and not wave[high:].any()


def test_stereo_input_is_mixed_to_mono(tiny_pipeline, sine):
    stereo = np.stack([sine, 0.3 * np.roll(sine, 100)])  # [2, N]
    from_stereo = edit(tiny_pipeline, stereo).waveforms
    from_mono = edit(tiny_pipeline, stereo.mean(axis=0)).waveforms
    assert from_stereo.shape == (1, SR)
    np.testing.assert_array_equal(from_stereo, from_mono)


def test_input_at_another_rate_is_resampled(tiny_pipeline, sine):
    rate = 8000
    audio = sine[::2].copy()  # the same sine at 8 kHz
    out = edit(tiny_pipeline, audio, sample_rate=rate).waveforms[0]
    expected = resample(audio, rate, SR)
    assert out.shape == expected.shape == (SR,)
    low, high = unchanged_limits(0.3, 0.2, 0.1)
    np.testing.assert_array_equal(out[:low], expected[:low])
    np.testing.assert_array_equal(out[high:], expected[high:])


def test_torch_tensor_input_equals_array_input(tiny_pipeline, sine):
    from_tensor = edit(tiny_pipeline, torch.from_numpy(sine), sample_rate=SR).waveforms
    np.testing.assert_array_equal(from_tensor, edit(tiny_pipeline, sine).waveforms)


def test_wav_file_input_equals_array_input(tiny_pipeline, sine, tmp_path):
    path = tmp_path / "sine.wav"
    sf.write(path, sine, SR, subtype="FLOAT")
    from_file = edit(tiny_pipeline, path).waveforms
    np.testing.assert_array_equal(from_file, edit(tiny_pipeline, sine).waveforms)
    np.testing.assert_array_equal(edit(tiny_pipeline, str(path)).waveforms, from_file)


def test_wav_file_at_another_rate_is_resampled(tiny_pipeline, sine, tmp_path):
    path = tmp_path / "sine_8k.wav"
    audio = sine[::2].copy()
    sf.write(path, audio, 8000, subtype="FLOAT")
    from_file = edit(tiny_pipeline, path).waveforms
    assert from_file.shape == (1, SR)
    np.testing.assert_array_equal(from_file, edit(tiny_pipeline, audio, sample_rate=8000).waveforms)


def test_edit_same_seed_same_audio_other_seed_other_audio(tiny_pipeline, sine):
    first = edit(tiny_pipeline, sine, seed=4).waveforms
    np.testing.assert_array_equal(first, edit(tiny_pipeline, sine, seed=4).waveforms)
    assert np.abs(first - edit(tiny_pipeline, sine, seed=5).waveforms).max() > 1e-3


def test_edit_encodes_its_input_as_the_dit_was_trained(tiny_pipeline, sine, monkeypatch):
    # posterior_noise 1 (official): a posterior sample drawn from the seed; 0 (a DiT
    # trained on posterior means): the mean, whatever the seed
    known = []
    to_dit = tiny_pipeline._to_dit
    monkeypatch.setattr(tiny_pipeline, "_to_dit", lambda z: known.append(z) or to_dit(z))

    def known_latents(seed: int) -> torch.Tensor:
        known.clear()
        edit(tiny_pipeline, sine, seed=seed)
        return known[0]

    assert tiny_pipeline.posterior_noise == 1.0
    assert (known_latents(4) - known_latents(5)).abs().max() > 1e-3
    monkeypatch.setattr(tiny_pipeline, "posterior_noise", 0.0)
    assert torch.equal(known_latents(4), known_latents(5))


def test_edit_batch_of_prompts_matches_single_edits(tiny_pipeline, sine):
    batch = edit(tiny_pipeline, sine, prompt=[PROMPT, "rain"], seed=9)
    assert batch.waveforms.shape == (2, SR) and batch.seeds == [9, 10]
    for i, prompt in enumerate([PROMPT, "rain"]):
        single = edit(tiny_pipeline, sine, prompt=prompt, seed=9 + i)
        assert single.seeds == [9 + i]
        np.testing.assert_allclose(batch.waveforms[i], single.waveforms[0], rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    ("field", "region"),
    [
        ("mask_start", {"start": -0.1}),
        ("mask_start", {"start": NAN}),
        ("mask_length", {"length": 0.0}),
        ("mask_length", {"length": -0.2}),
        ("mask_length", {"length": INF}),
        ("mask_start", {"start": 1.5}),
        ("boundary", {"boundary": -0.1}),
    ],
)
def test_edit_refuses_bad_regions(tiny_pipeline, sine, field, region):
    with pytest.raises(InvalidInputError) as error:
        edit(tiny_pipeline, sine, **region)
    assert_one_line_naming(error, field)


@pytest.mark.parametrize(
    ("audio", "options", "field"),
    [
        (np.zeros(0, dtype=np.float32), {}, "no samples"),
        (np.zeros((1, 2, 100), dtype=np.float32), {}, "shape"),
        (np.full(SR, np.nan, dtype=np.float32), {}, "NaN"),
        (np.ones(SR, dtype=np.float32), {"sample_rate": None}, "sample_rate"),
        (np.ones(SR, dtype=np.float32), {"sample_rate": 0}, "sample_rate"),
        (np.ones(SR, dtype=np.float32), {"sample_rate": -8000}, "sample_rate"),
        (np.ones(SR, dtype=np.float32), {"sample_rate": 1.5}, "sample_rate"),
        (np.ones(SR, dtype=np.float32), {"sample_rate": "16000"}, "sample_rate"),
        (np.ones(SR, dtype=np.float32), {"steps": 0}, "steps"),
        (np.ones(SR, dtype=np.float32), {"seed": -3}, "seed"),
    ],
)
def test_edit_refuses_bad_arrays_and_options(tiny_pipeline, audio, options, field):
    with pytest.raises((InvalidInputError, AudioFileError)) as error:
        edit(tiny_pipeline, audio, **options)
    assert_one_line_naming(error, field)


def test_edit_refuses_unreadable_files(tiny_pipeline, tmp_path):
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"RIFF\x00\x01garbage, not audio" * 20)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), SR)
    for path in [tmp_path / "missing.wav", tmp_path, garbage, empty]:
        with pytest.raises(AudioFileError) as error:
            edit(tiny_pipeline, path)
        assert_one_line_naming(error, str(path))
        assert isinstance(error.value, EzAudioError)


# ------------------------------------------------------------ saving and loading


def test_saved_folder_names_minilm_and_reloads_to_the_same_audio(tiny_pipeline, saved_folder):
    index = json.loads((saved_folder / INDEX_NAME).read_text())
    assert index["text_encoder"]["name"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert index["text_encoder"]["kind"] == "bert"
    assert "path" not in index["text_encoder"]
    assert not (saved_folder / "text_encoder").exists()
    assert (saved_folder / "dit" / "model.safetensors").is_file()
    assert (saved_folder / "vae" / "model.safetensors").is_file()

    loaded = EzAudio.from_pretrained(saved_folder, device="cpu")
    assert loaded.sample_rate == SR and loaded.latent_rate == tiny_pipeline.latent_rate
    assert loaded.sampling == tiny_pipeline.sampling
    assert loaded.scheduler_config == tiny_pipeline.scheduler_config
    np.testing.assert_array_equal(
        generate(loaded, seed=21).waveforms, generate(tiny_pipeline, seed=21).waveforms
    )


def test_posterior_noise_is_saved_and_an_index_without_it_means_samples(
    tiny_pipeline, tmp_path, monkeypatch
):
    assert (
        json.loads((tiny_pipeline.save_pretrained(tmp_path / "a") / INDEX_NAME).read_text())[
            "posterior_noise"
        ]
        == 1.0
    )
    monkeypatch.setattr(tiny_pipeline, "posterior_noise", 0.0)
    folder = tiny_pipeline.save_pretrained(tmp_path / "b")
    assert EzAudio.from_pretrained(folder, device="cpu").posterior_noise == 0.0
    index = json.loads((folder / INDEX_NAME).read_text())
    del index["posterior_noise"]  # folders written before the field existed
    (folder / INDEX_NAME).write_text(json.dumps(index))
    assert EzAudio.from_pretrained(folder, device="cpu").posterior_noise == 1.0


def test_stored_text_encoder_is_written_and_used_on_reload(tiny_pipeline, tmp_path, monkeypatch):
    folder = tiny_pipeline.save_pretrained(tmp_path / "model", store_text_encoder=True)
    index = json.loads((folder / INDEX_NAME).read_text())
    assert index["text_encoder"] == {"path": "text_encoder"}
    assert (folder / "text_encoder" / "config.json").is_file()

    def no_minilm():
        raise AssertionError("the stored text encoder must be used, not the MiniLM package")

    monkeypatch.setattr(text_encoder_module, "minilm_folder", no_minilm)
    loaded = EzAudio.from_pretrained(folder, device="cpu")
    assert loaded.text_encoder.name == str(folder / "text_encoder")
    assert loaded.text_encoder.dim == 384
    np.testing.assert_array_equal(
        generate(loaded, seed=2).waveforms, generate(tiny_pipeline, seed=2).waveforms
    )


def test_bfloat16_runs_and_gives_finite_audio(tiny_pipeline, saved_folder):
    loaded = EzAudio.from_pretrained(saved_folder, device="cpu", dtype="bf16")
    assert loaded.dtype == torch.bfloat16
    assert next(loaded.dit.parameters()).dtype == torch.bfloat16
    assert next(loaded.vae.parameters()).dtype == torch.float32
    out = generate(loaded, guidance_scale=3.0)
    assert out.waveforms.dtype == np.float32 and out.waveforms.shape == (1, round(SECONDS * SR))
    assert np.isfinite(out.waveforms).all() and np.abs(out.waveforms).max() > 0
    # A bf16 model saved again is stored in float32 and reloads to the same weights.
    resaved = loaded.save_pretrained(saved_folder.parent / "resaved")
    again = EzAudio.from_pretrained(resaved, device="cpu", dtype="bf16")
    np.testing.assert_array_equal(
        generate(again, seed=2).waveforms, generate(loaded, seed=2).waveforms
    )
    assert next(loaded.dit.parameters()).dtype == torch.bfloat16  # saving left it in bf16


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present")
def test_cuda_device_without_a_gpu_is_refused(saved_folder, make_tiny_pipeline):
    with pytest.raises(InvalidInputError) as error:
        EzAudio.from_pretrained(saved_folder, device="cuda")
    assert_one_line_naming(error, "cuda")
    with pytest.raises(InvalidInputError):
        make_tiny_pipeline(device="cuda")


@pytest.mark.parametrize("dtype", ["float64", "int8", "fp8", torch.int64, torch.float64, 3])
def test_bad_dtype_is_refused(saved_folder, dtype):
    with pytest.raises(InvalidInputError) as error:
        EzAudio.from_pretrained(saved_folder, device="cpu", dtype=dtype)
    assert_one_line_naming(error, "dtype")


def test_dit_that_does_not_fit_the_vae_is_refused(tiny_pipeline, saved_folder):
    config = dataclasses.replace(DIT_PRESETS["tiny"], latent_channels=16, context_dim=384)
    wrong = EzAudioDiT(config)
    with pytest.raises(CheckpointError, match="latent"):
        EzAudio(wrong, tiny_pipeline.vae, tiny_pipeline.text_encoder)
    wrong.save_pretrained(saved_folder / "dit")  # replaces the folder's DiT
    with pytest.raises(CheckpointError, match="latent"):
        EzAudio.from_pretrained(saved_folder, device="cpu")


def test_dit_with_another_context_dim_is_refused(tiny_pipeline):
    wrong = EzAudioDiT(DIT_PRESETS["tiny"])  # context 32, MiniLM gives 384
    with pytest.raises(CheckpointError, match="context"):
        EzAudio(wrong, tiny_pipeline.vae, tiny_pipeline.text_encoder)


def test_corrupt_dit_weights_are_refused(saved_folder):
    (saved_folder / "dit" / "model.safetensors").write_bytes(b"\x00\x01 not safetensors" * 50)
    with pytest.raises(CheckpointError) as error:
        EzAudio.from_pretrained(saved_folder, device="cpu")
    assert_one_line_naming(error, "model.safetensors")


def test_folder_without_index_is_refused(saved_folder):
    (saved_folder / INDEX_NAME).unlink()
    with pytest.raises(CheckpointError) as error:
        EzAudio.from_pretrained(saved_folder, device="cpu")
    assert_one_line_naming(error, INDEX_NAME)


def test_index_whose_rate_does_not_match_the_vae_is_refused(saved_folder):
    path = saved_folder / INDEX_NAME
    index = json.loads(path.read_text())
    index["sample_rate"] = 22050
    path.write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="rates"):
        EzAudio.from_pretrained(saved_folder, device="cpu")


# ----------------------------------------------------------------- edge cases of lengths


def test_a_duration_between_latent_frames_is_generated_to_its_end(tiny_pipeline):
    seconds = 0.5 + 0.5 / tiny_pipeline.latent_rate  # half a latent frame past 0.5 s
    wave = generate(tiny_pipeline, seconds=seconds).waveforms[0]
    assert wave.shape == (round(seconds * SR),)
    tail = wave[-int(0.5 * SR / tiny_pipeline.latent_rate) :]
    assert np.abs(tail).max() > 0  # generated, not zero padding


def test_soundfile_layout_stereo_is_mixed_to_mono(tiny_pipeline, sine):
    stereo = np.stack([sine, 0.3 * np.roll(sine, 100)])  # [2, N]
    from_frames_first = edit(tiny_pipeline, stereo.T.copy()).waveforms  # [N, 2]
    from_channels_first = edit(tiny_pipeline, stereo).waveforms
    np.testing.assert_array_equal(from_frames_first, from_channels_first)


def test_a_region_shorter_than_a_latent_frame_is_refused(tiny_pipeline, sine):
    with pytest.raises(InvalidInputError) as error:
        edit(tiny_pipeline, sine, length=0.2 / tiny_pipeline.latent_rate)
    assert_one_line_naming(error, "mask_length")
