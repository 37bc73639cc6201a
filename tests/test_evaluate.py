"""The evaluator: its distances behave as distances, and a full image evaluation runs on a tiny model."""
import numpy as np
import pytest
import torch

import engine
from engine import evaluate
from engine.data import load_dataset, toy_sample
from engine.train import TrainConfig, Trainer


def test_frechet_distance_is_zero_for_the_same_set_and_grows_with_a_shift():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(2000, 8))
    g = rng.normal(size=(2000, 8))
    assert evaluate.frechet_distance(f, f) == pytest.approx(0.0, abs=1e-6)
    same = evaluate.frechet_distance(f, g)
    shifted = evaluate.frechet_distance(f, g + 1.0)
    assert same < 0.1 and shifted == pytest.approx(8.0 + same, rel=0.05)  # ‖Δμ‖² = 8


def test_sliced_wasserstein_separates_distributions():
    gen = torch.Generator().manual_seed(0)
    a, b = toy_sample("moons", 2000, gen), toy_sample("moons", 2000, gen)
    c = toy_sample("8gaussians", 2000, gen)
    assert evaluate.sliced_wasserstein(a, b) < 0.1 < evaluate.sliced_wasserstein(a, c)


@pytest.fixture(scope="module")
def tiny_digits(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eval")
    cfg = TrainConfig(
        name="tiny-digits", dataset="digits8", arch="unet", steps=2, batch_size=8, save_every=2,
        arch_config={"base_channels": 16, "channel_mults": [1, 2], "num_res_blocks": 1, "attention_resolutions": [4], "num_groups": 4},
        run_dir=str(tmp / "runs"), export_dir=str(tmp / "ck"), device="cpu",
    )
    Trainer(cfg).run(quiet=True)
    card = evaluate.train_classifier("digits8", epochs=10, directory=tmp / "ck")
    return tmp / "ck", card


def test_classifier_trains_and_round_trips(tiny_digits):
    directory, card = tiny_digits
    assert card["metrics"]["held_out_accuracy"] > 0.8
    assert engine.list_models(directory) == ["tiny-digits"]  # classifiers are not offered as generators
    assert engine.list_models(directory, kind="classifier") == ["digits8-classifier"]
    clf = evaluate.load_classifier("digits8-classifier", directory)
    with pytest.raises(engine.CheckpointError, match="is a classifier, not a denoising model"):
        engine.load_model("digits8-classifier", directory=directory)
    x, y = load_dataset("digits8", "test")
    assert (clf(x).argmax(1) == y).float().mean() > 0.8


def test_image_evaluation_reports_every_figure(tiny_digits):
    directory, _ = tiny_digits
    model = engine.load_model("tiny-digits", directory=directory)
    clf = evaluate.load_classifier("digits8-classifier", directory)
    r = evaluate.evaluate_images(model, clf, "digits8", sampler="ddim", schedule="cosine", steps=5, n=100, batch=50)
    assert r["nfe"] == 5 and r["n"] == 100
    # an untrained model is far from the data; real-vs-real is close
    assert r["fd"] > 2 * r["fd_baseline"] > 0
    assert 0 <= r["confident"] <= 1 and 0 <= r["coverage_min_class"] <= 0.1
    assert r["confident_heldout"] > r["confident"]  # real digits convince the classifier more than noise does
    assert r["nn_distance_heldout"] > 0 and r["nn_distance_samples"] > 0
    with pytest.raises(ValueError, match="n must be at most 180"):
        evaluate.evaluate_images(model, clf, "digits8", sampler="ddim", schedule="cosine", steps=5, n=1000)
