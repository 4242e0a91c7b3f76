"""Where the tests find real data: $HF2VAD_DATASETS, else the development copy beside the clone.
Tests that need it skip with a message when it is absent."""

import os
from pathlib import Path

DATASETS = Path(
    os.environ.get("HF2VAD_DATASETS")
    or Path(__file__).resolve().parent.parent.parent / "shared" / "data"
)
PED2 = DATASETS / "ped2"
MNIST = DATASETS / "mnist"
