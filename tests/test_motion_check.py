"""tools.motion_check: hand-computed flow conversion and warp, and the check on a tiny run."""

import json
from pathlib import Path

import pytest
import torch
from fake_cubes import tiny_overrides

from datasets import CubeDataset, CubeSource
from engine.stages import train_stage
from models import build_model
from models.losses import object_scores
from tools.motion_check import (
    candidate_frames,
    crop_flow,
    kept_epochs,
    load_run_model,
    main,
    units_scale,
    warp_by_flow,
)
from tools.published import RECON_WARP
from tools.report import _references, current_motion_checks, motion_check_section
from utils.config import load_config


def test_crop_flow_scales_by_the_crop_resize_and_the_flow_units():
    flows = torch.tensor([2.0, 3.0]).view(1, 2, 1, 1).expand(1, 2, 32, 32)
    boxes = torch.tensor([[10.0, 5.0, 74.0, 21.0]])  # 64 wide, 16 high, resized to 32 x 32
    assert crop_flow(flows, boxes)[0, :, 7, 9].tolist() == [1.0, 6.0]
    # values stored in units 4x (x) and 2x (y) the frame's pixels: 0.5 and 1.5 frame pixels
    assert crop_flow(flows, boxes, (4.0, 2.0))[0, :, 7, 9].tolist() == [0.25, 3.0]
    cfg = load_config(Path("cfgs/ped2.yaml"))  # units_size [768, 1024]
    assert units_scale(cfg.preprocess.flow.units_size, (240, 360)) == (1024 / 360, 768 / 240)


def test_warp_moves_the_image_along_the_flow():
    image = torch.zeros(1, 1, 8, 10)
    image[0, 0, 2, 3] = 1.0  # one bright pixel at (x=3, y=2)
    flow = torch.zeros(1, 2, 8, 10)
    flow[:, 0], flow[:, 1] = 2.0, 3.0  # everything moves 2 right and 3 down
    moved = warp_by_flow(image, flow)
    expected = torch.zeros(1, 1, 8, 10)
    expected[0, 0, 5, 5] = 1.0
    torch.testing.assert_close(moved, expected)


def test_motion_check_on_a_tiny_cvae_run(tmp_path, one_thread):
    # the hand-made cubes hold flow in frame pixels
    overrides = ["model.type=cvae", "preprocess.flow.units_size=null", "train.keep_epochs=true"]
    cfg = load_config(Path("cfgs/ped2.yaml"), tiny_overrides(tmp_path) + overrides)
    train_stage(cfg, 2)
    run = tmp_path / "run"
    main(["--run", str(run), "--num-cubes", "40"])
    check = json.loads((run / "eval" / "motion_check_testing.json").read_text())
    rows = check["rows"]
    main(["--run", str(run), "--num-cubes", "40", "--all-epochs"])
    epochs = json.loads((run / "eval" / "motion_epochs_testing.json").read_text())["epochs"]
    assert [doc["checkpoint"]["epoch"] for doc in epochs] == [1, 2]
    best = [doc for doc in epochs if doc["checkpoint"]["epoch"] == check["checkpoint"]["epoch"]]
    assert best[0]["rows"] == rows  # epoch_NNN.pth of the best epoch holds best.pth's weights
    assert best[0]["checkpoint"]["saved_at"] == check["checkpoint"]["saved_at"]
    # --checkpoint writes a file of its own and no table in the report, even for the epoch copy
    # of the evaluated checkpoint (the same identity)
    copy = kept_epochs(run)[check["checkpoint"]["epoch"] - 1]
    main(["--run", str(run), "--num-cubes", "40", "--checkpoint", str(copy)])
    other = json.loads((run / "eval" / f"motion_check_testing_stage2_{copy.stem}.json").read_text())
    assert other["rows"] == rows and other["explicit_checkpoint"]
    (run / "eval" / "metrics.json").write_text(json.dumps({"checkpoint": check["checkpoint"]}))
    current = [path.name for path, _ in current_motion_checks(run / "eval")]
    assert current == ["motion_check_testing.json", "motion_epochs_testing.json"]
    table = motion_check_section(current_motion_checks(run / "eval"))
    assert table[-4].startswith("| 1 | ") and table[-3].startswith("| 2 | ")
    assert table[-1].startswith("References: copy of x4 ")

    _, model, _, _ = load_run_model(run)
    dataset = CubeDataset(CubeSource.from_config(cfg).folder("testing"), max_cubes=40)
    frames = torch.stack([dataset[i]["frames"] for i in range(len(dataset))])
    flows = torch.stack([dataset[i]["flows"] for i in range(len(dataset))])
    with torch.inference_mode():
        s_p = object_scores(model(frames, flows)).s_p
    assert rows["prediction (as trained)"]["mean"] == pytest.approx(float(s_p.mean()), rel=1e-5)
    copy = (frames[:, -2] - frames[:, -1]).pow(2).flatten(1).sum(1)
    assert rows["copy of x4"]["mean"] == pytest.approx(float(copy.mean()), rel=1e-5)
    # the fake objects are bars moving by their flow: warping x4 by it must beat copying x4
    assert rows["x4 moved by the true last flow"]["mean"] < 0.5 * rows["copy of x4"]["mean"]


