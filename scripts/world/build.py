"""Build the offline default model from an empty folder, with the project's own commands.

    python scripts/world/build.py WORK                      # everything, resumable
    python scripts/world/build.py WORK --ablations          # + Table I and Fig. 2 runs
    python scripts/world/build.py WORK --scale smoke        # a minutes-long dry run on a CPU
    python scripts/world/build.py WORK --until vae          # stop after the VAE (and evaluators)
    python scripts/world/build.py WORK --vae-from VAE       # the VAE run goes on from VAE
    python scripts/world/build.py WORK --posterior-noise 1  # the official posterior samples
    python scripts/world/build.py WORK --scale cpu --budget-minutes vae=150
        # no GPU: run again in each session; the build goes past the VAE once it has
        # trained its 12000 steps (docs/results.md, the CPU attempt)

Steps (each one a project command; a finished step is skipped on a re-run, an unfinished
training run continues from its last checkpoint):

1. ``world``    ``ezaudio data synth`` -- the synthetic captioned world (docs/synth.md)
2. ``vae``      ``ezaudio train-vae recipes/world/vae.yaml`` -- the 16 kHz waveform VAE, on
                the world's clips plus one-second tone clips (``tone_clips.py``,
                ``WORK/tones``; ``Scale.tone_clips``)
   ``decoder``  ``ezaudio train-vae ... model.freeze_encoder=true`` -- its decoder alone,
                fine-tuned with a waveform L1 term (removes its DC offset and noise floor;
                the encoder, and so the latents, stay as they are) on the same clips with
                cuts of the weakest classes' events in front (``event_cuts.py``,
                ``WORK/event_cuts``; ``Scale.event_cuts``); the tone clips and the cuts
                teach it to render tones and events rather than noise bands
3. ``tagger``   ``ezaudio eval-train tagger`` -- CNN14-style tagger (FD, KL, IS, adherence)
4. ``clap``     ``ezaudio eval-train clap`` -- small CLAP (audio tower + MiniLM)
5. ``latents``  ``ezaudio data encode`` -- latent caches of the clean and noisy manifests
6. ``filter``   ``ezaudio data clap-filter`` -- noisy captions kept by the small CLAP
7. ``stage1``   ``ezaudio train recipes/world/stage1.yaml`` -- masked pre-training, no text
8. ``stage2``   ``... stage2.yaml`` -- text alignment on the CLAP-filtered noisy captions
9. ``stage3``   ``... stage3.yaml`` -- fine-tuning on the clean captions
10. ``package`` the EMA weights with the fine-tuned decoder, float16 (``WORK/default_model``)

With ``--ablations`` (docs/results.md): Table I rows (stage 2 without stage 1 and on
unfiltered / differently filtered captions) and Fig. 2 runs (EzAudio-DiT, CrossDiT and
PixArt-style AdaLN-single at equal size, trained from scratch on the clean captions with a
checkpoint every ``fig2_every`` steps for the validation-loss curves of
``scripts/world/val_loss.py``).

``--posterior-noise`` (default 0) is how the decoder step and the three stages draw their
training latents from the VAE's posterior, mean + posterior_noise x std x noise: 0 trains
them on the means, as the bundled default was (docs/results.md, "Decoding posterior
means"); 1 is the official recipe's samples. The VAE step itself always trains on samples.
``--activity-weight A`` (default 0, the paper's loss) sets the stages' ``optim.activity_weight``
(docs/training.md, "Short events in long clips"). A build folder keeps both values it was
started with.

``--budget-minutes STEP=MIN`` bounds a training step by wall time (for a lent GPU): when
the time is up the run is stopped and exported from its last checkpoint; ``build.json``
records the steps each run reached. Every command's output goes to ``WORK/logs/``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RECIPES = REPO / "recipes" / "world"
DEFAULT_NAME = "ezaudio-s-world"
#: Steps ``--until`` can stop after (the evaluators are trained with the VAE; the CLAP filter
#: with the latents).
UNTIL_STEPS = ("world", "vae", "decoder", "latents", "stage1", "stage2")
#: Steps whose training latents ``--posterior-noise`` sets.
LATENT_STEPS = ("decoder", "stage1", "stage2", "stage3")
# Sampling defaults of the shipped model: 25 DDIM steps keep 10 s of audio under 10 s on a
# 2-core CPU; guidance and rescale from the Fig. 3 sweep (docs/results.md).
DEFAULT_SAMPLING = {"steps": 25, "guidance_scale": 3.0, "guidance_rescale": 0.5, "seconds": 10.0}


@dataclass(frozen=True)
class Scale:
    """Sizes of one build: the world, the training steps and batches."""

    clips: int = 4000
    seconds: float = 10.0
    vae_steps: int = 6000
    vae_batch: int = 32
    decoder_steps: int = 10000  # decoder-only fine-tuning after the VAE (0: none)
    decoder_batch: int = 16  # of 0.5 s crops, at decoder_lr
    decoder_lr: float = 6e-4
    # the decoder's data also holds cuts around the events of event_cuts.WEAK_CLASSES in the
    # world's training clips (WORK/event_cuts, event_cuts.py)
    event_cuts: bool = True
    # cuts listed several times in the decoder's manifest (event_cuts.py --repeat): the classes
    # the bundled decoder's last CPU runs oversampled ("" lists every cut once)
    event_cut_repeats: str = "piano=3,plucked_string=3,alarm=3,car_horn=3,bell=3,knocking=3"
    # one-second tone clips (WORK/tones, tone_clips.py) mixed into the data of the VAE and
    # of the decoder step (0: the world's clips alone)
    tone_clips: int = 1600
    evaluator_steps: int | None = None  # None: the evaluators' own defaults
    stage_steps: tuple[int, int, int] = (4000, 3000, 1500)
    batch: int = 64
    checkpoint_every: int = 250
    fig2_steps: int = 2000
    fig2_every: int = 250
    filter_quantiles: tuple[float, ...] = (0.15, 0.3, 0.5)  # share of noisy pairs dropped
    main_quantile: float = 0.3
    workers: int = max(1, min(16, (os.cpu_count() or 1)))
    extra: dict[str, list[str]] = field(default_factory=dict)
    tagger_widths: tuple[int, ...] | None = None  # None: the tagger's default widths
    side_by_side_threads: int | None = None  # torch threads of each of the VAE and evaluators
    vae_must_finish: bool = False  # a VAE stopped by its budget: stop the build, resume later


def sets(*overrides: str) -> list[str]:
    """Recipe overrides as command-line arguments: ``--set A --set B ...``."""
    return [arg for item in overrides for arg in ("--set", item)]


SCALES = {
    "full": Scale(),
    "smoke": Scale(
        clips=40,
        seconds=4.0,
        vae_steps=4,
        vae_batch=4,
        decoder_steps=2,
        decoder_batch=2,
        tone_clips=8,
        evaluator_steps=4,
        stage_steps=(4, 4, 4),
        batch=4,
        checkpoint_every=2,
        fig2_steps=4,
        fig2_every=2,
        workers=1,
        extra={
            "vae": sets(
                "loss.discriminator_start_step=2",
                "data.num_workers=0",
                "data.clip_seconds=0.5",
                "loss.disc_filters=4",
            ),
            "dit": sets("data.num_workers=0"),
        },
    ),
    # The default model on a 2-core CPU over several sessions (docs/results.md): a narrow
    # VAE trained on reconstruction losses only (the STFT discriminator costs ~5x the VAE
    # step on a CPU) that must reach its steps before the build goes on (a budget-stopped
    # run continues on the next call), a narrow tagger, one torch thread each while they
    # train side by side; a 192-wide 4-block EzAudio-DiT on batches of 16 full 10 s clips.
    "cpu": Scale(
        clips=2000,
        vae_steps=12000,
        vae_batch=16,
        evaluator_steps=1000,
        stage_steps=(1500, 1500, 1000),
        batch=16,
        checkpoint_every=100,
        workers=2,
        tagger_widths=(16, 32, 64, 64, 128, 128),
        side_by_side_threads=1,
        vae_must_finish=True,
        extra={
            "vae": sets(
                "model.vae_overrides={channels: 16}",
                "loss.discriminator_start_step=1000000000",
                "data.clip_seconds=0.5",
                "data.num_workers=0",
            ),
            "dit": sets("model.dit_overrides={embed_dim: 192, depth: 4}", "data.num_workers=0"),
        },
    ),
}


class Build:
    """One build folder: runs steps, skips finished ones, records what happened."""

    def __init__(
        self,
        work: Path,
        scale: Scale,
        device: str,
        budgets: dict[str, float],
        vae_from: Path | None = None,
        posterior_noise: float = 0.0,
        activity_weight: float = 0.0,
    ):
        self.work = work.resolve()
        self.posterior_noise = posterior_noise  # of the decoder step and the DiT stages
        self.activity_weight = activity_weight  # of the DiT stages' loss
        self.vae_from = vae_from.resolve() if vae_from is not None else None
        self.scale = scale
        self.device = device
        self.budgets = budgets
        self.logs = self.work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.record_path = self.work / "build.json"
        self.record = json.loads(self.record_path.read_text()) if self.record_path.exists() else {}
        self.record.setdefault("steps", {})
        self.record["machine"] = machine()

    # -- bookkeeping ----------------------------------------------------------------------
    def done(self, step: str) -> bool:
        return self.record["steps"].get(step, {}).get("done", False)

    def mark(self, step: str, **info) -> None:
        self.record["steps"][step] = {"done": True, **info}
        self.save()

    def save(self) -> None:
        tmp = self.record_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.record, indent=2))
        os.replace(tmp, self.record_path)

    def path(self, *parts: str) -> Path:
        return self.work.joinpath(*parts)

    # -- running commands -----------------------------------------------------------------
    def start(self, name: str, args: list[str], threads: int | None = None) -> subprocess.Popen:
        """Start ``python -m ezaudio.cli ARGS`` in its own process group, logging to a file
        (``threads``: its torch threads, for jobs that share a small CPU)."""
        log = open(self.logs / f"{name}.log", "a")
        log.write(f"\n$ ezaudio {' '.join(args)}\n")
        log.flush()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        if threads:
            env["OMP_NUM_THREADS"] = str(threads)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO / "src"), env.get("PYTHONPATH", "")) if p
        )
        return subprocess.Popen(
            [sys.executable, "-m", "ezaudio.cli", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.work,
            env=env,
            start_new_session=True,
        )

    def run(self, name: str, args: list[str]) -> None:
        """Run one command to its end; a failure stops the build with the log's last lines."""
        self.wait({name: (self.start(name, args), None)})

    def wait(self, jobs: dict[str, tuple[subprocess.Popen, float | None]]) -> dict[str, str]:
        """Wait for every job; a job past its deadline (seconds since now) is stopped.

        Returns name -> "finished" or "stopped"; raises if a job failed."""
        started = time.monotonic()
        outcome: dict[str, str] = {}
        while len(outcome) < len(jobs):
            for name, (process, budget) in jobs.items():
                if name in outcome:
                    continue
                code = process.poll()
                if code is None:
                    if budget is not None and time.monotonic() - started > budget:
                        os.killpg(process.pid, signal.SIGKILL)
                        process.wait()
                        outcome[name] = "stopped"
                    continue
                if code != 0:
                    for other, (proc, _) in jobs.items():
                        if other not in outcome and proc.poll() is None:
                            os.killpg(proc.pid, signal.SIGKILL)
                    tail = (self.logs / f"{name}.log").read_text().splitlines()[-15:]
                    raise SystemExit(f"{name} failed (exit {code}):\n" + "\n".join(tail))
                outcome[name] = "finished"
            time.sleep(0.5)
        return outcome

    # -- training runs --------------------------------------------------------------------
    def train_args(self, command: str, recipe: Path, sets: list[str], resume: bool) -> list[str]:
        args = [command, str(recipe), "--quiet"]
        for item in sets:
            args += ["--set", item]
        if resume:
            args.append("--resume")
        return args

    def train_jobs(
        self,
        runs: dict[str, tuple[str, Path, list[str], str]],
        carry_on: tuple[str, ...] = (),
        threads: int | None = None,
    ) -> None:
        """Train several runs at once: name -> (command, recipe, overrides, budget key).

        A run with a checkpoint continues from it. A budget (minutes) becomes the run's
        ``run.max_minutes``: the trainer stops at the first step past it, checkpoints and
        exports. A run that hangs 2 minutes past its budget is killed and exported from
        its last checkpoint. Runs named in ``carry_on`` that stopped short of their steps
        are not marked done: a later call goes on with them."""
        todo = {name: spec for name, spec in runs.items() if not self.done(name)}
        if not todo:
            return
        jobs = {}
        for name, (command, recipe, sets, budget_key) in todo.items():
            budget = self.budgets.get(budget_key)
            if budget:
                sets = [*sets, f"run.max_minutes={budget}"]
                todo[name] = (command, recipe, sets, budget_key)
            resume = any(self.path(name, "checkpoints").glob("step-*"))
            args = self.train_args(command, recipe, self.run_sets(name, sets), resume)
            jobs[name] = (
                self.start(name, args, threads),
                budget * 60 + 120 if budget else None,
            )
        started = time.monotonic()
        outcome = self.wait(jobs)
        seconds = round(time.monotonic() - started, 1)
        for name, how in outcome.items():
            command, recipe, sets, _ = todo[name]
            if how == "stopped":  # hung past its budget: export its last checkpoint
                step = last_step(self.path(name, "checkpoints"))
                if step is None:
                    raise SystemExit(f"{name}: stopped by its time budget before a checkpoint")
                sets = [*sets, f"optim.max_steps={step}"]
                self.run(name, self.train_args(command, recipe, self.run_sets(name, sets), True))
            steps = last_step(self.path(name, "checkpoints"))
            if name in carry_on and steps is not None and steps < planned_steps(sets):
                continue
            self.mark(
                name,
                outcome=how,
                steps=steps,
                planned_steps=planned_steps(sets),
                seconds=seconds,
                recipe=str(recipe),
                overrides=self.run_sets(name, sets),
            )

    def run_sets(self, name: str, sets: list[str]) -> list[str]:
        return [f"run.output_dir={self.path(name)}", *sets]

    # -- the steps ------------------------------------------------------------------------
    def world(self) -> None:
        if self.done("world"):
            return
        s = self.scale
        summary = self.path("world", "world.json")
        if summary.is_file():  # made beforehand (e.g. beside a GPU benchmark)
            info = json.loads(summary.read_text())
            if info.get("clips") == s.clips:
                self.mark("world", clips=s.clips, seconds=s.seconds, made="beforehand")
                return
        self.run(
            "world",
            [
                "data",
                "synth",
                str(self.path("world")),
                "--clips",
                str(s.clips),
                "--seconds",
                str(s.seconds),
                "--workers",
                str(s.workers),
                "--quiet",
            ],
        )
        self.mark("world", clips=s.clips, seconds=s.seconds)

    def use_evaluators(self, folder: Path) -> None:
        """Take a tagger and a small CLAP trained elsewhere on the same world."""
        for kind in ("tagger", "clap"):
            if not self.done(kind):
                target = self.path("evaluators", kind)
                if target.exists():
                    shutil.rmtree(target)
                shutil.copytree(folder / kind, target)
                self.mark(kind, copied_from=str(folder / kind))

    def use_filtered(self, folder: Path) -> dict[str, float]:
        """Take CLAP-filtered manifests made elsewhere (``filter/`` of another build of the
        same world: ``q*.jsonl`` with audio paths relative to the world folder)."""
        record = json.loads((folder / "thresholds.json").read_text())
        for name in record:
            target = self.path("filter", f"{name}.jsonl")
            target.parent.mkdir(parents=True, exist_ok=True)
            lines = (folder / f"{name}.jsonl").read_text().splitlines()
            rows = [json.loads(line) for line in lines if line.strip()]
            for row in rows:
                row["audio"] = str(self.path("world", "audio", Path(row["audio"]).name))
            target.write_text("".join(json.dumps(row) + "\n" for row in rows))
            self.mark(f"filter/{name}", threshold=record[name], copied_from=str(folder))
        self.mark("filter/score", copied_from=str(folder))
        return record

    def vae_and_evaluators(self, evaluators: bool = True) -> None:
        """Train the VAE and (``evaluators``) the tagger and the small CLAP, side by side."""
        s = self.scale
        jobs = {}
        threads = None
        if evaluators and (not self.done("tagger") or not self.done("clap")):
            threads = s.side_by_side_threads
            extra = ["--steps", str(s.evaluator_steps)] if s.evaluator_steps else []
            for kind in ("tagger", "clap"):
                if not self.done(kind):
                    args = [
                        "eval-train",
                        kind,
                        str(self.path("world")),
                        "--out",
                        str(self.path("evaluators", kind)),
                        "--device",
                        self.device,
                        "--quiet",
                        *extra,
                    ]
                    if kind == "tagger" and s.tagger_widths:
                        args += ["--widths", ",".join(map(str, s.tagger_widths))]
                    jobs[kind] = (self.start(kind, args, threads), None)
        vae_sets = [
            f"data.manifest={self.training_manifest()}",
            f"optim.max_steps={s.vae_steps}",
            f"optim.batch_size={s.vae_batch}",
            f"run.checkpoint_every={s.checkpoint_every}",
        ]
        if self.vae_from is not None:  # go on from a VAE trained in an earlier session
            vae_sets.append(f"model.init_from={self.vae_from}")
        if not self.done("vae"):
            self.train_jobs_with_extra(
                {"vae": ("train-vae", RECIPES / "vae.yaml", vae_sets, "vae")},
                "vae",
                carry_on=("vae",) if s.vae_must_finish else (),
                threads=threads,
            )
        if jobs:
            self.wait(jobs)
            for kind in jobs:
                self.mark(kind, report=str(self.path("evaluators", kind, "report.json")))
        if not self.done("vae"):
            step = last_step(self.path("vae", "checkpoints"))
            raise SystemExit(
                f"vae: stopped by its time budget at step {step} of {s.vae_steps}; "
                "run the same command again to go on"
            )

    def training_manifest(self) -> Path:
        """The VAE's and the decoder's data: the world's training clips, plus
        ``tone_clips`` tone clips written once to ``WORK/tones``."""
        manifest = self.path("world", "train.jsonl")
        if self.scale.tone_clips <= 0:
            return manifest
        tones = self.path("tones", "train.jsonl")
        if not tones.is_file():  # written last by tone_clips.py: present means complete
            argv = [str(self.path("tones")), "--clips", str(self.scale.tone_clips),
                    "--mix-with", str(manifest)]  # fmt: skip
            if sibling("tone_clips").main(argv) != 0:
                raise SystemExit("the tone clips could not be written to WORK/tones")
        return tones

    def decoder_manifest(self) -> Path:
        """The decoder's data: :meth:`training_manifest` with, in front when
        ``event_cuts``, the cuts of the weakest classes' events written once to
        ``WORK/event_cuts`` (those of ``event_cut_repeats`` listed several times)."""
        manifest = self.training_manifest()
        if not self.scale.event_cuts:
            return manifest
        cuts = self.path("event_cuts", "train.jsonl")
        if not cuts.is_file():  # written last by event_cuts.py: present means complete
            argv = [str(self.path("world")), str(self.path("event_cuts")),
                    "--repeat", self.scale.event_cut_repeats,
                    "--mix-with", str(manifest)]  # fmt: skip
            if sibling("event_cuts").main(argv) != 0:
                raise SystemExit("the event cuts could not be written to WORK/event_cuts")
        return cuts

    def decoder(self) -> None:
        """Fine-tune the VAE's decoder alone (encoder frozen) with a waveform L1 term and
        no discriminator, on the world's training clips plus ``tone_clips`` tone clips and
        the event cuts (docs/results.md, "The default model", "Teaching the decoder tones"
        and "Event cuts for the decoder")."""
        s = self.scale
        if s.decoder_steps <= 0 or self.done("decoder"):
            return
        sets = [
            f"data.manifest={self.decoder_manifest()}",
            f"model.init_from={self.path('vae', 'model')}",
            "model.freeze_encoder=true",
            "loss.latent_spectrum=0",  # the heads teach the encoder, which is frozen here
            "loss.latent_pitch=0",
            f"model.posterior_noise={self.posterior_noise}",
            "loss.l1=0.1",
            "loss.discriminator_start_step=1000000000",
            f"optim.max_steps={s.decoder_steps}",
            f"optim.batch_size={s.decoder_batch}",
            f"optim.lr={s.decoder_lr}",
            "data.clip_seconds=0.5",
            f"run.checkpoint_every={s.checkpoint_every}",
        ]
        self.train_jobs_with_extra(
            {"decoder": ("train-vae", RECIPES / "vae.yaml", sets, "decoder")}, "vae"
        )

    def train_jobs_with_extra(
        self, runs, kind: str, carry_on: tuple[str, ...] = (), threads: int | None = None
    ) -> None:
        extra = self.scale.extra.get(kind, [])
        sets = [item for flag, item in zip(extra[::2], extra[1::2]) if flag == "--set"]
        runs = {n: (c, r, [*o, *sets], b) for n, (c, r, o, b) in runs.items()}
        self.train_jobs(runs, carry_on, threads)

    def latents(self, manifests: dict[str, Path]) -> None:
        """Encode manifests into latent caches (``latents/NAME``), side by side."""
        self.finish(self.start_latents(manifests))

    def finish(self, jobs: dict[str, tuple[subprocess.Popen, float | None]]) -> None:
        """Wait for jobs started earlier and mark them done."""
        if jobs:
            self.wait(jobs)
            for key in jobs:
                self.mark(key)

    def start_latents(self, manifests: dict[str, Path]) -> dict:
        """Start ``ezaudio data encode`` for each manifest not encoded yet."""
        jobs = {}
        for name, manifest in manifests.items():
            key = f"latents/{name}"
            if self.done(key):
                continue
            args = [
                "data",
                "encode",
                str(manifest),
                "--vae",
                str(self.path("vae", "model")),
                "--out",
                str(self.path("latents", name)),
                "--device",
                self.device,
                "--batch-size",
                "32",
                "--quiet",
            ]
            jobs[key] = (self.start(f"latents-{name}", args), None)
        return jobs

    def clap_filter(self, quantiles: tuple[float, ...]) -> dict[str, float]:
        """Score the noisy train captions once; keep those above quantile thresholds."""
        noisy = self.path("world", "train_noisy.jsonl")
        scores = self.path("filter", "scores", "clap_scores.csv")

        def filter_args(threshold: float, out: str, report: str, *extra) -> list[str]:
            """``ezaudio data clap-filter`` of the noisy captions at ``threshold``."""
            return [
                "data", "clap-filter", str(noisy), "--clap", str(self.path("evaluators", "clap")),
                "--threshold", f"{threshold:.6f}", "--out", str(self.path("filter", out)),
                "--report", str(self.path("filter", report)), *map(str, extra), "--quiet",
            ]  # fmt: skip

        if not self.done("filter/score"):
            self.run("filter", filter_args(-1, "all.jsonl", "scores", "--device", self.device))
            self.mark("filter/score")

        values = sorted(read_score_column(scores))
        thresholds = {}
        for q in quantiles:
            threshold = values[min(len(values) - 1, int(q * len(values)))]
            name = f"q{round(q * 100):02d}"
            thresholds[name] = threshold
            if not self.done(f"filter/{name}"):
                self.run(
                    "filter",
                    filter_args(threshold, f"{name}.jsonl", f"report-{name}", "--scores", scores),
                )
                self.mark(f"filter/{name}", quantile=q, threshold=threshold)
        (self.path("filter", "thresholds.json")).write_text(json.dumps(thresholds, indent=1))
        return thresholds

    def dit_sets(self, stage: int, latents: str, steps: int, init: str | None) -> list[str]:
        s = self.scale
        sets = [
            f"model.vae={self.path('vae', 'model')}",
            f"data.latents={self.path('latents', latents)}",
            f"data.posterior_noise={self.posterior_noise}",
            f"optim.activity_weight={self.activity_weight}",
            f"optim.max_steps={steps}",
            f"optim.batch_size={s.batch}",
            f"run.checkpoint_every={s.checkpoint_every}",
            f"model.init_from={init if init else 'null'}",
        ]
        if self.device != "cpu" and gpu_available():
            sets.append("optim.mixed_precision=bf16")
        return sets

    def package(self) -> None:
        """The stage-3 EMA weights with the fine-tuned decoder (when there is one) as
        float16 safetensors: ``WORK/default_model``."""
        from ezaudio.model_folder import pack_half_precision

        out = self.path("default_model")
        model = self.path("stage3", "model")
        if self.done("decoder"):
            swap_decoder = sibling("swap_decoder").swap_decoder
            swap_decoder(model, self.path("decoder", "model"), out, True,
                         DEFAULT_SAMPLING, DEFAULT_NAME)  # fmt: skip
        else:
            pack_half_precision(model, out, DEFAULT_SAMPLING, DEFAULT_NAME)
        self.mark("package", folder=str(out), bytes=folder_bytes(out))


