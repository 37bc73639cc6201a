"""``python -m engine report``: the results page ``OUT/RESULTS.md``, its figures, and a cache of evaluated cells.

A cell is (model, sampler, schedule, steps, spacing), scored on n samples by the evaluator that ``python -m engine
eval`` runs. The package, a concept a module:

  * ``grid``: which cells a page evaluates (``FULL``, ``QUICK``, ``plan_cells``);
  * ``cache``: the finished cells in ``OUT/results/cells.json``, reused while the weights and the evaluator's version
    are unchanged (the evaluator's validation, ``OUT/results/validation.json``, the same way);
  * ``bars``: the models' quality bars, as data, and their verdicts on point estimates, with "unresolved" where a
    figure's interval straddles the limit;
  * ``figures``: the schedules, FD against NFE, and samples from each model's best cell;
  * ``page``: the markdown, every table and sentence computed from the cells, the evaluator's validation and the
    samplers' registry; ``findings`` writes each model's section (no two settings whose intervals overlap are
    ranked), ``trust`` the evaluator's validation and weak spots, ``text`` the numbers' one format;
  * ``guidance``: the guidance-scale sweep of each class-conditional model (recognised class and FD against w),
    cached in ``OUT/results/guidance.json``;
  * ``likelihood``: held-out bits/dim per model and schedule (the variational bound, and the probability-flow ODE
    for score models), cached in ``OUT/results/likelihood.json``;
  * ``ranks``: under ``torchrun``, which rank evaluates which cell and how the cells reach rank 0;
  * ``run``: ``run_report``, which the command calls: evaluate what the cache lacks, write the page and figures.
"""
from .bars import BAR_MIN_N, BARS, Bar, Criterion, judge_bar, record_bars
from .grid import FULL, QUICK, Cell, Grid, plan_cells
from .page import render_page
from .run import DEFAULT_MODELS, NotEvaluated, command_line, run_report

__all__ = [
    "BAR_MIN_N", "BARS", "Bar", "Cell", "Criterion", "DEFAULT_MODELS", "FULL", "Grid", "NotEvaluated", "QUICK",
    "command_line", "judge_bar", "plan_cells", "record_bars", "render_page", "run_report",
]