def test_report_shows_only_a_motion_check_of_the_scored_checkpoint(tmp_path):
    rows = {"prediction (as trained)": {"mean": 9.634, "median": 7.891}}
    identity = {"module": "hf2vad", "epoch": 4, "step": 500, "saved_at": "2026-11-29T15:56"}
    (tmp_path / "metrics.json").write_text(json.dumps({"checkpoint": identity}))
    doc = {"run": "runs/x", "checkpoint": identity, "split": "testing", "num_cubes": 256}
    (tmp_path / "motion_check_testing.json").write_text(json.dumps({**doc, "rows": rows}))
    lines = motion_check_section(current_motion_checks(tmp_path))
    assert "--run runs/x --split testing --num-cubes 256" in lines[3]
    assert lines[-1] == "| prediction (as trained) | 9.63 | 7.89 |"
    doc["checkpoint"] = dict(identity, epoch=5)  # retrained since the check
    (tmp_path / "motion_check_testing.json").write_text(json.dumps({**doc, "rows": rows}))
    assert motion_check_section(current_motion_checks(tmp_path)) == []


def test_motion_check_needs_a_cvae_with_flows(tmp_path, one_thread):
    cfg = load_config(Path("cfgs/ped2.yaml"), tiny_overrides(tmp_path) + ["model.type=vae"])
    train_stage(cfg, 2)
    with pytest.raises(SystemExit, match="needs a CVAE that takes flows"):
        load_run_model(tmp_path / "run")


def test_a_hybrid_is_also_checked_with_its_reconstructed_flow():
    small = ["model.memae.feature_root=8", "model.memae.num_slots=50", "model.cvae.nf_start=8"]
    model = build_model(load_config(None, [*small, "model.cvae.nf_max=16"]).model).eval()
    gen = torch.Generator().manual_seed(0)
    frames, flows = torch.rand(2, 5, 3, 32, 32, generator=gen), torch.randn(2, 4, 2, 32, 32)
    boxes = torch.tensor([[0.0, 0.0, 64.0, 32.0], [10.0, 20.0, 42.0, 84.0]])
    candidates = candidate_frames(model, frames, flows, boxes)
    with torch.inference_mode():
        recon = model(frames, flows)["flow_recon"][:, -1]
    expected = warp_by_flow(frames[:, -2], crop_flow(recon, boxes))
    torch.testing.assert_close(candidates[RECON_WARP], expected)
    rows = {name: {"mean": 1.0, "median": 1.0} for name in candidates}
    assert RECON_WARP not in _references(rows)  # it needs the model: not a model-free reference
    assert "x4 moved by the true last flow" in _references(rows)