def sibling(name: str):
    """The module ``scripts/world/NAME.py`` (imported once)."""
    import importlib.util

    module_name = f"world_{name}"
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            module_name, Path(__file__).with_name(f"{name}.py")
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    return sys.modules[module_name]


def read_score_column(path: Path) -> list[float]:
    with open(path, newline="") as handle:
        return [float(row["score"]) for row in csv.DictReader(handle) if row.get("score")]


def planned_steps(sets: list[str]) -> int | None:
    """The last ``optim.max_steps=N`` of a list of overrides."""
    values = [int(item.split("=", 1)[1]) for item in sets if item.startswith("optim.max_steps=")]
    return values[-1] if values else None


def last_step(checkpoints: Path) -> int | None:
    steps = [int(p.name.split("-")[1]) for p in checkpoints.glob("step-*") if p.is_dir()]
    return max(steps) if steps else None


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def gpu_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def machine() -> dict[str, str]:
    info = {
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpus": str(os.cpu_count()),
    }
    try:
        import torch

        info["torch"] = torch.__version__
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


def keep_folder_value(
    b: Build, key: str, value: float, steps: tuple[str, ...], before: float
) -> None:
    """Refuse ``value`` for ``--KEY`` when the folder's ``build.json`` holds another (or, with
    no record, when one of ``steps`` is done: then ``before``, the value before the option)."""
    earlier = b.record.get(key)
    if earlier is None and any(b.done(step) for step in steps):
        earlier = before
    if earlier is not None and earlier != value:
        flag = "--" + key.replace("_", "-")
        raise SystemExit(
            f"this build folder was trained with {flag} {earlier:g}; "
            "go on with the same value or start a new folder"
        )


