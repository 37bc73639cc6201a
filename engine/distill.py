"""Distillation into a few-step student: ``python -m engine distill --config engine/configs/NAME.json``.

The method is reflow (Liu et al. 2023, "Flow straight and fast", rectified flow). The teacher's deterministic
sampler defines a map z ↦ x = Φ(z) from noise to data (its probability-flow ODE, solved by ``pair_sampler`` at
``pair_steps``). Reflow trains a flow-matching student on the *coupled* pairs (x, z) instead of independent ones:

    x_t = (1 − t) x + t z,    v = z − x,    L = E_t ‖v̂(x_t, t) − (z − x)‖²,

so the student's paths are the straight segments between each noise and the teacher's own image of it. Paths that
do not cross give a velocity field whose ODE is nearly straight, and one Euler step from t = 1,
x̂ = z − v̂(z, 1), already lands near Φ(z): the student makes a digit in 1–4 network evaluations with the plain
``euler`` sampler on the ``flow`` schedule, no sampler of its own. Why reflow rather than progressive distillation
(Salimans & Ho 2022: log₂(steps) stages, each a training run) or consistency distillation (Song et al. 2023: an EMA
target network and a schedule of discretisations): one stage, the flow-matching loss the teacher already trains
with, and the pairs are computed once; on two CPU cores the teacher's evaluations are the cost, and reflow spends
them once.

The student is the teacher's network (``init_from``, sha256 pinned), trained by ``engine.train``'s loop
(``Trainer``: AdamW, warm-up and decay, EMA, resumable state); only its batches differ, each image with the noise
it came from (``train.optimisation_step``'s ``eps``). The pairs are drawn from ``seed`` and cached in the run
directory (``pairs.safetensors``, written after every chunk, so an interrupted run resumes there and a finished
one is not recomputed). The card names the teacher and its sha256, the method and how to sample the student
(``sampling``: the sampler, schedule and step counts it is made for), which the app reads for its defaults.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from .checkpoints import load_model
from .generate import sample
from .train import TrainConfig, Trainer, optimisation_step

METHODS = ("reflow",)


@dataclasses.dataclass
class DistillConfig(TrainConfig):
    """A training config (engine.train.TrainConfig) plus the teacher and its pairs. ``init_from`` is usually the
    teacher itself, so the student starts as the teacher."""

    objective: str = "fm"
    method: str = "reflow"
    teacher: str = ""  # a shipped checkpoint's name
    teacher_sha256: str | None = None  # the teacher's weights must have this sha256 (None: whatever is shipped)
    pairs: int = 20_000  # (noise, teacher image) pairs
    pair_sampler: str = "dpm-solver++"  # a deterministic sampler: the pairs are its ODE map
    pair_schedule: str = "flow"
    pair_steps: int = 16
    pair_batch: int = 250  # pairs computed per chunk (and saved after each)
    sampling: dict = dataclasses.field(default_factory=lambda: {"sampler": "euler", "schedule": "flow",
                                                                  "steps": [1, 2, 4]})

    def __post_init__(self):
        super().__post_init__()
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}; got {self.method!r}")
        if self.objective != "fm":
            raise ValueError(f"reflow trains a flow-matching student (objective 'fm'); got {self.objective!r}")
        if not self.teacher:
            raise ValueError("name the teacher: a shipped checkpoint (teacher = NAME)")
        if self.pairs < self.batch_size or self.pair_batch < 1:
            raise ValueError(f"pairs ({self.pairs}) must be at least batch_size ({self.batch_size}), pair_batch ≥ 1")


def teacher_pairs(teacher, cfg: DistillConfig, path: Path, device: torch.device, quiet: bool = False):
    """(z, x): ``cfg.pairs`` noises z ~ N(0, I), chunk k drawn from a generator seeded with ``cfg.seed`` · 10⁶ + k,
    and the teacher's sample from each (``pair_sampler`` at ``pair_steps`` on ``pair_schedule``, deterministic, so
    x = Φ(z)). Cached in ``path`` after every chunk; a run resumes at the first missing chunk."""
    z, x = [], []
    if path.is_file():
        saved = load_file(str(path))
        z, x = list(saved["z"].split(cfg.pair_batch)), list(saved["x"].split(cfg.pair_batch))
    shape = tuple(teacher.data_shape)
    chunks = -(-cfg.pairs // cfg.pair_batch)
    for k in tqdm(range(len(z), chunks), desc=f"{cfg.name}: teacher pairs", disable=quiet or len(z) == chunks):
        n = min(cfg.pair_batch, cfg.pairs - k * cfg.pair_batch)
        noise = torch.randn((n, *shape), generator=torch.Generator().manual_seed(cfg.seed * 10**6 + k))
        with torch.no_grad():
            image = sample(teacher, schedule=cfg.pair_schedule, sampler=cfg.pair_sampler, steps=cfg.pair_steps,
                           seed=cfg.seed, n=n, x_T=noise, device=device)
        z.append(noise)
        x.append(image.float().cpu())
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({"z": torch.cat(z).contiguous(), "x": torch.cat(x).contiguous()}, str(path.with_suffix(".tmp")))
        path.with_suffix(".tmp").replace(path)
    return torch.cat(z)[: cfg.pairs], torch.cat(x)[: cfg.pairs]


class Distiller(Trainer):
    """``Trainer`` whose batches are the teacher's pairs: x as the data, z as the noise it is paired with."""

    def __init__(self, cfg: DistillConfig, teacher=None):
        super().__init__(cfg)
        self.teacher = teacher if teacher is not None else load_model(cfg.teacher, self.device)
        sha = self.teacher.card.get("sha256")
        if cfg.teacher_sha256 and sha != cfg.teacher_sha256:
            raise ValueError(f"teacher {cfg.teacher!r} has weights {str(sha)[:12]}…, the config pins "
                             f"{cfg.teacher_sha256[:12]}… (retrained since): check out the commit that shipped them")
        if tuple(self.teacher.data_shape) != tuple(self.data.shape):
            raise ValueError(f"teacher {cfg.teacher!r} makes data of shape {tuple(self.teacher.data_shape)}; the "
                             f"student's dataset {cfg.dataset!r} has {tuple(self.data.shape)}")
        self.card["distilled_from"] = {"teacher": cfg.teacher, "sha256": sha, "method": cfg.method,
                                       "pairs": cfg.pairs, "pair_sampler": cfg.pair_sampler,
                                       "pair_schedule": cfg.pair_schedule, "pair_steps": cfg.pair_steps}
        self.card["sampling"] = dict(cfg.sampling)
        self.grid_setting = {"schedule": cfg.sampling["schedule"], "sampler": cfg.sampling["sampler"],
                             "steps": min(cfg.sampling["steps"])}  # the student's own few steps
        self.z = self.x = None

    def train_step(self) -> float:
        idx = torch.randint(len(self.x), (self.cfg.batch_size,), generator=self.gen)
        loss = optimisation_step(self.cfg, self.step, self.model, self.loss_fn, self.opt, self.ema, self.x[idx],
                                 self.gen, eps=self.z[idx])
        self.step += 1
        return loss

    def run(self, steps: int | None = None, quiet: bool = False) -> dict:
        """The teacher's pairs (cached), then ``Trainer.run`` on them."""
        self.z, self.x = teacher_pairs(self.teacher, self.cfg, self.run_dir / "pairs.safetensors", self.device, quiet)
        return super().run(steps, quiet=quiet)


def distill(cfg: DistillConfig, steps: int | None = None, quiet: bool = False, teacher=None) -> dict:
    return Distiller(cfg, teacher).run(steps, quiet=quiet)
