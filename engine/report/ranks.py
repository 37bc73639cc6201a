"""The ranks of a report run under ``torchrun``: which rank evaluates which cell, and how the cells reach rank 0.

The grid is the job that outgrows one process, so ``torchrun --nproc_per_node=N [--nnodes ...] -m engine report``
shares its cells among the ranks, with one cache and one page. The ranks join a process group as training does
(WORLD_SIZE > 1: nccl on CUDA, each rank on cuda:LOCAL_RANK; gloo on the CPU). Rank 0 alone reads the cache, so
nodes need not share a filesystem (only the checkpoints); it deals the cells the cache lacks in rounds of one cell
per rank, the dearest first (most network evaluations), so that the cells of a round cost about the same and no rank
idles long at the round's end. After each round every rank's cell is gathered to rank 0, which writes the cache
through a temporary file; the figures, the page and the model cards are rank 0's too, and the other ranks write
nothing. A crash on any rank ends the job (torchrun stops the ranks it started; ranks on other nodes fail at their
next gather) with the cache as the last round left it, so the next run resumes from there.

A cell's figures depend only on the cell and the seed, never on the rank that computed it or on how many ranks
there are: every draw of ``evaluate.evaluate_images`` comes from generators seeded with the cell's seed, and its
torchmetrics figures are computed from this rank's images alone (``reference.LOCAL``: by default torchmetrics sums
the metric's state over every rank of the process group).
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..devices import resolve_device


@dataclass(frozen=True)
class Team:
    """This process's place among the ranks (rank 0 of 1 without torchrun) and the device it evaluates on."""

    rank: int
    world: int
    device: torch.device

    @property
    def leader(self) -> bool:
        """Rank 0: the one rank that reads and writes files."""
        return self.rank == 0

    def agree(self, value):
        """Rank 0's ``value``, on every rank."""
        if self.world == 1:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value) -> list:
        """Every rank's ``value``, in rank order, on every rank."""
        if self.world == 1:
            return [value]
        values = [None] * self.world
        dist.all_gather_object(values, value)
        return values

    def rounds(self, keys: list) -> list[tuple[list, object]]:
        """``keys`` dealt in rounds of one per rank: (the round's keys, this rank's key or None when the last round
        has fewer keys than ranks)."""
        dealt = [keys[start:start + self.world] for start in range(0, len(keys), self.world)]
        return [(batch, batch[self.rank] if self.rank < len(batch) else None) for batch in dealt]


@contextmanager
def joined(device: str = "auto"):
    """This process's Team: under torchrun it joins the process group (and leaves it after a run that ends well; a
    failed one ends the process anyway)."""
    dev = resolve_device(device)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and dev.type == "cuda":
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(dev)
    started = world > 1 and not dist.is_initialized()
    if started:
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    yield Team(dist.get_rank() if world > 1 else 0, world, dev)
    if started:
        dist.destroy_process_group()
