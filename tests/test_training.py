"""Training stages, checkpoints, resuming and evaluation on tiny hand-made cubes (fast, CPU)."""

import json

import numpy as np
import pytest
import torch

from engine.checkpoint import load_checkpoint
from engine.stages import train_stage, train_stage1
from evaluation.protocol import evaluate, evaluate_epochs, read_scores, rescore
from evaluation.settings import EvalSettings
from utils.fingerprint import CheckpointError


def assert_same_state(a: dict, b: dict, atol=1e-6):
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=atol, rtol=1e-5, msg=key)


def test_resume_reaches_the_same_weights(tiny_cfg, tmp_path):
    """Stages 1 and 2 (dropout, latent noise): 2 epochs == 1 epoch, killed, resumed to 2."""
    full = tiny_cfg(f"run_dir={tmp_path / 'full'}")
    train_stage1(full)
    train_stage(full, 2)
    cut = f"run_dir={tmp_path / 'cut'}"
    train_stage1(tiny_cfg(cut, "stage1.num_epochs=1"))
    train_stage1(tiny_cfg(cut), resume=True)
    train_stage(tiny_cfg(cut, "stage2.num_epochs=1"), 2)
    assert load_checkpoint(tmp_path / "cut" / "stage2" / "last.pth")["epoch"] == 1
    train_stage(tiny_cfg(cut), 2, resume=True)
    for stage in ("stage1", "stage2"):
        for name in ("last.pth", "best.pth"):
            a = load_checkpoint(tmp_path / "full" / stage / name)
            b = load_checkpoint(tmp_path / "cut" / stage / name)
            assert (a["epoch"], a["step"]) == (b["epoch"], b["step"])
            assert_same_state(a["model"], b["model"])
            assert a["scheduler"] == b["scheduler"]
            assert a["epoch_loss"] == pytest.approx(b["epoch_loss"], rel=1e-5)


def test_existing_run_needs_resume_and_finished_stage_is_skipped(tiny_cfg):
    cfg = tiny_cfg("stage1.num_epochs=1")
    train_stage1(cfg)
    with pytest.raises(CheckpointError, match="--resume"):
        train_stage1(cfg)
    assert train_stage1(cfg, resume=True)["seconds"] == 0.0


def test_truncated_checkpoint_is_a_clear_error(tiny_cfg, tmp_path):
    cfg = tiny_cfg("stage1.num_epochs=1")
    train_stage1(cfg)
    path = tmp_path / "run" / "stage1" / "last.pth"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(path, cfg)
    with pytest.raises(CheckpointError, match="truncated"):
        train_stage1(cfg, resume=True)


def test_checkpoint_from_another_config_is_a_clear_error(tiny_cfg, tmp_path):
    train_stage1(tiny_cfg("stage1.num_epochs=1"))
    path = tmp_path / "run" / "stage1" / "last.pth"
    with pytest.raises(CheckpointError, match=r"model settings.*memae.num_slots: 16 there, 8 now"):
        load_checkpoint(path, tiny_cfg("model.memae.num_slots=8"))
    with pytest.raises(CheckpointError, match="data settings.*cubes.size"):
        train_stage1(tiny_cfg("preprocess.cubes.size=24"), resume=True)
    # settings that do not change the weights are not checked
    load_checkpoint(path, tiny_cfg("model.deterministic=false", "data.root=elsewhere"))
    # stage 2 checks the stage-1 checkpoint it starts from
    with pytest.raises(CheckpointError, match="memae.feature_root"):
        train_stage(tiny_cfg("model.memae.feature_root=8"), 2)


