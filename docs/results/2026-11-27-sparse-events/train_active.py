"""Experiment: `ezaudio train` with the v-loss weighted per frame by its activity
(deviation of the latent frame from the clip's median frame), weight 1 + ALPHA*min(dev/TAU, 1)."""
import os, sys
import ezaudio.train.diffusion_loss as D
import ezaudio.train.trainer as T
ALPHA = float(os.environ.get("ALPHA", "4")); TAU = float(os.environ.get("TAU", "4"))
orig_mml, orig_mvl = D.masked_modelling_loss, D.masked_velocity_loss
state = {}
def mml(model, schedule, latents, valid, *a, **k):
    med = latents.median(dim=2, keepdim=True).values  # [B, C, 1]
    dev = (latents - med).norm(dim=1)  # [B, L]
    state["w"] = 1 + ALPHA * (dev / TAU).clamp(max=1)
    return orig_mml(model, schedule, latents, valid, *a, **k)
def mvl(prediction, target, frame_weight, sample_weight=None):
    return orig_mvl(prediction, target, frame_weight.float() * state["w"], sample_weight)
D.masked_modelling_loss = mml; D.masked_velocity_loss = mvl; T.masked_modelling_loss = mml
from ezaudio.cli import main
sys.exit(main(sys.argv[1:]))
