"""The evaluator: its distances behave as distances, and a full image evaluation runs on a tiny model."""
import numpy as np
import pytest
import torch

import engine
from engine import classifier, evaluate, reference, serving, validation
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
    card = classifier.train_classifier("digits8", epochs=10, directory=tmp / "ck")
    return tmp / "ck", card


def test_classifier_trains_and_round_trips(tiny_digits):
    directory, card = tiny_digits
    assert card["metrics"]["held_out_accuracy"] > 0.8
    assert engine.list_models(directory) == ["tiny-digits"]  # classifiers are not offered as generators
    assert engine.list_models(directory, kind="classifier") == ["digits8-classifier"]
    clf = classifier.load_classifier("digits8-classifier", directory)
    with pytest.raises(engine.CheckpointError, match="is a classifier, not a denoising model"):
        engine.load_model("digits8-classifier", directory=directory)
    x, y = load_dataset("digits8", "test")
    assert (clf(x).argmax(1) == y).float().mean() > 0.8


def test_image_evaluation_reports_every_figure(tiny_digits):
    directory, _ = tiny_digits
    model = engine.load_model("tiny-digits", directory=directory)
    clf = classifier.load_classifier("digits8-classifier", directory)
    r = evaluate.evaluate_images(model, clf, "digits8", sampler="ddim", schedule="cosine", steps=5, n=60, batch=30,
                                 seed=3)
    assert r["nfe"] == 5 and r["n"] == 60 and r["seed"] == 3 and r["heldout_sets"] == 3  # 180 held-out images
    # an untrained model is far from the data; real is close
    assert r["fd"] > 2 * r["fd_baseline"] > 0 and r["fd_baseline"] == r["fd_real"]
    assert r["fd_ratio_ci"][0] > 1 and r["kid"] > r["kid_real"] + 3 * r["kid_std"]
    for key in ("fd", "fd_real", "fd_ratio", "confident", "confident_heldout", "coverage_min_class", "nn_ratio"):
        lo, hi = r[key + "_ci"]
        assert lo <= r[key] <= hi, key
    assert 0 <= r["confident"] <= 1 and 0 <= r["coverage_min_class"] <= 0.1
    assert r["confident_heldout"] > r["confident"]  # real digits convince the classifier more than noise does
    assert r["nn_distance_heldout"] > 0 and r["nn_distance_samples"] > 0
    with pytest.raises(ValueError, match="n must be at most 180"):
        evaluate.evaluate_images(model, clf, "digits8", sampler="ddim", schedule="cosine", steps=5, n=1000)


def test_long_evaluations_sample_through_the_compiled_graph_with_eager_results_and_short_ones_do_not(
        tiny_digits, monkeypatch):
    directory, _ = tiny_digits
    monkeypatch.setattr(serving, "COMPILE_NICENESS", 0)  # waited for here: not niced (see test_serving's fixture)
    model = engine.load_model("tiny-digits", directory=directory)
    clf = classifier.load_classifier("digits8-classifier", directory)
    run = dict(sampler="ddim", schedule="cosine", steps=3, n=20, batch=10, seed=1)
    eager = evaluate.evaluate_images(model, clf, "digits8", **run)  # 20 × 3 NFE: far below COMPILE_FROM
    assert eager["network"] == "eager float32" and 20 * 3 < min(evaluate.COMPILE_FROM.values())
    served, how = evaluate.compiled_for_run(model, batches=[10], schedule="cosine", sampler="ddim", spacing="leading")
    assert how == "compiled float32" and served.net.compiled.frozen and len(served.net.compiled.ready) == 1
    x_eager = engine.sample(model, schedule="cosine", sampler="ddim", steps=3, seed=1, n=10)
    x_compiled = engine.sample(served, schedule="cosine", sampler="ddim", steps=3, seed=1, n=10)
    assert torch.allclose(x_compiled, x_eager, atol=1e-4)  # the same function, to float rounding
    assert not served.net.compiled.queued - served.net.compiled.ready  # the run used the ready graph, queued nothing
    compiled = evaluate.evaluate_images(model, clf, "digits8", compile="always", precision="float32", **run)
    assert compiled["network"] == "compiled float32"
    for key in ("fd", "fd_real", "kid", "confident", "nn_distance_samples"):
        assert compiled[key] == pytest.approx(eager[key], rel=1e-3, abs=1e-6), key

    def no_compile(*args, **kwargs):
        raise AssertionError("a short run compiled")

    monkeypatch.setattr(evaluate, "compiled_for_run", no_compile)
    assert evaluate.evaluate_images(model, clf, "digits8", **run)["network"] == "eager float32"
    with pytest.raises(ValueError, match="compile must be one of auto, always, never; got 'yes'"):
        evaluate.evaluate_images(model, clf, "digits8", compile="yes", **run)


