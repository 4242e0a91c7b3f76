"""Whole-frame mode (Appendix D): one box per frame, on a stand-in with whole-scene events."""

import json

import cv2
import numpy as np
import pytest
from fake_cubes import TINY_MODEL

from datasets.synthetic import generate
from pipeline.run import run_pipeline
from pre_process.boxes import BoxExtractor
from utils.config import load_config

pytestmark = pytest.mark.usefixtures("one_thread")


def test_whole_frame_boxes_cover_every_frame():
    cfg = load_config("cfgs/synthetic_whole_frame.yaml")
    frames = [np.zeros((48, 64, 3), np.uint8)] * 3
    boxes = list(BoxExtractor(cfg.preprocess.boxes).video_boxes(frames))
    assert [b.tolist() for b in boxes] == [[[0.0, 0.0, 64.0, 48.0]]] * 3


def test_scene_events_are_labelled_and_visible(tmp_path):
    cfg = load_config("cfgs/synthetic_whole_frame.yaml", ["synthetic.num_test_videos=2"])
    generate(tmp_path / "s", cfg.synthetic)
    for video, kind in (("01", "flash"), ("02", "shake")):
        labels = np.load(tmp_path / "s" / "testing" / "test_frame_mask" / f"{video}.npy")
        assert labels.sum() == cfg.synthetic.event_frames, kind
    folder = tmp_path / "s" / "testing" / "frames" / "01"
    labels = np.load(tmp_path / "s" / "testing" / "test_frame_mask" / "01.npy")
    brightness = [cv2.imread(str(p)).mean() for p in sorted(folder.iterdir())]
    inside = np.mean([b for b, lab in zip(brightness, labels) if lab])
    outside = np.mean([b for b, lab in zip(brightness, labels) if not lab])
    assert inside > 1.4 * outside  # the flash brightens the whole scene


def test_whole_frame_pipeline_on_scene_events(tmp_path):
    overrides = TINY_MODEL + [
        "stage1.num_epochs=1",
        "stage2.num_epochs=1",
        "stage3.num_epochs=1",
        "synthetic.num_train_videos=2",
        "synthetic.num_test_videos=2",
        "eval.plots=false",
        "device=cpu",
        f"data.root={tmp_path / 'data'}",
        f"data.cache_dir={tmp_path / 'cache'}",
        f"run_dir={tmp_path / 'run'}",
    ]
    cfg = load_config("cfgs/synthetic_whole_frame.yaml", overrides)
    metrics = run_pipeline(cfg)
    assert metrics["num_objects"] == metrics["num_frames"] == 2 * cfg.synthetic.num_frames
    assert metrics["num_frames_without_objects"] == 0
    assert metrics["scores"]["fused"]["micro_auroc"] is not None
    doc = json.loads((tmp_path / "run" / "eval" / "scores.json").read_text())
    height, width = cfg.synthetic.height, cfg.synthetic.width
    assert doc["videos"][0]["objects"]["box"][0] == [0.0, 0.0, float(width), float(height)]
