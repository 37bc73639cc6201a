"""Training: ``python -m engine train --config engine/configs/NAME.json [--steps N]``.

Each step draws, all from one generator and in this order, a data batch x_0, the noise levels and ε ~ N(0, I) (and,
for a class-conditional network, which labels are dropped to the null class ∅); the
model's class (engine/models.py: ``EpsModel`` for "ddpm", ``ScoreModel`` for "dsm") draws the levels and computes
its loss — ε-MSE over the app's schedules' ᾱ, or denoising score matching over log-uniform σ.

AdamW with linear warm-up (and, if ``lr_decay_start`` is set, a cosine decay to ``min_lr``), gradient clipping, EMA weights (timm's ModelEmaV3), tqdm progress, sample grids while it
trains, and resumable state (weights, optimiser, EMA, step, RNG states) saved with safetensors — no pickle. Under
``torchrun`` it trains with DistributedDataParallel (nccl on GPU, gloo on CPU); each rank draws its own data.
Every random draw comes from ``seed`` (offset by rank), so a run and its resumed twin give the same weights.

Class-conditional training (``arch_config["num_classes"]`` > 0) is classifier-free guidance's (Ho & Salimans 2022):
each label is replaced by ∅ with probability ``label_dropout``, so one network learns ε̂(x, c) and ε̂(x, ∅).
A list gives one probability per learning-rate cycle (see ``lr_restarts``): a later cycle can train the unconditional
branch on more of the batches while the config still reproduces the earlier cycles.
``init_from`` starts the network from a shipped checkpoint of the same architecture (sha256 checked; a conditional
net's class table, absent there, starts at zero, so it starts as exactly that unconditional model).
``init_from_sha256`` pins those weights: once the source model is retrained, the config refuses to start from the
newer weights rather than silently train a different model.
"""
from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import math
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file
from timm.utils import ModelEmaV3
from torch import nn
from tqdm import tqdm

from . import data as datasets
from .checkpoints import build_model, denoiser_card, load_weights, save_model
from .devices import describe_device, resolve_device
from .generate import model_device, sample
from .models import OBJECTIVES, DenoisingModel


