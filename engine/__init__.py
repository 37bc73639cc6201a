"""engine: DDPM and score-matching diffusion from scratch in PyTorch."""
from .generate import generate, sample, sampler_options
from .models import EpsModel, GaussianModel, ScoreModel
from .samplers import SAMPLERS, Step
from .schedules import SCHEDULES, Schedule, get_schedule
