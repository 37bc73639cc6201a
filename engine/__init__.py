"""engine: DDPM and score-matching diffusion from scratch in PyTorch.

    import engine
    model = engine.load_model("mnist-ddpm")  # or engine.load_served("mnist-ddpm", background_compile=True)
    for step in engine.generate(model, schedule="cosine", sampler="ddim", steps=50, seed=0, n=16):
        ...  # step.x_t, step.x0_pred, step.t, step.sigma, step.nfe
"""
from .checkpoints import CheckpointError, list_models, load_model, model_card, save_model
from .editing import img2img, inpaint, interpolate, invert, slerp
from .generate import MAX_SEED, generate, levels_for, sample, sampler_options, sampler_spec
from .likelihood import Likelihood, bits_per_dim, log_likelihood
from .models import EpsModel, GaussianModel, ScoreModel
from .samplers import SAMPLERS, Step
from .schedules import SCHEDULES, SPACINGS, Schedule, get_schedule
from .serving import load_served, serve
from .toytrain import ToyProgress, train_toy

__all__ = [
    "CheckpointError", "EpsModel", "GaussianModel", "Likelihood", "MAX_SEED", "SAMPLERS", "SCHEDULES", "SPACINGS",
    "Schedule", "ScoreModel", "Step", "bits_per_dim", "generate", "get_schedule", "img2img", "inpaint",
    "interpolate", "invert", "levels_for", "list_models", "load_model", "load_served", "log_likelihood",
    "model_card", "sample", "sampler_options", "sampler_spec", "save_model", "serve", "slerp", "ToyProgress", "train_toy",
]