def test_evaluation_outputs(tiny_cfg, tmp_path):
    cfg = tiny_cfg()
    train_stage1(cfg)
    train_stage(cfg, 2)
    train_stage(cfg, 3)
    metrics = evaluate(cfg)
    out = tmp_path / "run" / "eval"
    stats = json.loads((tmp_path / "run" / "stage3" / "best.train_stats.json").read_text())
    assert stats["num_cubes"] == 48 and stats["std_r"] > 0 and stats["std_p"] > 0
    with np.load(tmp_path / "run" / "stage3" / "best.train_object_scores.npz") as objects:
        assert objects["s_r"].mean() == pytest.approx(stats["mean_r"], rel=1e-6)  # detect --far
    assert set(metrics["scores"]) == {"fused", "flow_reconstruction", "frame_prediction"}
    fused = metrics["scores"]["fused"]
    assert fused["num_labelled_videos"] == 2
    assert fused["num_scored_frames"] == 2 * (20 - 4)
    assert fused["per_video_auroc"]["c"] is None
    assert metrics["checkpoint"]["selection"].startswith("best")
    assert metrics["checkpoint"]["train_precision"] == "float32"  # as run
    assert metrics["checkpoint"]["scoring_precision"] == "float32"
    assert metrics["num_frames_without_objects"] == 4 + 8

    doc = json.loads((out / "scores.json").read_text())
    video_a, _, video_c = doc["videos"]
    assert video_a["frame_score"][:4] == [None] * 4 and video_a["smoothed_score"][:4] == [None] * 4
    assert len(video_a["frame_score"]) == 20 and video_a["labels"][10] == 1
    assert video_c["labels"] is None and video_c["objects"]["frame"] == []
    objects = video_a["objects"]
    assert len(objects["box"]) == len(objects["s_r"]) == 2 * 18
    # frame 5 of video a: max over its two objects
    f5 = [s for f, s in zip(objects["frame"], objects["score"]) if f == 5]
    assert video_a["frame_score"][5] == pytest.approx(max(f5))
    # a frame without objects has the score of a zero-error object
    empty = -stats["mean_r"] / stats["std_r"] - 0.1 * stats["mean_p"] / stats["std_p"]
    assert video_c["frame_score"][6] == pytest.approx(empty)
    for name in ("roc.png", "objects_highest.png", "objects_lowest.png", "curves/a.png"):
        assert (out / name).is_file(), name

    # re-fusing the saved scores with other weights needs no model
    again = rescore(tiny_cfg("eval.w_p=0.0"))
    assert (
        again["scores"]["fused"]["micro_auroc"]
        == again["scores"]["flow_reconstruction"]["micro_auroc"]
    )
    with pytest.raises(CheckpointError, match="scores .* other data settings"):
        read_scores(out / "scores.json", EvalSettings.from_config(tiny_cfg("data.dataset=avenue")))


def test_single_branch_model_types(tiny_cfg, tmp_path):
    """memae: stage 1 only, scored by S_r; cvae: stage 2 only, scored by S_p; no stage 3."""
    memae = tiny_cfg("model.type=memae", "stage1.num_epochs=1", "eval.plots=false")
    train_stage1(memae)
    metrics = evaluate(memae)
    assert list(metrics["scores"]) == ["flow_reconstruction"]
    assert metrics["checkpoint"]["path"].endswith("stage1/best.pth")
    cvae = tiny_cfg("model.type=cvae", "stage2.num_epochs=1", "eval.plots=false")
    with pytest.raises(ValueError, match="stage 1 is for hybrid and memae"):
        train_stage1(cvae)
    with pytest.raises(ValueError, match="trained by stage 2 alone"):
        train_stage(cvae, 3)
    train_stage(cvae, 2)
    metrics = evaluate(cvae)
    assert list(metrics["scores"]) == ["frame_prediction"]
    assert metrics["checkpoint"]["path"].endswith("stage2/best.pth")


def test_bf16_autocast_on_cpu_and_per_epoch_evaluation(tiny_cfg, tmp_path, fast_bf16):
    cfg = tiny_cfg(
        "model.type=memae", "train.bf16_cpu=true", "train.keep_epochs=true", "eval.plots=false"
    )
    train_stage1(cfg)
    last = load_checkpoint(tmp_path / "run" / "stage1" / "last.pth")
    assert last["epoch_loss"] > 0 and last["precision"] == "bfloat16"
    doc = evaluate_epochs(cfg)
    assert [row["epoch"] for row in doc["epochs"]] == [1, 2]
    assert doc["last_epoch"]["epoch"] == 2
    assert (tmp_path / "run" / "eval" / "epochs.json").is_file()


