"""EzAudio-DiT behaviour on tiny configs: shapes, masking semantics, caching, variants."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from ezaudio.config import DIT_PRESETS, DiTConfig
from ezaudio.errors import CheckpointError, InvalidInputError
from ezaudio.nn.dit import EzAudioDiT

TINY = DIT_PRESETS["tiny"]


def perturbed(config: DiTConfig, seed: int = 0) -> EzAudioDiT:
    """A tiny DiT whose zero-initialised paths carry signal (as trained weights do)."""
    torch.manual_seed(seed)
    model = EzAudioDiT(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return model


def inputs(batch: int = 2, length: int = 20, config: DiTConfig = TINY, tokens: int = 6):
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(batch, config.latent_channels, length, generator=generator)
    context = torch.randn(batch, tokens, config.context_dim or 1, generator=generator)
    mask = torch.ones(batch, tokens, dtype=torch.bool)
    mask[0, 4:] = False
    return x, torch.tensor([999, 10][:batch]), context, mask


@pytest.mark.parametrize("fusion", ["ada_sola_bias", "ada_sola", "ada_single", "ada", "token"])
@pytest.mark.parametrize("long_skip", [True, False])
def test_every_variant_predicts_latent_shaped_velocity(fusion, long_skip):
    config = dataclasses.replace(TINY, time_fusion=fusion, long_skip=long_skip)
    model = perturbed(config)
    x, t, context, mask = inputs()
    with torch.no_grad():
        out = model(x, t, context, mask)
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_baseline_presets_share_the_l_size_but_differ_in_design():
    names = ["crossdit-l", "pixart-l", "stable-audio-dit-l"]
    for name in names:
        config = DIT_PRESETS[name]
        assert config.embed_dim == 1024 and config.depth == 24 and not config.long_skip
    assert {DIT_PRESETS[n].time_fusion for n in names} == {"ada", "ada_single", "token"}


def test_patch_size_and_absolute_positions():
    config = dataclasses.replace(TINY, patch_size=2, abs_pos_length=16)
    model = perturbed(config)
    x, t, context, mask = inputs(length=20)
    with torch.no_grad():
        assert model(x, t, context, mask).shape == x.shape
    with pytest.raises(ValueError, match="multiple of patch_size"):
        model(x[..., :19], t, context, mask)


def test_unconditional_dit_without_text():
    config = dataclasses.replace(TINY, context_dim=None)
    model = perturbed(config)
    x, t, _, _ = inputs()
    with torch.no_grad():
        assert model(x, t).shape == x.shape
    assert not any("cross_attn" in k for k in model.state_dict())


def test_no_gt_equals_everything_masked():
    model = perturbed(TINY)
    x, t, context, mask = inputs()
    gt = torch.randn_like(x)
    with torch.no_grad():
        free = model(x, t, context, mask)
        all_masked = model(x, t, context, mask, gt=gt, gt_mask=torch.ones_like(x, dtype=torch.bool))
    torch.testing.assert_close(free, all_masked)


def test_known_frames_matter_and_masked_frames_are_ignored():
    model = perturbed(TINY)
    x, t, context, mask = inputs()
    gt = torch.randn_like(x)
    gt_mask = torch.zeros(x.shape[0], x.shape[-1], dtype=torch.bool)
    gt_mask[:, 5:12] = True
    changed_inside = gt.clone()
    changed_inside[..., 5:12] += 3.0
    changed_outside = gt.clone()
    changed_outside[..., :5] += 3.0
    with torch.no_grad():
        base = model(x, t, context, mask, gt=gt, gt_mask=gt_mask)
        inside = model(x, t, context, mask, gt=changed_inside, gt_mask=gt_mask)
        outside = model(x, t, context, mask, gt=changed_outside, gt_mask=gt_mask)
        mask_3d = model(x, t, context, mask, gt=gt, gt_mask=gt_mask[:, None].expand_as(x))
    torch.testing.assert_close(base, inside)
    assert (base - outside).abs().max() > 1e-3
    torch.testing.assert_close(base, mask_3d)


def test_context_cache_and_scalar_timestep_give_the_same_result():
    model = perturbed(TINY)
    x, _, context, mask = inputs()
    t = torch.tensor([500, 500])
    with torch.no_grad():
        direct = model(x, t, context, mask)
        cached = model(x, 500, model.prepare_context(context, mask))
    torch.testing.assert_close(direct, cached)


def test_padded_text_tokens_do_not_change_the_output():
    model = perturbed(TINY)
    x, t, context, mask = inputs()
    padded_context = torch.cat([context, torch.randn(2, 5, context.shape[-1])], dim=1)
    padded_mask = torch.cat([mask, torch.zeros(2, 5, dtype=torch.bool)], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(
            model(x, t, context, mask),
            model(x, t, padded_context, padded_mask),
            atol=1e-5,
            rtol=1e-5,
        )


def test_fresh_model_ignores_text_because_cross_attention_starts_at_zero():
    model = EzAudioDiT(TINY).eval()
    x, t, context, mask = inputs()
    with torch.no_grad():
        torch.testing.assert_close(model(x, t, context, mask), model(x, t, -context, mask))


def test_batch_items_are_independent():
    model = perturbed(TINY)
    x, t, context, mask = inputs()
    with torch.no_grad():
        both = model(x, t, context, mask)
        first = model(x[:1], t[:1], context[:1], mask[:1])
    torch.testing.assert_close(both[:1], first, atol=1e-5, rtol=1e-5)


def test_gradient_checkpointing_gives_the_same_gradients():
    model = perturbed(TINY).train()
    x, t, context, mask = inputs()
    model(x, t, context, mask).square().mean().backward()
    plain = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.gradient_checkpointing = True
    model(x, t, context, mask).square().mean().backward()
    for a, p in zip(plain, model.parameters()):
        torch.testing.assert_close(a, p.grad)


def test_bf16_runs_close_to_fp32():
    model = perturbed(TINY)
    x, t, context, mask = inputs()
    with torch.no_grad():
        full = model(x, t, context, mask)
        half = model.to(torch.bfloat16)(x, t, context, mask).float()
    assert (full - half).abs().max() / full.abs().max() < 0.05


def test_save_and_load_round_trip(tmp_path):
    model = perturbed(TINY)
    model.save_pretrained(tmp_path / "dit")
    loaded = EzAudioDiT.from_pretrained(tmp_path / "dit")
    assert loaded.config == TINY
    x, t, context, mask = inputs()
    with torch.no_grad():
        torch.testing.assert_close(model(x, t, context, mask), loaded(x, t, context, mask))


def test_loading_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        EzAudioDiT.from_pretrained(tmp_path / "nothing")
    EzAudioDiT(TINY).save_pretrained(tmp_path / "dit")
    (tmp_path / "dit" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="corrupt"):
        EzAudioDiT.from_pretrained(tmp_path / "dit")
    EzAudioDiT(dataclasses.replace(TINY, embed_dim=32)).save_pretrained(tmp_path / "other")
    (tmp_path / "other" / "config.json").write_text((tmp_path / "dit" / "config.json").read_text())
    with pytest.raises(CheckpointError, match="does not fit its config"):
        EzAudioDiT.from_pretrained(tmp_path / "other")


def test_bad_shapes_and_configs_are_refused():
    model = perturbed(TINY)
    x, t, context, mask = inputs()
    with pytest.raises(ValueError, match="x must be"):
        model(x[:, :3], t, context, mask)
    with pytest.raises(ValueError, match="context must be"):
        model(x, t, context[..., :5], mask)
    with pytest.raises(ValueError, match="gt_mask"):
        model(x, t, context, mask, gt=x)
    with pytest.raises(InvalidInputError, match="divisible"):
        DiTConfig(embed_dim=30, num_heads=4)
    with pytest.raises(InvalidInputError, match="time_fusion"):
        DiTConfig(time_fusion="magic")


def test_saved_files_get_the_usual_permissions(tmp_path):
    import os
    import stat

    umask = os.umask(0o022)
    try:
        EzAudioDiT(TINY).save_pretrained(tmp_path / "dit")
    finally:
        os.umask(umask)
    for name in ("config.json", "model.safetensors"):
        mode = stat.S_IMODE((tmp_path / "dit" / name).stat().st_mode)
        assert mode == 0o644, (name, oct(mode))