def build(
    work: Path,
    scale: Scale,
    device: str,
    budgets: dict[str, float],
    ablations: bool,
    evaluators: Path | None = None,
    filtered: Path | None = None,
    until: str | None = None,
    vae_from: Path | None = None,
    posterior_noise: float = 0.0,
    activity_weight: float = 0.0,
):
    """Run every step of the build (see the module docstring). ``evaluators`` / ``filtered``:
    a tagger + CLAP / CLAP-filtered manifests made elsewhere on the same world. ``until``:
    stop after that step (one of :data:`UNTIL_STEPS`). ``vae_from``: the VAE run starts
    from these weights (a VAE trained in an earlier session) instead of from scratch.
    ``posterior_noise``: how the decoder step and the stages draw latents (0: the means).
    ``activity_weight``: the stages' ``optim.activity_weight`` (0: the paper's loss)."""
    if until is not None and until not in UNTIL_STEPS:
        raise SystemExit(f"--until must be one of {', '.join(UNTIL_STEPS)}, got {until!r}")
    if not 0 <= posterior_noise <= 1:
        raise SystemExit(f"--posterior-noise must be from 0 to 1, got {posterior_noise}")
    if not activity_weight >= 0:
        raise SystemExit(f"--activity-weight must be 0 or more, got {activity_weight}")
    b = Build(work, scale, device, budgets, vae_from, posterior_noise, activity_weight)
    # A build folder keeps the values it was started with; one from before an option counts as
    # its old behaviour once a step it affects is done (posterior samples, the paper's loss).
    keep_folder_value(b, "posterior_noise", posterior_noise, LATENT_STEPS, 1.0)
    keep_folder_value(b, "activity_weight", activity_weight, LATENT_STEPS[1:], 0.0)
    b.record.pop("until", None)  # an earlier call's
    b.record["posterior_noise"] = posterior_noise
    b.record["activity_weight"] = activity_weight
    s = scale

    def stop(step: str) -> bool:
        if step != until:
            return False
        b.record["until"] = step
        b.save()
        return True

    b.world()
    if stop("world"):
        return b.record
    if evaluators is not None:
        b.use_evaluators(evaluators)
    # With filtered manifests from elsewhere the evaluators are not needed for the build.
    b.vae_and_evaluators(evaluators=filtered is None)
    if stop("vae"):
        return b.record
    b.decoder()
    if stop("decoder"):
        return b.record
    world = b.path("world")
    main = f"q{round(s.main_quantile * 100):02d}"
    clean = {"clean": world / "all.jsonl"}
    if filtered is not None:
        thresholds = b.use_filtered(filtered)
        b.latents(clean)
    else:  # the clean latents are encoded while the small CLAP scores the noisy captions
        pending = b.start_latents(clean)
        thresholds = b.clap_filter(s.filter_quantiles if ablations else (s.main_quantile,))
        b.finish(pending)
    names = list(thresholds) if ablations else [main]
    manifests = {f"noisy-{name}": b.path("filter", f"{name}.jsonl") for name in names}
    if ablations:
        manifests["noisy"] = world / "train_noisy.jsonl"
    b.latents(manifests)
    if stop("latents"):
        return b.record
    n1, n2, n3 = s.stage_steps
    first = {
        "stage1": ("train", RECIPES / "stage1.yaml", b.dit_sets(1, "clean", n1, None), "stage1")
    }
    if ablations:
        # Table I: no masked pre-training, the same compute as stage 1 + stage 2.
        first["table1-no-stage1"] = (
            "train",
            RECIPES / "stage2.yaml",
            b.dit_sets(2, f"noisy-{main}", n1 + n2, None),
            "stage1",
        )
        for preset in ("ezaudio-s", "crossdit-s", "pixart-s"):
            sets = [
                *b.dit_sets(2, "clean", s.fig2_steps, None),
                f"model.dit_preset={preset}",
                f"run.checkpoint_every={s.fig2_every}",
                "run.keep_last=1000",
            ]
            first[f"fig2-{preset}"] = ("train", RECIPES / "stage2.yaml", sets, "stage1")
    # The run without stage 1 goes on through the stage-2 window: the same wall time.
    no_stage1 = ("table1-no-stage1",) if ablations else ()
    b.train_jobs_with_extra(first, "dit", carry_on=no_stage1)
    if stop("stage1"):
        return b.record
    stage1 = str(b.path("stage1", "model"))
    second = {
        "stage2": (
            "train",
            RECIPES / "stage2.yaml",
            b.dit_sets(2, f"noisy-{main}", n2, stage1),
            "stage2",
        ),
    }
    if ablations:
        second["table1-no-stage1"] = (*first["table1-no-stage1"][:3], "stage2")
        second["table1-unfiltered"] = (
            "train",
            RECIPES / "stage2.yaml",
            b.dit_sets(2, "noisy", n2, stage1),
            "stage2",
        )
        for name in thresholds:
            if name != main:
                second[f"table1-{name}"] = (
                    "train",
                    RECIPES / "stage2.yaml",
                    b.dit_sets(2, f"noisy-{name}", n2, stage1),
                    "stage2",
                )
    b.train_jobs_with_extra(second, "dit")
    if stop("stage2"):
        return b.record
    third = {
        "stage3": (
            "train",
            RECIPES / "stage3.yaml",
            b.dit_sets(3, "clean", n3, str(b.path("stage2", "model"))),
            "stage3",
        ),
    }
    b.train_jobs_with_extra(third, "dit")
    if not b.done("package"):
        b.package()
    b.record["thresholds"] = thresholds
    b.save()
    return b.record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("work", type=Path, help="build folder (created; resumed if it exists)")
    parser.add_argument("--scale", choices=sorted(SCALES), default="full")
    parser.add_argument("--clips", type=int, help="override the number of world clips")
    parser.add_argument("--batch", type=int, help="override the DiT batch size")
    parser.add_argument("--vae-batch", type=int, help="override the VAE batch size")
    parser.add_argument(
        "--evaluator-steps", type=int, help="training steps of the tagger and the small CLAP"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--ablations", action="store_true", help="also Table I and Fig. 2 runs")
    parser.add_argument(
        "--budget-minutes",
        action="append",
        default=[],
        metavar="STEP=MIN",
        help="wall-time bound of a training step: vae, decoder, stage1, stage2, stage3",
    )
    parser.add_argument(
        "--evaluators",
        type=Path,
        metavar="DIR",
        help="use DIR/tagger and DIR/clap (trained elsewhere on the same world)",
    )
    parser.add_argument(
        "--filtered",
        type=Path,
        metavar="DIR",
        help="use the CLAP-filtered manifests of DIR (the filter/ folder of another build "
        "of the same world) instead of filtering here",
    )
    parser.add_argument(
        "--install",
        type=Path,
        metavar="FOLDER",
        help="copy the packaged model here at the end (src/ezaudio/default_model ships it)",
    )
    parser.add_argument(
        "--until",
        choices=UNTIL_STEPS,
        help="stop after this step (e.g. vae: a GPU session that only trains the VAE)",
    )
    parser.add_argument(
        "--vae-from",
        type=Path,
        metavar="FOLDER",
        help="start the VAE run from this VAE (one trained in an earlier session on the same "
        "world) instead of from scratch",
    )
    parser.add_argument(
        "--posterior-noise",
        type=float,
        default=0.0,
        metavar="X",
        help="latents of the decoder step and the stages: mean + X * std * noise "
        "(default 0: the means, as the bundled model; 1: the official samples)",
    )
    parser.add_argument(
        "--activity-weight",
        type=float,
        default=0.0,
        metavar="A",
        help="the stages' optim.activity_weight: event frames of mostly silent clips weigh "
        "up to 1 + A times (default 0: the paper's loss; docs/training.md)",
    )
    args = parser.parse_args(argv)
    scale = SCALES[args.scale]
    from dataclasses import replace

    for name in ("clips", "batch", "vae_batch", "evaluator_steps"):
        if getattr(args, name):
            scale = replace(scale, **{name: getattr(args, name)})
    budgets = {}
    for item in args.budget_minutes:
        key, _, value = item.partition("=")
        budgets[key] = float(value)
    record = build(
        args.work,
        scale,
        args.device,
        budgets,
        args.ablations,
        args.evaluators,
        args.filtered,
        args.until,
        args.vae_from,
        args.posterior_noise,
        args.activity_weight,
    )
    if args.install and args.until is None:
        if args.install.exists():
            shutil.rmtree(args.install)
        shutil.copytree(args.work / "default_model", args.install)
    print(json.dumps(record["steps"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