def test_runs_can_share_a_stage_1(tiny_cfg, tmp_path):
    """train.stage1_from: a memae run evaluates another run's stage 1; a hybrid trains stages 2
    and 3 from it; neither trains a stage 1 of its own."""
    from engine.run_dir import RunLayout

    train_stage1(tiny_cfg("stage1.num_epochs=1"))
    shared = str(tmp_path / "run" / "stage1" / "best.pth")
    memae = tiny_cfg("model.type=memae", f"train.stage1_from={shared}", "run_dir=" + str(tmp_path))
    layout = RunLayout.from_config(memae)
    assert list(layout.stages) == [] and str(layout.eval_checkpoint_path()) == shared
    with pytest.raises(ValueError, match="train.stage1_from"):
        train_stage1(memae)
    hybrid = tiny_cfg(
        f"train.stage1_from={shared}", f"run_dir={tmp_path / 'k2'}", "model.num_recon_flows=2"
    )
    assert list(RunLayout.from_config(hybrid).stages) == [2, 3]
    train_stage(hybrid, 2)
    start = load_checkpoint(shared)["model"]
    trained = load_checkpoint(tmp_path / "k2" / "stage2" / "last.pth")["model"]
    for key, value in start.items():  # stage 2 keeps the shared ML-MemAE-SC frozen
        torch.testing.assert_close(trained[f"memae.{key}"], value)


def test_sampled_latents_depend_on_the_seed_only(tiny_cfg, tmp_path):
    """Appendix B: sampled z gives other scores than the posterior mean, the same ones for the
    same seed, and training statistics per seed beside the checkpoint."""
    base = ["model.type=cvae", "stage2.num_epochs=1", "eval.plots=false"]
    train_stage(tiny_cfg(*base), 2)
    runs = {}
    for name, extra in (("mean", []), ("s1", ["seed=1"]), ("s1b", ["seed=1"]), ("s2", ["seed=2"])):
        sampled = [] if name == "mean" else ["model.deterministic=false"]
        cfg = tiny_cfg(*base, *sampled, *extra, f"run_dir={tmp_path / 'run'}")
        evaluate(cfg, out_dir=tmp_path / name)
        doc = json.loads((tmp_path / name / "scores.json").read_text())
        runs[name] = doc["videos"][0]["objects"]["s_p"]
    assert runs["s1"] == runs["s1b"] and runs["s1"] != runs["s2"] and runs["s1"] != runs["mean"]
    names = sorted(p.name for p in (tmp_path / "run" / "stage2").glob("best.train_stats*.json"))
    assert names == [
        "best.train_stats.json",
        "best.train_stats.sampled_seed1.json",
        "best.train_stats.sampled_seed2.json",
    ]


def test_stage2_can_train_the_cvae_on_original_flows(tiny_cfg, monkeypatch):
    """stage2.cvae_flows=original: stage 2 runs no ML-MemAE-SC at all (the CVAE sees the original
    flows); stage 3 then fine-tunes on the reconstructions as usual."""
    import engine.stages as stages
    from models.hybrid import HF2VAD

    train_stage1(tiny_cfg("stage1.num_epochs=1"))
    with pytest.raises(ValueError, match="stage2.cvae_flows"):
        train_stage(tiny_cfg("stage2.cvae_flows=both"), 2)
    reconstruct = HF2VAD._reconstruct_flows

    def no_memae(*args, **kwargs):
        raise AssertionError("stage 2 on original flows ran ML-MemAE-SC")

    monkeypatch.setattr(HF2VAD, "_reconstruct_flows", no_memae)
    monkeypatch.setattr(stages, "cached_reconstructions", no_memae)
    cfg = tiny_cfg("stage2.cvae_flows=original", "stage2.num_epochs=1", "stage3.num_epochs=1")
    train_stage(cfg, 2)
    with pytest.raises(AssertionError, match="ran ML-MemAE-SC"):
        train_stage(cfg, 3)  # stage 3 does reconstruct
    monkeypatch.setattr(HF2VAD, "_reconstruct_flows", reconstruct)
    train_stage(cfg, 3)
