"""MNIST in its idx format (gzip), for the paper's toy experiment (Section 4.1, Figure 4).

Only the MNIST test split is available offline, so it is split deterministically by position:
the first `train_fraction` of the 10,000 images form the training part (of which only the normal
digit is used) and the rest form the test part (every digit; the normal digit is label 0).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an idx file (optionally gzip-compressed) into an array of its stated shape."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MNIST file not found: {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in IDX_DTYPES:
        raise ValueError(f"{path} is not an idx file (bad magic number)")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * k : 8 + 4 * k], "big") for k in range(ndim))
    array = np.frombuffer(data, dtype=IDX_DTYPES[data[2]], offset=4 + 4 * ndim)
    if array.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says {shape} but holds {array.size} values")
    return array.reshape(shape)


def load_mnist_split(
    root: str | Path, normal_digit: int = 2, train_fraction: float = 0.7
) -> dict[str, np.ndarray]:
    """Return train_images [Nt,32,32] (normal digit only), test_images [Ns,32,32], test_labels
    [Ns] (1 = anomaly, i.e. any other digit); images uint8, zero-padded from 28x28 to 32x32."""
    root = Path(root)
    images = read_idx(root / "t10k-images-idx3-ubyte.gz")
    digits = read_idx(root / "t10k-labels-idx1-ubyte.gz")
    if len(images) != len(digits):
        raise ValueError(f"{root}: {len(images)} images but {len(digits)} labels")
    images = np.pad(images, ((0, 0), (2, 2), (2, 2)))
    cut = int(round(train_fraction * len(images)))
    train = images[:cut][digits[:cut] == normal_digit]
    return {
        "train_images": train,
        "test_images": images[cut:],
        "test_labels": (digits[cut:] != normal_digit).astype(np.uint8),
    }


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 [N,32,32] -> float32 [N,1,32,32] in [0, 1]."""
    return torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
