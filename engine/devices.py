"""Which device a job runs on, and how a page or a model card names it: the one home of that choice.

"auto" is CUDA when torch sees a GPU, else the CPU, so configs and commands run unchanged on either.
"""
from __future__ import annotations

import os
import platform

import torch


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """"auto": CUDA when available, else the CPU; anything else as torch reads it."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def describe_device(device: torch.device) -> str:
    """The device in words, e.g. "cpu (x86_64, 2 cores, torch threads: 1)" or "cuda (NVIDIA H200)"."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    cpu = platform.processor() or platform.machine()
    return f"cpu ({cpu}, {os.cpu_count()} cores, torch threads: {torch.get_num_threads()})"