def test_reference_statistics_are_cached_beside_the_classifier_and_tied_to_its_weights(tiny_digits):
    directory, _ = tiny_digits
    clf = classifier.load_classifier("digits8-classifier", directory)
    reference._REFERENCES.clear()
    ref = evaluate.reference_statistics(clf, "digits8")
    path = directory / "digits8-classifier.reference.safetensors"
    meta = reference._metadata(path.read_bytes())
    assert meta["classifier_sha256"] == clf.card["sha256"] and ref.count == 1617  # the whole training split
    train_x, _ = load_dataset("digits8", "train")
    f = classifier.classifier_features(clf, train_x).double()
    assert torch.allclose(ref.total, f.sum(0)) and torch.allclose(ref.outer, f.T @ f)
    reference._REFERENCES.clear()  # from the file now
    again = evaluate.reference_statistics(clf, "digits8")
    assert torch.equal(again.outer, ref.outer) and torch.equal(again.sample, ref.sample)
    # other weights under the same name: the file does not match them and is computed again
    other = evaluate.load_classifier("digits8-classifier", directory)
    other.card = dict(other.card, sha256="f" * 64)
    with torch.no_grad():
        other.head.bias.add_(1.0)
        other.body[0].weight.mul_(2.0)
    fresh = evaluate.reference_statistics(other, "digits8")
    assert not torch.allclose(fresh.total, ref.total)
    assert reference._metadata(path.read_bytes())["classifier_sha256"] == "f" * 64


def test_scores_are_drawn_from_the_seed(tiny_digits):
    directory, _ = tiny_digits
    clf = classifier.load_classifier("digits8-classifier", directory)
    test_x, _ = load_dataset("digits8", "test")
    images = test_x[90:]
    a, b = (evaluate.score_images(images, "digits8", seed=5, classifier=clf, heldout=test_x[:90], bootstrap=40)
            for _ in range(2))
    c = evaluate.score_images(images, "digits8", seed=6, classifier=clf, heldout=test_x[:90], bootstrap=40)
    assert a == b
    assert a["fd"] == c["fd"] and a["fd_ci"] != c["fd_ci"] and a["kid"] != c["kid"]


def test_corruptions_damage_what_they_say():
    gen = torch.Generator().manual_seed(0)
    grey = torch.zeros(4, 1, 8, 8)  # away from the clipping at ±1
    assert float((validation.corrupt(grey, "noise 0.1", gen) - grey).std()) == pytest.approx(0.1, rel=0.2)
    x = -torch.ones(4, 1, 8, 8)
    x[:, :, 3:5, 3:5] = 1.0  # a 2×2 white square on black
    assert torch.equal(validation.corrupt(x, "real", gen), x)
    blurred = validation.corrupt(x, "blur 5x5", gen)
    assert float(blurred[0, 0, 4, 4]) == pytest.approx((4 - 21) / 25) and float(blurred.sum()) == pytest.approx(float(x.sum()))
    half = validation.corrupt(x, "half noise", gen)
    assert torch.equal(half[2:], x[2:]) and half[:2].std() > 0.4
    with pytest.raises(ValueError, match="unknown corruption"):
        validation.corrupt(x, "fog", gen)


@pytest.fixture(scope="module")
def mnist_validation():
    if "mnist-classifier" not in engine.list_models(kind="classifier"):
        pytest.skip("no shipped mnist-classifier")
    return validation.validate("mnist", n=250, seed=0, bootstrap=50)