@dataclasses.dataclass
class TrainConfig:
    name: str
    dataset: str  # mnist | fashion-mnist | digits8 | a 2-D toy (moons, swissroll, 8gaussians, checkerboard)
    objective: str = "ddpm"  # ddpm | dsm
    arch: str = "unet"  # unet | mlp
    arch_config: dict = dataclasses.field(default_factory=dict)
    steps: int = 10_000
    batch_size: int = 64
    lr: float = 2e-4
    warmup_steps: int = 200
    lr_decay_start: int | None = None  # cosine decay of the learning rate from this step to min_lr at `steps`
    lr_restarts: list[int] = dataclasses.field(default_factory=list)  # steps where a new warm-up/hold/decay cycle starts
    min_lr: float = 0.0
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    sigma_min: float = 0.002  # dsm only
    sigma_max: float = 200.0  # dsm only
    label_dropout: float | list[float] = 0.1  # conditional nets: P(label -> null class); a list: one per cycle
    label_lr_scale: float = 1.0  # conditional nets: the class table's learning rate over the others'
    init_from: str | None = None  # a checkpoint name whose weights the network starts from
    init_from_sha256: str | None = None  # the sha256 init_from's weights must have (None: whatever is shipped)
    seed: int = 0
    log_every: int = 50
    save_every: int = 1000
    sample_every: int = 0  # 0: only at the end
    run_dir: str = "runs"
    export_dir: str | None = None  # where NAME.safetensors/.json go; None: the repository's checkpoints/
    data_dir: str | None = None  # IDX directory for fashion-mnist
    device: str = "auto"

    def __post_init__(self):
        if self.objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {self.objective!r}; allowed: {', '.join(OBJECTIVES)}")
        if not self.label_lr_scale > 0:
            raise ValueError(f"label_lr_scale must be positive; got {self.label_lr_scale}")
        per_cycle = isinstance(self.label_dropout, list)
        dropout = self.label_dropout if per_cycle else [self.label_dropout]
        if not all(0 <= p < 1 for p in dropout) or (per_cycle and len(dropout) != len(self.lr_restarts) + 1):
            raise ValueError(f"label_dropout must be a probability in [0, 1), or a list of them with one per cycle "
                             f"({len(self.lr_restarts) + 1} here: lr_restarts {self.lr_restarts}); "
                             f"got {self.label_dropout}")
        if self.lr_decay_start is not None and not 0 <= self.lr_decay_start < self.steps:
            raise ValueError(f"lr_decay_start must be in [0, steps) = [0, {self.steps}); got {self.lr_decay_start}")
        if self.lr_restarts:  # every cycle must hold its decay, so its length must exceed steps − lr_decay_start
            decay = None if self.lr_decay_start is None else self.steps - self.lr_decay_start
            cycles = zip([0, *self.lr_restarts], [*self.lr_restarts, self.steps])
            if decay is None or any(end - start <= decay for start, end in cycles):
                raise ValueError("lr_restarts must be increasing steps in (0, steps), each cycle longer than its decay "
                                 f"(steps − lr_decay_start = {decay}), and need lr_decay_start; got {self.lr_restarts}")

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown training option(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
        return cls(**d)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "TrainConfig":
        return cls.from_dict(json.loads(Path(path).read_text()))


def cycle(cfg: TrainConfig, step: int) -> int:
    """The learning-rate cycle (0, 1, …) the step after ``step`` steps is in: how many of ``lr_restarts`` it has
    reached (they are increasing, checked by ``TrainConfig``)."""
    return sum(r <= step for r in cfg.lr_restarts)


def learning_rate(cfg: TrainConfig, step: int) -> float:
    """The learning rate of the step after ``step`` steps were taken: linear warm-up to ``lr`` over ``warmup_steps``,
    then constant, then from ``lr_decay_start`` (if set) a cosine decay to ``min_lr`` at ``steps`` (as nanoGPT):
        lr_t = min_lr + ½ (lr − min_lr) (1 + cos(π (t − start) / (steps − start))).
    ``lr_restarts`` splits the run into cycles (warm restarts, Loshchilov & Hutter 2017, SGDR): each starts again
    with the warm-up and ends with a decay of the same length, steps − lr_decay_start. A finished, annealed run is
    thus extended by adding its old ``steps`` to ``lr_restarts``, and the config still reproduces it from scratch."""
    i = cycle(cfg, step)
    start, end = [0, *cfg.lr_restarts][i], [*cfg.lr_restarts, cfg.steps][i]
    t = step - start
    lr = cfg.lr * min(1.0, (t + 1) / max(1, cfg.warmup_steps))
    if cfg.lr_decay_start is None:
        return lr
    decay_start = end - (cfg.steps - cfg.lr_decay_start)
    if step < decay_start:
        return lr
    frac = min(1.0, (step - decay_start) / (end - decay_start))
    return cfg.min_lr + 0.5 * (lr - cfg.min_lr) * (1 + math.cos(math.pi * frac))


def label_dropout(cfg: TrainConfig, step: int) -> float:
    """The probability that the step after ``step`` steps replaces a label by the null class: ``label_dropout``,
    or its entry for the learning-rate cycle that step is in."""
    if not isinstance(cfg.label_dropout, list):
        return cfg.label_dropout
    return cfg.label_dropout[cycle(cfg, step)]


def optimisation_step(cfg: TrainConfig, step: int, model: DenoisingModel, loss_fn: nn.Module,
                      opt: torch.optim.Optimizer, ema: ModelEmaV3, x0: torch.Tensor, gen: torch.Generator,
                      labels: torch.Tensor | None = None, eps: torch.Tensor | None = None) -> float:
    """One step on the batch ``x0`` (with its class ``labels`` for a conditional model) after ``step`` steps: the
    learning rate of ``learning_rate``, then the noise levels, ε (unless ``eps`` pairs each image with its own
    noise, as reflow does: engine/distill.py) and (conditional models) the label dropout drawn from ``gen`` (after
    the batch, in this order), the model's loss, gradient clipping, AdamW and the EMA update. Returns the loss.
    Shared by ``Trainer``, ``engine.toytrain`` and ``engine.distill``."""
    for group in opt.param_groups:
        group["lr"] = learning_rate(cfg, step) * group.get("lr_scale", 1.0)
    level = model.draw_noise_levels(len(x0), gen)
    eps = torch.randn(x0.shape, generator=gen) if eps is None else eps
    device = model_device(model)
    if model.num_classes:
        dropped = torch.rand(len(x0), generator=gen) < label_dropout(cfg, step)
        labels = torch.where(dropped, model.num_classes, labels).to(device)
    else:
        labels = None  # an unconditional model learns p(x): the data's labels are not its input
    loss = loss_fn(x0.to(device), level.to(device), eps.to(device), labels)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.grad_clip:
        nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    opt.step()
    ema.update(model, step=step + 1)
    return float(loss.detach())


class TrainingLoss(nn.Module):
    """``model.loss`` as a module's forward, so DistributedDataParallel can wrap it."""

    def __init__(self, model: DenoisingModel):
        super().__init__()
        self.model = model

    def forward(self, x0: torch.Tensor, level: torch.Tensor, eps: torch.Tensor,
                label: torch.Tensor | None = None) -> torch.Tensor:
        return self.model.loss(x0, level, eps, label)


class Data:
    """Training batches: random rows of an image set, or fresh draws from a 2-D toy distribution."""

    def __init__(self, cfg: TrainConfig):
        self.toy = cfg.dataset in datasets.TOYS
        self.name = cfg.dataset
        if self.toy:
            self.images = self.labels = None
            self.shape = (2,)
            self.size = None
        else:
            kwargs = {"directory": cfg.data_dir} if cfg.data_dir and cfg.dataset == "fashion-mnist" else {}
            self.images, self.labels = datasets.load_dataset(cfg.dataset, "train", **kwargs)
            self.shape = tuple(self.images.shape[1:])
            self.size = len(self.images)

    def batch(self, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(x_0, labels) of n random rows (labels None for a toy)."""
        if self.toy:
            return datasets.toy_sample(self.name, n, gen), None
        rows = torch.randint(self.size, (n,), generator=gen)
        return self.images[rows], self.labels[rows]


def _flatten_optimizer(opt: torch.optim.Optimizer) -> tuple[dict, list]:
    sd = opt.state_dict()
    tensors = {f"optim.{i}.{k}": v for i, st in sd["state"].items() for k, v in st.items()}
    return tensors, sd["param_groups"]


def _unflatten_optimizer(tensors: dict, groups: list) -> dict:
    """The inverse of _flatten_optimizer; keys are "INDEX.NAME" (the "optim." prefix already removed)."""
    state: dict = {}
    for key, v in tensors.items():
        i, k = key.split(".", 1)
        state.setdefault(int(i), {})[k] = v
    return {"state": state, "param_groups": groups}


class Trainer:
    """One config's training: ``run`` is the loop (resuming from ``run_dir/NAME/state.safetensors`` when there is
    one), ``save_state``/``load_state`` the resumable state, ``export`` the EMA weights and card."""

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
        self.device = resolve_device(cfg.device)
        if self.distributed and not dist.is_initialized():
            backend = "nccl" if self.device.type == "cuda" else "gloo"
            dist.init_process_group(backend)
        self.rank = dist.get_rank() if self.distributed else 0
        self.world = dist.get_world_size() if self.distributed else 1
        if self.device.type == "cuda" and self.distributed:
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        self.data = Data(cfg)
        self.card = denoiser_card(
            cfg.name, cfg.arch, cfg.arch_config, cfg.objective, self.data.shape,
            data={"dataset": cfg.dataset, "split": "train", "n": self.data.size,
                  "range": None if self.data.toy else [-1, 1], **self._classes(cfg)},
            noise_range=OBJECTIVES[cfg.objective].noise_range(cfg.sigma_min, cfg.sigma_max),
        )
        torch.manual_seed(cfg.seed)  # the same initial weights on every rank
        self.model = build_model(self.card).to(self.device)
        if cfg.init_from:
            self._init_from(cfg.init_from)
        self.ema = ModelEmaV3(self.model, decay=cfg.ema_decay, use_warmup=True)
        self.opt = torch.optim.AdamW(self._param_groups(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        loss = TrainingLoss(self.model)
        self.loss_fn = nn.parallel.DistributedDataParallel(loss) if self.distributed else loss
        self.gen = torch.Generator().manual_seed(cfg.seed * 1000 + self.rank)  # data, levels and noise
        torch.manual_seed(cfg.seed * 1000 + self.rank + 1)  # dropout
        self.step = 0
        self.wall = 0.0
        self.run_dir = Path(cfg.run_dir) / cfg.name
        self.losses: list[float] = []

    def _param_groups(self) -> list[dict]:
        """AdamW's groups: every weight, and a conditional net's class table in a group of its own whose learning
        rate is ``label_lr_scale`` times the others'. Adam moves each weight by about the learning rate per step
        whatever its gradient's size, so a table started at zero beside a noise-level embedding of norm ≈ 6 took
        thousands of steps to matter: fine-tuning mnist-cond at 3e-4, its vectors had norm 0.1 after 1,800 steps,
        and the samples ignored their labels (14 % recognised at w = 3)."""
        named = list(self.model.named_parameters())
        table = [p for n, p in named if n.startswith("net.label_emb.")]
        groups = [{"params": [p for n, p in named if not n.startswith("net.label_emb.")]}]
        if table:
            groups.append({"params": table, "lr_scale": self.cfg.label_lr_scale})
        return groups

    @staticmethod
    def _classes(cfg: TrainConfig) -> dict:
        """The card's class names for a conditional model (``data["classes"]``), which must match the dataset's."""
        k = int(cfg.arch_config.get("num_classes", 0))
        if not k:
            return {}
        names = datasets.CLASS_NAMES.get(cfg.dataset)
        if names is None or len(names) != k:
            raise ValueError(f"num_classes={k} does not fit dataset {cfg.dataset!r}"
                             f" ({len(names) if names else 'no'} classes)")
        return {"classes": list(names)}

    def _init_from(self, name: str) -> None:
        """Load checkpoint ``name``'s weights into the network; only a conditional net's class table may be
        missing from it (it stays zero). The card records the source and its sha256."""
        card, state = load_weights(name)
        want = self.cfg.init_from_sha256
        if want and card["sha256"] != want:
            raise ValueError(f"init_from {name!r}: this run starts from the weights with sha256 {want[:12]}…, but the "
                             f"shipped {name} is {card['sha256'][:12]}… (retrained since); check out the commit that "
                             f"shipped them (git log -- checkpoints/{name}.safetensors) to reproduce this run")
        missing, unexpected = self.model.net.load_state_dict(state, strict=False)
        if unexpected or any(not k.startswith("label_emb.") for k in missing):
            raise ValueError(f"init_from {name!r}: its weights do not fit this architecture "
                             f"(missing {missing}, unexpected {unexpected})")
        self.card["init_from"] = {"name": name, "sha256": card["sha256"]}

    # --- resumable state -------------------------------------------------------------------------------------
    @property
    def state_path(self) -> Path:
        return self.run_dir / "state.safetensors"

    def save_state(self) -> None:
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        tensors.update({f"ema.{k}": v for k, v in self.ema.module.state_dict().items()})
        opt_tensors, groups = _flatten_optimizer(self.opt)
        tensors.update(opt_tensors)
        tensors["rng.data"] = self.gen.get_state()
        tensors["rng.torch"] = torch.get_rng_state()
        tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        self.run_dir.mkdir(parents=True, exist_ok=True)
        meta = {"step": self.step, "wall_time_s": self.wall, "param_groups": groups, "config": dataclasses.asdict(self.cfg)}
        tmp = self.state_path.with_suffix(".tmp")
        save_file(tensors, str(tmp))
        (self.run_dir / "state.json.tmp").write_text(json.dumps(meta, indent=1))
        os.replace(tmp, self.state_path)
        os.replace(self.run_dir / "state.json.tmp", self.run_dir / "state.json")

    def load_state(self) -> bool:
        if not self.state_path.is_file():
            return False
        meta = json.loads((self.run_dir / "state.json").read_text())
        tensors = load_file(str(self.state_path))
        pick = lambda prefix: {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}  # noqa: E731
        self.model.load_state_dict(pick("model."))
        self.ema.module.load_state_dict(pick("ema."))
        self.opt.load_state_dict(_unflatten_optimizer(pick("optim."), meta["param_groups"]))
        self.gen.set_state(tensors["rng.data"])
        torch.set_rng_state(tensors["rng.torch"])
        self.step, self.wall = meta["step"], meta["wall_time_s"]
        return True

    # --- training --------------------------------------------------------------------------------------------
    def train_step(self) -> float:
        x0, labels = self.data.batch(self.cfg.batch_size, self.gen)
        loss = optimisation_step(self.cfg, self.step, self.model, self.loss_fn, self.opt, self.ema, x0, self.gen,
                                 labels)
        self.step += 1
        return loss

    def run(self, steps: int | None = None, quiet: bool = False) -> dict:
        """Train until ``steps`` (default: the config's) and export the EMA weights; returns a summary."""
        cfg = self.cfg
        total = cfg.steps if steps is None else steps
        resumed = self.load_state()
        bar = tqdm(total=total, initial=self.step, disable=quiet or self.rank != 0, desc=cfg.name, dynamic_ncols=True)
        log = self.run_dir / "log.jsonl"
        if self.rank == 0:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if resumed and log.exists():  # lines written after the saved state was taken are trained again: drop them
                kept = [line for line in log.read_text().splitlines() if line and json.loads(line)["step"] <= self.step]
                log.write_text("".join(line + "\n" for line in kept))
        t_last = time.perf_counter()
        while self.step < total:
            loss = self.train_step()
            self.losses.append(loss)
            bar.update(1)
            now = time.perf_counter()
            self.wall += now - t_last
            t_last = now
            if self.rank == 0 and self.step % cfg.log_every == 0:
                mean = sum(self.losses[-cfg.log_every:]) / len(self.losses[-cfg.log_every:])
                bar.set_postfix(loss=f"{mean:.4f}")
                with log.open("a") as f:
                    f.write(json.dumps({"step": self.step, "loss": mean, "wall_time_s": round(self.wall, 2)}) + "\n")
            if self.rank == 0 and (self.step % cfg.save_every == 0 or self.step == total):
                self.save_state()
                self.export()
            if self.rank == 0 and cfg.sample_every and self.step % cfg.sample_every == 0:
                self.sample_grid()
        bar.close()
        if self.rank == 0:
            self.sample_grid()
        if self.distributed:
            self._write_rank_digest()
        return {"step": self.step, "resumed": resumed, "losses": self.losses, "wall_time_s": self.wall}

    def export(self) -> Path:
        """Write the EMA weights and the model card to the checkpoint directory."""
        cfg = self.cfg
        recent = self.losses[-cfg.log_every:]
        card = {
            "training": {
                "config": dataclasses.asdict(cfg),
                "steps": self.step,
                "wall_time_s": round(self.wall, 1),
                "hardware": f"{describe_device(self.device)} x{self.world}",
                "torch": torch.__version__,
                "final_loss": round(sum(recent) / len(recent), 5) if recent else None,
            },
            "date": datetime.date.today().isoformat(),
            "metrics": {},
        }
        model = self.ema.module
        model.card = dict(self.card)
        return save_model(model, cfg.name, cfg.export_dir, card)

    grid_setting = {"schedule": "cosine", "sampler": "ddim", "steps": 50, "spacing": "trailing"}

    def sample_grid(self) -> Path:
        """A grid of samples from the EMA model (64 images, or 2,000 points for a toy) under the run directory,
        drawn with ``grid_setting``."""
        from .pictures import save_samples  # matplotlib: here, so that `import engine` (train_toy) stays light

        n = 2000 if self.data.toy else 64
        x = sample(self.ema.module.eval(), **self.grid_setting, seed=0, n=n)
        path = self.run_dir / f"samples_{self.step:07d}.png"
        save_samples(x, path, title=f"{self.cfg.name} step {self.step}")
        return path

    def _write_rank_digest(self) -> None:
        """Each rank records a hash of its weights, so a run can check that all ranks ended identical."""
        h = hashlib.sha256()
        for k, v in sorted(self.model.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / f"weights_rank{self.rank}.sha256").write_text(h.hexdigest() + "\n")
        dist.barrier()


def train(cfg: TrainConfig, steps: int | None = None, quiet: bool = False) -> dict:
    return Trainer(cfg).run(steps, quiet=quiet)
