"""Checkpoints: ``NAME.safetensors`` (the EMA weights) beside ``NAME.json`` (the model card).

The card records the architecture, objective, data, training noise levels, training and metrics, and the sha256
of the weights file (``denoiser_card`` lays it out; ``model_card`` checks it).
Loading goes through safetensors only (never pickle): the file's bytes are hashed, compared with the card, and
only then parsed. A missing, truncated, corrupt or altered file raises ``CheckpointError`` naming the file.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from .mlp import MLPConfig, MLPDenoiser
from .models import OBJECTIVES, DenoisingModel
from .unet import UNet, UNetConfig

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "checkpoints"
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
ARCHITECTURES = {"unet": (UNetConfig, UNet), "mlp": (MLPConfig, MLPDenoiser)}
REQUIRED_FIELDS = ("arch", "objective", "sha256", "data_shape")  # what loading needs from every card


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message names the file and what is wrong with it."""


def checkpoint_dir(directory: str | os.PathLike | None = None) -> Path:
    """``directory``, else $ENGINE_CHECKPOINTS, else the repository's checkpoints/."""
    return Path(directory or os.environ.get("ENGINE_CHECKPOINTS") or DEFAULT_DIR)


def _check_name(name) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ValueError(
            f"bad model name {name!r}: a name is 1-64 characters of a-z, 0-9, '-' and '_' (never a path)"
        )
    return name


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def list_models(directory=None, kind: str = "denoiser") -> list[str]:
    """Names of the models of ``kind`` ("denoiser" or "classifier") in the checkpoint directory, sorted."""
    d = checkpoint_dir(directory)
    if not d.is_dir():
        return []
    return sorted(
        p.stem
        for p in d.glob("*.json")
        if NAME_PATTERN.match(p.stem) and (d / f"{p.stem}.safetensors").is_file() and _kind(p) == kind
    )


def _kind(card_path: Path) -> str | None:
    try:
        return json.loads(card_path.read_text()).get("kind", "denoiser")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return "denoiser"  # listed, so that loading it reports what is wrong


def model_card(name: str, directory=None) -> dict:
    """The parsed card ``NAME.json``."""
    path = checkpoint_dir(directory) / f"{_check_name(name)}.json"
    if not path.is_file():
        known = ", ".join(list_models(directory)) or "none"
        raise CheckpointError(f"no model card {path}: unknown model {name!r} (models here: {known})")
    try:
        card = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"model card {path} is not valid JSON: {err}") from None
    for key in REQUIRED_FIELDS:
        if key not in card:
            raise CheckpointError(f"model card {path} has no '{key}' field")
    return card


def denoiser_card(name: str, arch: str, arch_config: dict, objective: str, data_shape: tuple[int, ...],
                  data: dict, noise_range: dict) -> dict:
    """The card of a denoising model before training: ``save_model`` adds the sha256 (and the trainer its
    training record and metrics). ``arch_config`` is completed with the architecture's defaults, a U-Net's input
    channels and size taken from ``data_shape``; ``noise_range`` is the objective's record of its training levels
    (``noise_range`` of the model class in ``models.OBJECTIVES``)."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown arch {arch!r}; allowed: {', '.join(ARCHITECTURES)}")
    config = dict(arch_config)
    if arch == "unet":
        config.setdefault("in_channels", data_shape[0])
        config.setdefault("image_size", data_shape[-1])
    return {
        "name": name,
        "arch": {"type": arch, "config": ARCHITECTURES[arch][0].from_dict(config).to_dict()},
        "objective": objective,
        "data_shape": list(data_shape),
        "data": data,
        "noise_range": noise_range,
        "sha256": "",
    }


def build_model(card: dict) -> DenoisingModel:
    """An untrained model with the architecture and objective the card describes."""
    arch = card["arch"]
    if arch.get("type") not in ARCHITECTURES:
        raise CheckpointError(f"unknown architecture {arch.get('type')!r}; known: {', '.join(ARCHITECTURES)}")
    if card["objective"] not in OBJECTIVES:
        raise CheckpointError(f"unknown objective {card['objective']!r}; known: {', '.join(OBJECTIVES)}")
    config_cls, net_cls = ARCHITECTURES[arch["type"]]
    net = net_cls(config_cls.from_dict(arch["config"]))
    return OBJECTIVES[card["objective"]](net, tuple(card["data_shape"]), card)


def save_model(model: DenoisingModel, name: str, directory=None, card: dict | None = None) -> Path:
    """Write ``NAME.safetensors`` (the weights of ``model.net``) and ``NAME.json`` (card + sha256).

    A card there that says ``withdrawn`` (why the app does not offer the model) keeps saying it when new weights
    replace the old, as a resumed training's saves do: new weights are not judged yet, and only a judgement lifts
    it (``card={"withdrawn": None}``, or deleting the field once the results page's bar passes)."""
    d = checkpoint_dir(directory)
    d.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.net.state_dict().items()}
    data = save_safetensors(tensors, metadata={"name": _check_name(name)})
    weights, card_path = d / f"{name}.safetensors", d / f"{name}.json"
    full = {**model.card, **_withdrawal(name, directory), **(card or {})}
    full.update(name=name, data_shape=list(model.data_shape), sha256=sha256_bytes(data), format="safetensors")
    if full.get("withdrawn") is None:
        full.pop("withdrawn", None)
    # write to temporary names and rename, so a reader never sees a half-written checkpoint
    tmp_w, tmp_c = weights.with_suffix(".safetensors.tmp"), card_path.with_suffix(".json.tmp")
    tmp_w.write_bytes(data)
    tmp_c.write_text(json.dumps(full, indent=2, sort_keys=True) + "\n")
    os.replace(tmp_w, weights)
    os.replace(tmp_c, card_path)
    return weights


