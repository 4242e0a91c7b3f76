"""Fault injection: every bad input, fault and interruption gets a clear answer and nothing a
user computed is lost. One test (or a few) per case of the reliability issue, numbered as
there."""

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from fake_cubes import tiny_overrides

from datasets import CubeDataset
from datasets.frames import check_complete, open_video
from engine.checkpoint import load_checkpoint, save_checkpoint
from engine.stages import train_stage1
from evaluation.protocol import evaluate, rescore
from pre_process.run import parse_args
from utils.config import ConfigError, load_config
from utils.fingerprint import CheckpointError
from utils.io import LockedError, folder_lock, npy_complete, open_npy_for_writing, write_npz


@pytest.fixture()
def memae_run(tiny_cfg):
    """A trained stage 1 scored as a memae model (seconds on tiny cubes)."""
    cfg = tiny_cfg("model.type=memae", "stage1.num_epochs=1", "eval.plots=false")
    train_stage1(cfg)
    return cfg


def _poison(path: Path, row: int) -> None:
    array = np.load(path)
    array[row] = np.nan
    np.save(path, array)


# 1 -------------------------------------------------------------------------------------------
def test_nan_object_scores_are_an_error_naming_video_frame_and_object(memae_run, tmp_path):
    _poison(tmp_path / "cache" / "cubes" / "testing" / "flows.npy", 5)
    with pytest.raises(ValueError, match=r"non-finite object error .* video a, frame 4, object 1"):
        evaluate(memae_run)


def test_nan_in_scores_json_is_an_error_on_rescore(memae_run, tmp_path):
    evaluate(memae_run)
    path = tmp_path / "run" / "eval" / "scores.json"
    doc = json.loads(path.read_text())
    doc["videos"][1]["objects"]["s_r"][0] = float("nan")
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="video b, frame 0, object 0"):
        rescore(memae_run)


