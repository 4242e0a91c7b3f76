"""MNIST idx reader and the deterministic normal/anomaly split of the toy experiment."""

import gzip
from pathlib import Path

import numpy as np
import pytest
from data_paths import MNIST

from datasets.mnist import load_mnist_split, read_idx


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in array.shape
    )
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_idx_round_trip_and_split(tmp_path):
    images = np.arange(10 * 28 * 28, dtype=np.int64).reshape(10, 28, 28) % 251
    digits = np.array([2, 1, 2, 3, 2, 2, 0, 2, 9, 2])
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", digits)
    assert np.array_equal(read_idx(tmp_path / "t10k-images-idx3-ubyte.gz"), images)
    split = load_mnist_split(tmp_path, normal_digit=2, train_fraction=0.5)
    assert split["train_images"].shape == (3, 32, 32)  # digits 2 among the first five
    assert np.array_equal(split["train_images"][1, 2:30, 2:30], images[2])
    assert split["train_images"][:, :2].sum() == 0  # zero padding
    assert split["test_labels"].tolist() == [0, 1, 0, 1, 0]


def test_bad_files(tmp_path):
    (tmp_path / "junk.gz").write_bytes(gzip.compress(b"\x01\x02\x03\x04"))
    with pytest.raises(ValueError, match="junk.gz is not an idx file"):
        read_idx(tmp_path / "junk.gz")
    with pytest.raises(FileNotFoundError, match="t10k-images"):
        load_mnist_split(tmp_path)


@pytest.mark.skipif(not MNIST.is_dir(), reason=f"MNIST data absent ({MNIST}; set HF2VAD_DATASETS)")
def test_real_mnist_split():
    split = load_mnist_split(MNIST)
    assert split["test_images"].shape == (3000, 32, 32)
    assert 600 < len(split["train_images"]) < 800
    assert 0.85 < split["test_labels"].mean() < 0.95