def _withdrawal(name: str, directory=None) -> dict:
    """{"withdrawn": why} from the card NAME.json already there if it says so, else {} (also when there is none
    yet, or one ``model_card`` refuses: then there is nothing to keep)."""
    if not (checkpoint_dir(directory) / f"{name}.json").is_file():
        return {}  # a first save: nothing to keep (model_card would list every card to say so)
    try:
        why = model_card(name, directory).get("withdrawn")
    except CheckpointError:
        return {}
    return {} if why is None else {"withdrawn": why}


def record_metrics(name: str, key: str, figures: dict, directory=None) -> dict:
    """Store ``figures`` under ``metrics[key]`` in the card NAME.json (the weights and their sha256 untouched) and
    return the card. The card is rewritten through a temporary file and a rename, like ``save_model``."""
    card = model_card(name, directory)
    card.setdefault("metrics", {})[key] = figures
    path = checkpoint_dir(directory) / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return card


def load_weights(name: str, directory=None) -> tuple[dict, dict]:
    """(card, tensors) of a checkpoint: the sha256 from the card is checked before safetensors parses the bytes."""
    card = model_card(name, directory)
    path = checkpoint_dir(directory) / f"{name}.safetensors"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"weights file {path} is missing (its card {name}.json is there)") from None
    except OSError as err:
        raise CheckpointError(f"cannot read weights file {path}: {err}") from None
    digest = sha256_bytes(data)
    if digest != card["sha256"]:
        raise CheckpointError(
            f"weights file {path} does not match its card: sha256 is {digest[:12]}…, the card says "
            f"{str(card['sha256'])[:12]}… (the file is truncated, corrupt or was altered)"
        )
    try:
        return card, load_safetensors(data)
    except Exception as err:  # safetensors raises its own error types for malformed headers
        raise CheckpointError(f"weights file {path} is not a valid safetensors file: {err}") from None


def load_into(module: torch.nn.Module, state: dict, name: str, directory=None) -> None:
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as err:
        path = checkpoint_dir(directory) / f"{name}.safetensors"
        raise CheckpointError(f"weights file {path} does not fit the architecture in its card: {err}") from None


def load_model(name: str, device: str | torch.device = "cpu", directory=None) -> DenoisingModel:
    """Load a shipped denoising model by name (sha256 checked, safetensors only): the plain eager float32 model,
    in eval mode on ``device``. engine/serving.py serves one faster (channels-last, background compile)."""
    card, state = load_weights(name, directory)
    if card.get("kind", "denoiser") != "denoiser":
        raise CheckpointError(f"{name} is a {card['kind']}, not a denoising model")
    model = build_model(card)
    load_into(model.net, state, name, directory)
    return model.eval().requires_grad_(False).to(device)