def test_the_shipped_mnist_instrument_ranks_known_damage(mnist_validation):
    """The evaluator's own test: real held-out digits read as real, and known damage ranks by its size."""
    ratio = {r["corruption"]: r["fd_ratio"] for r in mnist_validation}
    assert 0.8 <= ratio["real"] <= 1.25
    assert ratio["real"] < ratio["noise 0.1"] < ratio["noise 0.3"] < ratio["half noise"]
    assert ratio["blur 5x5"] > ratio["noise 0.1"]
    kid = {r["corruption"]: r for r in mnist_validation}
    assert abs(kid["real"]["kid"]) < 3 * kid["real"]["kid_std"]  # unbiased: real reads 0 within its error
    for kind in ("noise 0.3", "blur 5x5", "half noise"):  # clear damage lies beyond real's interval
        assert ratio[kind] > 1.5 and kid[kind]["fd_ratio_ci"][0] > 1 and kid[kind]["kid"] > 3 * kid[kind]["kid_std"]


def test_the_noise_equivalent_sigma_reads_the_noise_that_was_added(mnist_validation):
    """The headline unit validated: the interval of each row (with the ladder's own uncertainty) holds the noise
    that was added to real held-out digits (the probe's images and noise are not the ladder's), and a clear dose
    reads as itself: σ 0.3 within 0.05. Below about 0.15 MNIST at n = 250 cannot tell noise from none."""
    rows = {r["corruption"]: r for r in mnist_validation}
    slack = validation.LADDER_UNCERTAINTY
    for kind, added in validation.KNOWN_NOISE.items():
        lo, hi = rows[kind]["noise_sigma_ci"]
        assert lo - slack <= added <= hi + slack and lo <= rows[kind]["noise_sigma"] <= hi, kind
    assert abs(rows["noise 0.3"]["noise_sigma"] - 0.3) < 0.05
    assert rows["half noise"]["noise_sigma_ci"][0] > 0.3  # gross damage is placed far up the ladder


def test_noise_equivalent_sigma_interpolates_a_monotone_ladder():
    ladder = [[0.0, 1.0], [0.05, 3.0], [0.1, 2.9], [0.2, 7.0]]  # a rung reading below the one before it
    assert evaluate.noise_equivalent_sigma(0.5, ladder) == 0.0
    assert evaluate.noise_equivalent_sigma(2.0, ladder) == pytest.approx(0.025)
    assert evaluate.noise_equivalent_sigma(3.0, ladder) == pytest.approx(0.05)
    assert evaluate.noise_equivalent_sigma(5.0, ladder) == pytest.approx(0.15)
    assert evaluate.noise_equivalent_sigma(11.0, ladder) == pytest.approx(0.3)  # the last segment extended


def test_the_validation_table_states_each_check(mnist_validation):
    text = validation.validation_markdown("mnist", mnist_validation)
    assert text.count("| noise 0.3 |") == 1 and "FAIL" not in text and text.count("- pass:") == 4
    broken = [dict(r, fd_ratio=1.0) for r in mnist_validation]  # an instrument blind to every damage
    assert validation.validation_markdown("mnist", broken).count("**FAIL**") == 2


def test_resampled_fd_matches_torchmetrics():
    gen = torch.Generator().manual_seed(0)
    mix = torch.randn(16, 16, generator=gen) / 4
    train = (torch.randn(3000, 16, generator=gen) @ mix).double()
    ref = evaluate.Reference(train.sum(0), train.T @ train, len(train), train[:500].float())
    f = torch.randn(200, 16, generator=gen) @ mix + 0.1
    draws = torch.randint(200, (3, 200), generator=gen)
    fd = evaluate._resampled_fd(ref.fd_metric(), ref, f, draws)
    direct = [evaluate.frechet_distance(train, f if idx is None else f[idx]) for idx in (None, *draws)]
    assert float(fd[0]) == pytest.approx(direct[0], rel=1e-6)
    batch = evaluate._fd_batch(ref, f.double(), draws)
    assert batch.tolist() == pytest.approx(direct[1:], rel=1e-6)
    assert float(fd[1:].mean()) == pytest.approx(float(fd[0]))  # re-centred on the estimate
    few = torch.randint(200, (3, 9), generator=gen)  # fewer images than features: the n × n form
    assert evaluate._fd_batch(ref, f.double(), few).tolist() == pytest.approx(
        [evaluate.frechet_distance(train, f[idx]) for idx in few], rel=1e-6)
