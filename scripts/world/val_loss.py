"""Validation loss of every checkpoint of training runs (Fig. 2 in miniature).

    python scripts/world/val_loss.py RUN_DIR [RUN_DIR ...] --out val_loss.json [--batches 4]

For each run the trainer is rebuilt from the run's own ``recipe.yaml`` with the data
pointed at the validation split, and every checkpoint's EMA weights are scored with the
trainer's own loss (:meth:`DiTTrainer.latent_loss`) on the same validation batches, with
the same noise, timesteps, masks and caption dropout for every checkpoint and every run
(the generator is re-seeded before each checkpoint). So the curves of different
architectures are comparable point for point.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "src"))


def validation_losses(
    run_dir: Path,
    split: str = "valid",
    batches: int = 4,
    seed: int = 1234,
    latents: Path | None = None,
) -> list[dict]:
    """[{"step": s, "loss": mean loss}] for every checkpoint of ``run_dir``, in step order.

    ``latents``: score on this latent cache's ``split`` instead of the run's own cache (runs
    trained on different captions, scored on the same clean ones)."""
    import torch

    from ezaudio.train import checkpointing as ckpt
    from ezaudio.train.recipe import load_recipe
    from ezaudio.train.trainer import DiTTrainer

    recipe = load_recipe(
        run_dir / "recipe.yaml",
        [f"data.split={split}", "model.init_from=null", f"run.output_dir={run_dir}"]
        + ([f"data.latents={Path(latents).resolve()}"] if latents is not None else []),
    )
    trainer = DiTTrainer(recipe)
    model = trainer.accelerator.unwrap_model(trainer.model)
    data = [
        trainer.dataset[i]
        for i in range(min(len(trainer.dataset), batches * recipe.optim.batch_size))
    ]
    size = recipe.optim.batch_size
    groups = [data[i : i + size] for i in range(0, len(data), size)]
    rows = []
    for folder in ckpt.list_checkpoints(trainer.checkpoint_dir):
        state = ckpt.read_checkpoint(folder, 0)
        model.load_state_dict(
            {k: v.to(model.state_dict()[k].dtype) for k, v in state["ema"].items()}
        )
        model.eval()
        trainer.generator.manual_seed(seed)
        total, count = 0.0, 0
        with torch.no_grad():
            for group in groups:
                mean = torch.stack([item["mean"] for item in group]).to(trainer.device)
                std = torch.stack([item["std"] for item in group]).to(trainer.device)
                valid = torch.stack([item["valid"] for item in group]).to(trainer.device)
                noise = torch.randn(mean.shape, generator=trainer.generator).to(trainer.device)
                latents = mean + std * noise
                captions = [item["caption"] for item in group]
                loss = trainer.latent_loss(latents, valid, captions)
                total += float(loss) * len(group)
                count += len(group)
        rows.append({"step": int(state["trainer"]["step"]), "loss": total / count})
    return rows


def plot_curves(result: dict[str, list[dict]], path: Path) -> Path:
    """Validation loss against steps, one line per run (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    for name, rows in result.items():
        axes.plot([r["step"] for r in rows], [r["loss"] for r in rows], marker=".", label=name)
    axes.set_xlabel("training step")
    axes.set_ylabel("validation loss (masked v-prediction MSE)")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="training run folders")
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    parser.add_argument("--batches", type=int, default=4, help="validation batches per point")
    parser.add_argument("--split", default="valid")
    parser.add_argument("--latents", type=Path, help="score on this latent cache's split")
    parser.add_argument("--plot", type=Path, help="also draw the curves into this PNG")
    args = parser.parse_args(argv)
    result = {
        run.name: validation_losses(run, args.split, args.batches, latents=args.latents)
        for run in args.runs
    }
    args.out.write_text(json.dumps(result, indent=2))
    if args.plot:
        plot_curves(result, args.plot)
    for name, rows in result.items():
        print(name, " ".join(f"{r['step']}:{r['loss']:.4f}" for r in rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
