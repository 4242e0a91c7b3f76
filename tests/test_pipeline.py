"""The whole pipeline on the synthetic dataset: one command, real learning (a few minutes, CPU)."""

import json

import numpy as np
import pytest
import torch
from scipy.ndimage import median_filter
from sklearn.metrics import roc_auc_score

from datasets.cubes import CubeSource
from datasets.labels import LabelSource
from pipeline.run import run_pipeline
from tools.report import publish
from utils.config import load_config


def flow_magnitude_baseline(cfg) -> float:
    """Micro AUROC (%) of a motion-only score on the same test cubes, computed independently:
    frame score = max over its objects of the mean magnitude of the last flow (0 without
    objects), first frames dropped, median-filtered per video like the model's score."""
    folder = CubeSource.from_config(cfg).folder(cfg.data.test_split)
    manifest = json.loads((folder / "manifest.json").read_text())
    flows = np.load(folder / "flows.npy", mmap_mode="r")
    video_idx = np.load(folder / "video_idx.npy")
    frame_idx = np.load(folder / "frame_idx.npy")
    magnitude = np.sqrt((np.asarray(flows[:, -1], np.float64) ** 2).sum(-1)).mean(axis=(1, 2))
    labels = LabelSource.from_config(cfg).load(manifest["videos"], manifest["num_frames"])
    scores, truth = [], []
    for v, (name, count) in enumerate(zip(manifest["videos"], manifest["num_frames"])):
        if labels[name] is None:
            continue
        frame = np.zeros(count)
        for f, m in zip(frame_idx[video_idx == v], magnitude[video_idx == v]):
            frame[f] = max(frame[f], m)
        drop = cfg.eval.drop_first
        scores.append(median_filter(frame[drop:], size=cfg.eval.window, mode="nearest"))
        truth.append(labels[name][drop:])
    return 100 * roc_auc_score(np.concatenate(truth), np.concatenate(scores))


@pytest.mark.slow
def test_synthetic_pipeline_learns_more_than_motion_magnitude(tmp_path):
    cfg = load_config("cfgs/synthetic.yaml", [f"run_dir={tmp_path / 'run'}"])
    threads = torch.get_num_threads()
    try:
        metrics = run_pipeline(cfg)
    finally:
        torch.set_num_threads(threads)  # the config sets 1 thread; leave other tests alone
    fused = metrics["scores"]["fused"]["micro_auroc"]
    baseline = flow_magnitude_baseline(cfg)
    assert metrics["baseline_flow_magnitude"]["micro_auroc"] == pytest.approx(baseline, abs=1e-2)
    assert fused > 80.0, metrics["scores"]
    assert fused > baseline, (fused, baseline)
    for name in ("scores.json", "metrics.json", "roc.png", "objects_highest.png"):
        assert (tmp_path / "run" / "eval" / name).is_file()
    history = json.loads((tmp_path / "run" / "pipeline_times.json").read_text())
    steps = [step for entry in history for step in entry["seconds"]]
    assert set(steps) >= {"stage1", "stage2", "stage3", "train_stats", "eval"}
    threads = torch.get_num_threads()
    try:
        run_pipeline(cfg)  # everything cached or finished: only the evaluation runs again
    finally:
        torch.set_num_threads(threads)
    again = json.loads((tmp_path / "run" / "pipeline_times.json").read_text())
    assert len(again) == len(history) + 1 and set(again[-1]["seconds"]) == {"eval"}
    published = publish(tmp_path / "run", tmp_path / "published", notes="## Notes\nby hand")
    report = published.read_text()
    assert f"| {fused:.2f} |" in report and report.rstrip().endswith("by hand")
    for name in ("metrics.json", "scores.json", "roc.png", "pipeline_times.json"):
        assert (tmp_path / "published" / name).is_file()
    assert (tmp_path / "published" / "hardest_frames.png").is_file()
    assert "| normal, highest |" in report and "| abnormal, lowest |" in report
