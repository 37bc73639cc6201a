"""The report's grid: which cells (model, sampler, schedule, steps, spacing) a results page evaluates.

A model's samplers are its training objective's family (``SAMPLERS_BY_OBJECTIVE``): ancestral, DDIM, DPM-Solver++
and the probability-flow ODE for ε-prediction models trained with the DDPM objective; the score family (annealed
Langevin, reverse-SDE Euler–Maruyama, predictor–corrector, the ODE) for models trained by denoising score matching
(``dsm``). One network serves both views, since ε = −σ s. Flow-matching models (``fm``) run the flow ODE's
Euler and Heun in t, DDIM (the same map as Euler) and DPM-Solver++, through the links of ``models.FlowModel``.

Step counts of ``Grid.long_run`` or more are run only by ``LONG_RUN_SAMPLERS``, the samplers their papers run
about a thousand steps: DDPM's ancestral sampler and DDIM (Ho et al. 2020, Song et al. 2021a) and score-SDE's
reverse-diffusion predictor and predictor–corrector (P1000 and PC1000 in Song et al. 2021b, two network evaluations
per PC step). For the others a run that long costs several evaluations per step (annealed Langevin), or lies far
past the few steps the method is made for. These are the slowest cells of a grid, so ``Grid.long_run_schedules``
can limit them to some schedules.

Every cell runs its sampler's default options on the timestep spacing ``generate`` picks (the schedule's where it
names one, ``flow``'s trailing Euler grid, else the sampler's registry record, ``engine.SAMPLERS``): a cell is what
``generate`` does when given only the cell's settings.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from ..generate import sampler_spec
from ..models import RANDOM_LABEL
from ..schedules import get_schedule

SAMPLERS_BY_OBJECTIVE = {
    "ddpm": ("ddpm", "ddim", "dpm-solver++", "ode"),
    "dsm": ("langevin", "euler-maruyama", "pc", "ode"),
    "fm": ("euler", "heun", "ddim", "dpm-solver++"),
}
LONG_RUN_SAMPLERS = ("ddpm", "ddim", "euler-maruyama", "pc")


@dataclass(frozen=True)
class Grid:
    """The step counts and the schedules (per training objective) of a report, and its default n.

    Step counts of ``long_run`` or more are run only by ``LONG_RUN_SAMPLERS``, and only on ``long_run_schedules``
    when that is given.
    """

    steps: tuple[int, ...]
    schedules: dict
    n: int
    long_run: int = 1000
    long_run_schedules: tuple[str, ...] | None = None
    samplers: tuple[str, ...] | None = None  # None: every sampler of the model's family

    @property
    def all_schedules(self) -> list[str]:
        """Every schedule of the grid, once, in order (the objectives' lists share most names)."""
        return list(dict.fromkeys(s for names in self.schedules.values() for s in names))

    def narrowed(self, steps=None, schedules=None, long_run_schedules=None, samplers=None) -> "Grid":
        """This grid with only ``steps`` (any positive counts), only ``schedules`` (a subset of its schedules, for
        each objective that has them), the long runs only on ``long_run_schedules`` and only ``samplers`` (of each
        objective's family, those named); None keeps what it is."""
        offered = self.all_schedules
        for option, names, kind, known in (("schedules", schedules, "schedules", offered),
                                           ("long-run schedules", long_run_schedules, "schedules", offered),
                                           ("samplers", samplers, "samplers", grid_samplers())):
            unknown = [s for s in names or () if s not in known]
            if unknown:
                raise ValueError(f"{option}: {', '.join(unknown)} not in the grid's {kind} ({', '.join(known)})")
        kept = self.schedules if schedules is None else {
            objective: tuple(s for s in names if s in schedules) for objective, names in self.schedules.items()}
        return replace(self, steps=self.steps if steps is None else tuple(steps), schedules=kept,
                       long_run_schedules=self.long_run_schedules if long_run_schedules is None
                       else tuple(long_run_schedules), samplers=self.samplers if samplers is None else tuple(samplers))

    def family(self, objective: str) -> tuple[str, ...]:
        """The samplers this grid runs for models of ``objective``: its family, or those of it named in ``samplers``."""
        return tuple(s for s in SAMPLERS_BY_OBJECTIVE[objective] if self.samplers is None or s in self.samplers)


_VP_AND_EDM = ("linear", "cosine", "sigmoid", "constant", "karras")
FULL = Grid(steps=(10, 20, 50, 100, 1000), schedules={"ddpm": _VP_AND_EDM, "dsm": (*_VP_AND_EDM, "ve-geometric"),
                                                      "fm": ("flow", "cosine")}, n=500)
QUICK = Grid(steps=(5, 10), schedules={"ddpm": ("linear", "cosine"), "dsm": ("linear", "cosine"),
                                       "fm": ("flow", "cosine")}, n=64)


def grid_samplers() -> list[str]:
    """Every sampler of the grid, once, in the order of the objectives' families."""
    return list(dict.fromkeys(s for family in SAMPLERS_BY_OBJECTIVE.values() for s in family))


@dataclass(frozen=True)
class Cell:
    """One setting of a model's grid. ``label`` is None for an unconditional model; a class-conditional one samples
    the grid with "random" classes (``models.guided``: each drawn uniformly, the class prior, at w = 1), which
    makes it an unconditional sampler of p(x) comparable with the unconditional models' cells (its null class ∅
    is the guidance sweep's w = 0)."""

    model: str
    sampler: str
    schedule: str
    steps: int
    spacing: str
    label: str | None = None

    @property
    def options(self) -> dict:
        """The sampler's default options, with ``sde`` resolved to the schedule's kind as generate() does."""
        opts = sampler_spec(self.sampler).options
        if "sde" in opts:
            opts["sde"] = get_schedule(self.schedule).kind
        return opts

    @property
    def nfe(self) -> int:
        """Network evaluations per sample: what the cell costs, on any device."""
        return sampler_spec(self.sampler).nfe(self.steps, self.options)

    def key(self, n: int, seed: int, device_type: str) -> str:
        """The cell's key in the cell cache: its settings with its options, n, seed and the device type."""
        opts = ",".join(f"{k}={v}" for k, v in sorted(self.options.items()))
        label = "" if self.label is None else f"|label={self.label}"
        return (f"{self.model}|{self.sampler}|{self.schedule}|{self.steps}|{self.spacing}{label}|{opts}|n={n}|seed={seed}"
                f"|{device_type}")


def plan_cells(model: str, objective: str, grid: Grid = FULL, conditional: bool = False) -> list[Cell]:
    """The cells of one model: its family's samplers (those the grid runs) × the grid's schedules for its objective
    × step counts, each on the spacing ``generate`` picks (the schedule's if it names one, else its sampler's); a
    ``conditional`` model's with random classes."""
    if objective not in SAMPLERS_BY_OBJECTIVE:
        raise ValueError(f"no sampler family for objective {objective!r}; known: {', '.join(SAMPLERS_BY_OBJECTIVE)}")
    return [
        Cell(model, sampler, schedule, steps, get_schedule(schedule).spacing or sampler_spec(sampler).spacing,
             RANDOM_LABEL if conditional else None)
        for sampler in grid.family(objective)
        for schedule in grid.schedules[objective]
        for steps in grid.steps
        if steps < grid.long_run or (sampler in LONG_RUN_SAMPLERS
                                     and (grid.long_run_schedules is None or schedule in grid.long_run_schedules))
    ]