# 2 -------------------------------------------------------------------------------------------
def test_a_run_directory_in_use_is_refused(tiny_cfg, tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        run_dir = tmp_path / "run"
        run_dir.mkdir()
        (run_dir / ".lock").write_text(f"{sleeper.pid}\n")
        with pytest.raises(LockedError, match=f"in use by process {sleeper.pid}"):
            train_stage1(tiny_cfg("stage1.num_epochs=1"))
    finally:
        sleeper.kill()
        sleeper.wait()
    # the holder is gone: its lock is stale and taken over; released after training
    train_stage1(tiny_cfg("stage1.num_epochs=1"))
    assert not (tmp_path / "run" / ".lock").exists()


def test_the_lock_is_reentrant_within_one_process(tmp_path):
    with folder_lock(tmp_path):
        with folder_lock(tmp_path):
            assert (tmp_path / ".lock").read_text().strip() == str(os.getpid())
        assert (tmp_path / ".lock").exists()
    assert not (tmp_path / ".lock").exists()


# 3 -------------------------------------------------------------------------------------------
def test_a_truncated_jpeg_is_named(tmp_path):
    import cv2

    folder = tmp_path / "video"
    folder.mkdir()
    image = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    for i in range(6):
        cv2.imwrite(str(folder / f"{i:03d}.jpg"), image)
    data = (folder / "003.jpg").read_bytes()
    (folder / "003.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"truncated .*003\.jpg"):
        list(open_video(folder).frames())
    check_complete(folder / "002.jpg")  # complete files pass


# 4 -------------------------------------------------------------------------------------------
def test_resume_with_changed_settings_is_refused(tiny_cfg):
    train_stage1(tiny_cfg("stage1.num_epochs=1"))
    with pytest.raises(CheckpointError, match=r"stage1\.lr: 0\.001 there, 0\.5 now"):
        train_stage1(tiny_cfg("stage1.lr=0.5"), resume=True)
    train_stage1(tiny_cfg("stage1.num_epochs=2"), resume=True)  # more epochs are fine


# 5 -------------------------------------------------------------------------------------------
def test_overrides_after_splits_are_overrides():
    cfg, splits = parse_args(["--cfg", "cfgs/ped2.yaml", "--splits", "training", "seed=3"])
    assert splits == ["training"] and cfg.seed == 3
    with pytest.raises(ValueError, match=r"unknown split\(s\) \['trainin'\]"):
        parse_args(["--cfg", "cfgs/ped2.yaml", "--splits", "trainin"])


# 6 -------------------------------------------------------------------------------------------
def test_no_memory_map_is_opened_without_the_disk_space(tmp_path):
    with pytest.raises(OSError, match=r"not enough disk space to write .*flows\.npy"):
        open_npy_for_writing(tmp_path / "flows.npy", np.float32, (1 << 40, 1024))
    assert not (tmp_path / "flows.npy").exists()


# 7 -------------------------------------------------------------------------------------------
def test_nan_in_training_cubes_is_named_and_not_cached(memae_run, tmp_path):
    flows = tmp_path / "cache" / "cubes" / "training" / "flows.npy"
    clean = np.load(flows)
    _poison(flows, 30)
    with pytest.raises(ValueError, match=r"training cubes: non-finite .* video t2, frame 6"):
        evaluate(memae_run)
    assert not list((tmp_path / "run" / "stage1").glob("best.train_stats*"))
    np.save(flows, clean)
    assert evaluate(memae_run)["train_stats"]["std_r"] > 0


# 8 -------------------------------------------------------------------------------------------
def test_an_empty_checkpoint_is_a_checkpoint_error(tmp_path):
    path = tmp_path / "best.pth"
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_checkpoint(path)


# 9 -------------------------------------------------------------------------------------------
def test_a_truncated_cube_file_is_named_and_not_current(tmp_path):
    tiny_overrides(tmp_path)
    folder = tmp_path / "cache" / "cubes" / "training"
    data = (folder / "frames.npy").read_bytes()
    (folder / "frames.npy").write_bytes(data[: len(data) // 2])
    assert not npy_complete(folder / "frames.npy") and npy_complete(folder / "flows.npy")
    with pytest.raises(ValueError, match=r"cube file .*frames\.npy is truncated"):
        CubeDataset(folder)


# 10 ------------------------------------------------------------------------------------------
def test_a_damaged_training_errors_file_is_recomputed(memae_run, tmp_path):
    from datasets import CubeSource
    from inference.trained_run import load_run
    from scoring.statistics import ScoringSettings, cached_object_errors, training_object_errors

    evaluate(memae_run)
    npz = tmp_path / "run" / "stage1" / "best.train_object_scores.npz"
    npz.write_bytes(npz.read_bytes()[:100])
    cfg, model, ckpt, path = load_run(tmp_path / "run")
    device = torch.device("cpu")
    settings = ScoringSettings.from_config(cfg, device)
    cubes = functools.partial(CubeSource.from_config(cfg).open, cfg.data.train_split)
    assert cached_object_errors(settings, ckpt, path) is None
    assert len(training_object_errors(settings, model, cubes, ckpt, path, device)["s_r"]) == 48
    assert len(cached_object_errors(settings, ckpt, path)["s_r"]) == 48  # rewritten whole


# 11, 14, 15 ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "override, message",
    [
        ("device=banana", "'device' must be auto, cpu, cuda or cuda:N"),
        ("stage1.num_epochs=-3", "'stage1.num_epochs' must be an integer >= 0"),
        ("stage2.ckpt_every=0", "'stage2.ckpt_every' must be an integer >= 1"),
        ("eval.w_r=.nan", "'eval.w_r' must be a finite number"),
        ("eval.appearance_hog=1.0", "'eval.appearance_hog' must be a number in"),
    ],
)
def test_impossible_config_values_fail_at_load(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("cfgs/ped2.yaml", [override])


def test_base_must_be_a_path(tmp_path):
    (tmp_path / "bad.yaml").write_text("_base_: 5\n")
    with pytest.raises(ConfigError, match="'_base_' .* must be a file path, got 5"):
        load_config(tmp_path / "bad.yaml")


def test_numbers_in_exponent_notation_are_numbers(tmp_path):
    assert load_config("cfgs/ped2.yaml", ["stage1.lr=1e-3"]).stage1.lr == 0.001
    base = Path.cwd() / "cfgs" / "ped2.yaml"
    (tmp_path / "exp.yaml").write_text(f"_base_: {base}\nstage2:\n  lr: 5e-4\n")
    assert load_config(tmp_path / "exp.yaml").stage2.lr == 0.0005
    with pytest.raises(ConfigError, match="expects float"):
        load_config("cfgs/ped2.yaml", ["stage1.lr=fast"])


# 12 ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["no_videos", "short_s_r", "string_value"])
def test_a_malformed_scores_file_is_named(memae_run, tmp_path, damage):
    evaluate(memae_run)
    path = tmp_path / "run" / "eval" / "scores.json"
    doc = json.loads(path.read_text())
    if damage == "no_videos":
        del doc["videos"]
    elif damage == "short_s_r":
        doc["videos"][0]["objects"]["s_r"].pop()
    else:
        doc["videos"][0]["objects"]["s_r"][0] = "high"
    path.write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match=r"scores file .*scores\.json is malformed"):
        rescore(memae_run)


# 13 ------------------------------------------------------------------------------------------
def test_a_failed_checkpoint_write_names_the_file_and_keeps_the_old_one(
    tiny_cfg, tmp_path, monkeypatch
):
    cfg = tiny_cfg()
    path = tmp_path / "best.pth"
    save_checkpoint(path, {"epoch": 1}, cfg, "memae")

    def full_disk(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(CheckpointError, match=r"cannot write checkpoint .*best\.pth .*MiB free"):
        save_checkpoint(path, {"epoch": 2}, cfg, "memae")
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert not list(tmp_path.glob(".best.pth.*"))


# 16 ------------------------------------------------------------------------------------------
def test_temporaries_of_an_interrupted_write_are_removed(tmp_path):
    stale_file = tmp_path / ".scores.json.abc123.tmp"
    stale_dir = tmp_path / ".scores.json.def456.tmp"
    stale_file.write_text("half")
    stale_dir.mkdir()
    other = tmp_path / ".other.json.abc.tmp"
    other.write_text("not ours")
    write_npz(tmp_path / "scores.json", a=np.zeros(2))
    assert not stale_file.exists() and not stale_dir.exists() and other.exists()


# 17 ------------------------------------------------------------------------------------------
@pytest.mark.slow  # a script process each
@pytest.mark.parametrize("script", ["eval.py", "train.py", "ml_memae_sc_train.py"])
def test_expected_errors_are_one_line(script):
    args = [sys.executable, script, "--cfg", "cfgs/ped2.yaml", "device=banana"]
    if script == "train.py":
        args += ["--stage", "2"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert "error: config key 'device'" in done.stderr
    debug = subprocess.run(args + ["--debug"], capture_output=True, text=True, timeout=120)
    assert "Traceback" in debug.stderr


@pytest.mark.slow  # a script process
def test_preprocessing_errors_are_one_line():
    args = [sys.executable, "-m", "pre_process.run", "--cfg", "cfgs/ped2.yaml", "--splits", "x"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.startswith("pre_process.run: error: unknown split(s) ['x']")


# also: frames far from the training size ---------------------------------------------------
def test_frames_far_larger_than_the_training_frames_are_warned_about(tmp_path):
    import logging

    from datasets.frames import Video
    from inference.detect import warn_frame_size
    from utils.misc import get_logger

    records = []
    handler = logging.Handler()
    handler.emit = records.append
    get_logger().addHandler(handler)
    try:
        warn_frame_size(Video("big", tmp_path / "big.mp4", (), 0, 10, (3000, 4000)), (240, 360))
        warn_frame_size(Video("ok", tmp_path / "ok.mp4", (), 0, 10, (480, 640)), (240, 360))
    finally:
        get_logger().removeHandler(handler)
    assert len(records) == 1
    text = records[0].getMessage()
    assert "3000x4000 are 1.4e+02x the pixels" in text and "3.4 GiB of memory" in text
