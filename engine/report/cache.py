"""The cell cache, ``OUT/results/cells.json``: the record of every finished cell under its key (``Cell.key``).

A key is made of the cell's settings (options included), n, seed and device type; the record keeps the sha256 of
the model's and of the classifier's weights. A cell is reused only when its key is there with both sha256
unchanged, so an interrupted run resumes where it stopped and a run after retraining one model recomputes that
model's cells only. Cells measured on another device type are not reused, so the seconds on a page come from one
kind of device. After a change to a sampler's code, delete cells.json: the cache cannot see code.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

CACHE_VERSION = 1


def load_cache(path: Path) -> dict:
    """The cached cells {key: record} of ``path`` ({} when there is none)."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
        if data.get("version") != CACHE_VERSION:
            raise ValueError(f"version {data.get('version')!r}, expected {CACHE_VERSION}")
        return dict(data["cells"])
    except (ValueError, KeyError, AttributeError) as err:
        raise ValueError(f"cannot read the cell cache {path} ({err}); delete it to recompute every cell") from None


def write_cache(path: Path, cells: dict) -> None:
    """Write every cell at once through a temporary file, so an interrupted write leaves the old cache whole."""
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"version": CACHE_VERSION, "cells": cells}, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def is_fresh(record: dict | None, sha256: str, classifier_sha256: str) -> bool:
    """Whether a cached record was measured with these weights of the model and of the classifier."""
    return record is not None and record["sha256"] == sha256 and record["classifier_sha256"] == classifier_sha256
