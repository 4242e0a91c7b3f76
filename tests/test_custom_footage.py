"""Own footage without labels (cfgs/custom.yaml): one command trains and calibrates a run."""

import json

import numpy as np
import pytest
from fake_cubes import TINY_MODEL
from test_live import write_video

from pipeline.run import run_pipeline
from pre_process.boxes import BoxExtractor
from utils.config import load_config

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = TINY_MODEL + [
    "stage1.num_epochs=1",
    "stage2.num_epochs=1",
    "stage3.num_epochs=1",
    "stage3.max_cubes=64",
    "eval.plots=false",
    "device=cpu",
]


def test_normal_videos_alone_give_a_calibrated_run(tmp_path, capsys):
    folder = tmp_path / "data" / "custom" / "training" / "frames"
    folder.mkdir(parents=True)
    for name in ("cam_a", "cam_b", "cam_c"):
        write_video(folder / f"{name}.mp4", 40, scale=3)
    cfg = load_config(
        "cfgs/custom.yaml",
        TINY
        + [
            f"data.root={tmp_path / 'data'}",
            f"data.cache_dir={tmp_path / 'cache'}",
            f"run_dir={tmp_path / 'run'}",
            "train.val_videos=[cam_c]",
        ],
    )
    doc = run_pipeline(cfg)
    printed = capsys.readouterr().out
    assert "no AUROC" in printed and "cam_c" in printed
    saved = json.loads((tmp_path / "run" / "eval" / "deployment.json").read_text())
    assert saved == doc
    assert doc["num_training_frames"] == 2 * (40 - cfg.eval.drop_first)
    assert doc["num_validation_frames"] == 40 - cfg.eval.drop_first
    assert 0 <= doc["training_far"] <= cfg.eval.far + 1 / doc["num_training_frames"]
    assert 0 <= doc["validation_far"] <= 1 and np.isfinite(doc["threshold"])
    assert any("only 120 training frames" in w for w in doc["warnings"])
    assert not (tmp_path / "cache" / "cubes" / "testing").exists()  # no test split was needed


def test_minimum_box_areas_scale_with_the_frame_area():
    """A 12x12 moving square is a box at the reference size; in frames twice as wide and tall
    (four times the area) the minimum area grows fourfold and the same square is too small."""
    cfg = load_config("cfgs/ped2.yaml", ["preprocess.boxes.merge=none"])
    frames = []
    for i in range(3):
        frame = np.full((96, 128, 3), 30, np.uint8)
        frame[40:52, 20 + 3 * i : 32 + 3 * i] = 220
        frames.append(frame)
    plain = list(BoxExtractor(cfg.preprocess.boxes).video_boxes(frames))
    scaled_cfg = load_config(
        "cfgs/ped2.yaml", ["preprocess.boxes.merge=none", "preprocess.boxes.reference_size=[48,64]"]
    )
    scaled = list(BoxExtractor(scaled_cfg.preprocess.boxes).video_boxes(frames))
    assert any(len(b) for b in plain) and not any(len(b) for b in scaled)
