"""Training: recipes, the diffusion loss, EMA, checkpoints and the accelerate-based trainer."""
