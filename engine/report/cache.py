"""The cell cache, ``OUT/results/cells.json``: the record of every finished cell under its key (``Cell.key``).

A key is made of the cell's settings (options included), n, seed and device type; the record keeps the sha256 of
the model's and of the classifier's weights and ``evaluator``, the version of the evaluator that scored it
(``EVALUATOR_VERSION``). A cell is reused only when its key is there with both sha256 and the evaluator version
unchanged, so an interrupted run resumes where it stopped, a run after retraining one model recomputes that model's
cells only, and a run after a change to what the evaluator's figures mean recomputes every cell. Cells measured on
another device type are not reused, so the seconds on a page come from one kind of device. After a change to a
sampler's code, delete cells.json: the cache cannot see code.

Why a version number and not a hash of engine/evaluate.py: most edits to that file (a docstring, a faster but
equal computation) leave every figure as it was, and recomputing a CPU grid costs hours; the version is raised by
hand when a figure changes meaning. Version 1 (records without the field) scored FD against n training images and
one n-image real baseline; version 2 scores against the whole training split, with fd_real averaged over disjoint
held-out sets, bootstrap intervals and KID (engine/evaluate.py). Records of another version can never be reused, so
``load_cache`` drops them: the file then holds only cells the page can show.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

CACHE_VERSION = 1  # the file's layout ({"version", "cells"}), not the evaluator's
EVALUATOR_VERSION = 2


def load_cache(path: Path) -> dict:
    """The cached cells {key: record} of ``path`` scored by this evaluator version ({} when there is none)."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
        if data.get("version") != CACHE_VERSION:
            raise ValueError(f"version {data.get('version')!r}, expected {CACHE_VERSION}")
        return {key: r for key, r in data["cells"].items() if r.get("evaluator") == EVALUATOR_VERSION}
    except (ValueError, KeyError, AttributeError) as err:
        raise ValueError(f"cannot read the cell cache {path} ({err}); delete it to recompute every cell") from None


def write_cache(path: Path, cells: dict) -> None:
    """Write every cell at once through a temporary file, so an interrupted write leaves the old cache whole."""
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"version": CACHE_VERSION, "cells": cells}, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def is_fresh(record: dict | None, sha256: str, classifier_sha256: str) -> bool:
    """Whether a cached record was measured with these weights of the model and of the classifier, by this
    evaluator version."""
    return (record is not None and record.get("evaluator") == EVALUATOR_VERSION and record["sha256"] == sha256
            and record["classifier_sha256"] == classifier_sha256)
