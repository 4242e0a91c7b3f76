"""Appearance novelty S_a (scoring/appearance.py): hand-made crops, the bank cache, and S_a in
evaluation, re-scoring and detect."""

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from data_paths import PED2

from datasets import CubeSource
from datasets.frames import open_video
from engine.stages import train_stage1
from evaluation.protocol import appearance_identity, evaluate, rescore
from inference.detect import detect_with
from inference.trained_run import load_trained_run
from pre_process import run_preprocess
from scoring.appearance import (
    AppearanceBank,
    appearance_features,
    bank_identity,
    load_bank,
    orientation_histograms,
    save_bank,
)
from scoring.frame_scores import fuse_scores
from tools.appearance_sweep import standin_from_config, sweep
from tools.pasted_standin import (
    ENTRY_FRAME,
    SPEED,
    draw_sprite,
    saved_scores_ready,
    scores_identity,
)
from utils.config import load_config
from utils.fingerprint import CheckpointError
from utils.io import write_json


def bars(positions, size=32, width=6) -> np.ndarray:
    """Grey crops uint8 [N, size, size]: a bright vertical bar at each x position."""
    crops = np.full((len(positions), size, size), 40, np.uint8)
    for i, x in enumerate(positions):
        crops[i, 4:28, x : x + width] = 200
    return crops


def test_features_ignore_brightness_and_contrast():
    crop = bars([10])
    brighter = (crop.astype(np.int32) // 2 + 60).astype(np.uint8)
    a, b = appearance_features(crop), appearance_features(brighter)
    assert a.shape == (1, 3 * 32 * 32)
    assert float(a.norm()) == pytest.approx(1.0, abs=1e-5)
    assert float((a * b).sum()) == pytest.approx(1.0, abs=1e-3)


def test_orientation_histograms_see_edge_directions():
    vertical = torch.as_tensor(bars([10])).float()  # edges across x: gradient angle 0
    horizontal = vertical.transpose(1, 2)  # edges across y: gradient angle pi/2
    for crop, bin_ in ((vertical, 0), (horizontal, 4)):
        hist = orientation_histograms(crop).reshape(1, 9, 8, 8)
        assert float(hist.norm()) == pytest.approx(1.0, abs=1e-5)
        per_bin = hist.sum(dim=(0, 2, 3))
        assert int(per_bin.argmax()) == bin_ and float(per_bin[bin_]) > 0.6 * float(per_bin.sum())
    assert float(orientation_histograms(torch.full((1, 32, 32), 90.0)).norm()) == 0.0  # flat


def test_features_with_histograms():
    crop = bars([10])
    brighter = (crop.astype(np.int32) // 2 + 60).astype(np.uint8)
    a, b = appearance_features(crop, 0.5), appearance_features(brighter, 0.5)
    assert a.shape == (1, 3 * 32 * 32 + 9 * 8 * 8)
    assert float(a.norm()) == pytest.approx(1.0, abs=1e-5)
    assert float((a * b).sum()) == pytest.approx(1.0, abs=1e-3)
    # a ring (a wheel) against a bank of bars: the histograms make it stand further out
    ring = np.full((1, 32, 32), 40, np.uint8)
    yy, xx = np.indices((32, 32))
    ring[0][np.abs(np.hypot(yy - 16, xx - 16) - 9) < 2] = 200
    bank = bars([6, 8, 10, 12, 14, 16])
    novelty = {
        w: AppearanceBank(bank, np.zeros(6), k=1, hog_weight=w).novelty(
            np.concatenate([ring, bars([11])])
        )
        for w in (0.0, 0.5)
    }
    assert novelty[0.5][0] - novelty[0.5][1] > novelty[0.0][0] - novelty[0.0][1]


def test_novelty_of_seen_unseen_and_own_video_objects():
    bank = AppearanceBank(bars([8, 9, 10, 11, 12]), np.array([0, 0, 1, 1, 1]), k=1)
    seen = bank.novelty(bars([10]))[0]
    shifted = bank.novelty(bars([13]))[0]
    checker = np.kron((np.indices((8, 8)).sum(0) % 2) * 200, np.ones((4, 4))).astype(np.uint8)
    unseen = bank.novelty(checker[None])[0]
    assert seen == pytest.approx(0.0, abs=1e-5)
    assert seen < shifted < unseen
    # with its own video left out, a bank object is compared with the other video only
    own = bank.novelty(bars([8]), video_idx=np.array([0]))[0]
    assert bank.novelty(bars([8]))[0] == pytest.approx(0.0, abs=1e-5) and own > 0.05
    k2 = AppearanceBank(bank.crops, bank.video_idx, k=2).novelty(bars([10]))[0]
    assert k2 > seen  # the mean over the two nearest crops
    with pytest.raises(ValueError, match="appearance_k"):
        AppearanceBank(bars([1, 2]), np.zeros(2), k=3)
    queries = np.concatenate([bars([3, 10, 13, 20]), checker[None]])
    np.testing.assert_allclose(bank.novelty(queries, bf16=True), bank.novelty(queries), atol=2e-3)


def test_bank_cache_belongs_to_its_identity(tmp_path):
    bank = AppearanceBank(bars([8, 9, 10]), np.array([0, 1, 2]), k=1)
    identity = bank_identity("abc", ["08"], 1)
    save_bank(tmp_path / "bank.npz", bank, np.array([0.1, 0.2]), identity)
    loaded, train_s_a = load_bank(tmp_path / "bank.npz", identity)
    assert np.array_equal(loaded.crops, bank.crops) and list(train_s_a) == [0.1, 0.2]
    assert load_bank(tmp_path / "bank.npz", bank_identity("abc", ["08"], 2)) is None
    assert load_bank(tmp_path / "bank.npz", bank_identity("abc", ["08"], 1, 0.5)) is None
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    assert load_bank(tmp_path / "bad.npz", identity) is None


def test_fusion_with_appearance():
    stats = {"mean_r": 0.0, "std_r": 1.0, "mean_p": 0.0, "std_p": 1.0, "mean_a": 0.2, "std_a": 0.1}
    fused = fuse_scores(np.zeros(2), np.zeros(2), stats, 1.0, 0.1, s_a=np.array([0.2, 0.5]), w_a=2)
    np.testing.assert_allclose(fused, [0.0, 6.0])
    with pytest.raises(ValueError, match="eval.w_a"):
        fuse_scores(np.zeros(1), np.zeros(1), stats, 1.0, 0.1, w_a=1.0)  # S_a missing


def test_appearance_in_evaluation_rescore_and_detect(tiny_cfg, tmp_path):
    cfg = tiny_cfg("model.type=memae", "stage1.num_epochs=1", "eval.plots=false", "eval.w_a=1")
    train_stage1(cfg)
    metrics = evaluate(cfg)
    assert set(metrics["scores"]) == {"flow_reconstruction", "appearance"}
    assert metrics["main_score"] == "flow_reconstruction"
    assert metrics["train_stats"]["std_a"] > 0
    assert (tmp_path / "run" / "appearance_bank.npz").is_file()
    doc = json.loads((tmp_path / "run" / "eval" / "scores.json").read_text())
    video_a = doc["videos"][0]["objects"]
    assert len(video_a["s_a"]) == len(video_a["s_r"]) > 0
    again = rescore(cfg)
    assert again["scores"]["appearance"] == metrics["scores"]["appearance"]
    assert "appearance" not in rescore(tiny_cfg("model.type=memae", "eval.plots=false"))["scores"]


def test_rescore_recomputes_s_a_made_with_another_feature(tiny_cfg, tmp_path):
    """S_a needs no model: re-scoring pixel-only scores with orientation histograms gives what
    an evaluation with histograms gives (the tiny cubes have no border group; on Ped2 the
    per-group statistics were checked against a full evaluation)."""
    base = ("model.type=memae", "stage1.num_epochs=1", "eval.plots=false", "eval.w_a=1")
    with_hog = tiny_cfg(*base, "eval.appearance_hog=0.5")
    train_stage1(with_hog)
    direct = evaluate(with_hog)
    scores_path = tmp_path / "run" / "eval" / "scores.json"
    direct_doc = json.loads(scores_path.read_text())
    pixels = evaluate(tiny_cfg(*base))
    assert pixels["train_stats"]["mean_a"] != direct["train_stats"]["mean_a"]
    again = rescore(with_hog)
    assert again["train_stats"] == pytest.approx(direct["train_stats"])
    for name in ("flow_reconstruction", "appearance"):
        assert again["scores"][name]["micro_auroc"] == pytest.approx(
            direct["scores"][name]["micro_auroc"], abs=0.01
        )
    doc = json.loads(scores_path.read_text())
    for video, expected in zip(doc["videos"], direct_doc["videos"]):
        np.testing.assert_allclose(video["objects"]["s_a"], expected["objects"]["s_a"], atol=1e-6)
    assert doc["config"]["eval"]["appearance_hog"] == 0.5  # a second rescore keeps them
    evaluate(tiny_cfg(*base))
    doc = json.loads(scores_path.read_text())
    doc["videos"][0]["objects"]["box"][0][0] += 5.0  # objects that are not the test cubes'
    scores_path.write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="not those of the saved scores"):
        rescore(with_hog)


def test_detect_scores_appearance_like_the_offline_cubes(tmp_path):
    cfg = load_config(
        "cfgs/synthetic.yaml",
        [
            "model.type=memae",
            "model.memae.feature_root=4",
            "model.memae.num_slots=16",
            "stage1.num_epochs=1",
            "stage1.max_cubes=64",
            "synthetic.num_train_videos=2",
            "synthetic.num_test_videos=1",
            "eval.w_a=1",
            f"data.root={tmp_path / 'data'}",
            f"data.cache_dir={tmp_path / 'cache'}",
            f"run_dir={tmp_path / 'run'}",
            "device=cpu",
        ],
    )
    run_preprocess(cfg, splits=("training", "testing"))
    train_stage1(cfg)
    det = load_trained_run(tmp_path / "run", device="cpu")
    video = open_video(tmp_path / "data" / "synthetic" / "testing" / "frames" / "01")
    doc = detect_with(det, [video], tmp_path / "out", progress=False)[0]
    objects = np.genfromtxt(tmp_path / "out" / "01" / "objects.csv", delimiter=",", names=True)
    test = CubeSource.from_config(cfg).open("testing")
    np.testing.assert_allclose(
        objects["s_a"], det.appearance_novelty(test.target_frames()), rtol=1e-5
    )
    assert doc["train_stats"]["std_a"] > 0  # S_a enters only a fused score: memae has none


def test_appearance_sweep_on_tiny_cubes(tiny_cfg):
    result = sweep(tiny_cfg(), [0.0, 0.5], work=None)
    assert [row["appearance_hog"] for row in result["rows"]] == [0.0, 0.5]
    for row in result["rows"]:  # abnormal bars stand elsewhere in their crop than any normal one
        assert row["test"]["micro_auroc"] > 90 and "standin" not in row
    with pytest.raises(ValueError, match="appearance_hog"):
        sweep(tiny_cfg(), [1.0], work=None)


@pytest.mark.slow
def test_standin_objects_find_the_pasted_sprites(tmp_path):
    if not PED2.is_dir():
        pytest.skip(f"real data not found at {PED2} (a user's clone does not have it)")
    cfg = load_config("cfgs/ped2_cpu.yaml", [f"data.root={PED2.parent}", "train.val_videos=['16']"])
    objects = standin_from_config(cfg, tmp_path)
    assert len(objects.labels) == 3 and objects.crops.shape[1:] == (32, 32)
    width = objects.frame_size[1]
    for v, (kind, from_left, y) in enumerate((("cyclist", True, 150.0), ("cart", False, 138.0))):
        sprite_h, sprite_w = draw_sprite(kind).alpha.shape
        found = []
        for i in range(ENTRY_FRAME, objects.num_frames[v + 1]):
            travelled = SPEED * (i - ENTRY_FRAME + 1)
            x = -sprite_w + travelled if from_left else width - travelled
            if x < 0 or x + sprite_w > width:
                continue  # not wholly in view
            mine = (objects.video_idx == v + 1) & (objects.frame_idx == i)
            b = objects.boxes[mine]
            iw = np.minimum(b[:, 2], x + sprite_w) - np.maximum(b[:, 0], x)
            ih = np.minimum(b[:, 3], y + sprite_h) - np.maximum(b[:, 1], y)
            # temporal-gradient boxes may hold only a piece of the sprite (the cart's rear half)
            found.append(bool((iw.clip(0) * ih.clip(0) >= 0.3 * sprite_w * sprite_h).any()))
        assert len(found) > 20 and np.mean(found) > 0.8, (kind, np.mean(found))


def test_standin_rescore_takes_only_scores_of_the_same_scoring(tmp_path):
    settings = SimpleNamespace(appearance_k=5, appearance_hog=0.5)
    det = SimpleNamespace(
        cfg=SimpleNamespace(eval=settings),
        scoring=SimpleNamespace(identity=lambda ckpt: {"epoch": ckpt["epoch"]}),
        ckpt={"epoch": 3},
    )
    with pytest.raises(FileNotFoundError, match="run without --rescore"):
        saved_scores_ready(tmp_path, det)
    write_json(tmp_path / "identity.json", scores_identity(det))
    saved_scores_ready(tmp_path, det)
    settings.appearance_hog = 0.0  # S_a of another feature
    with pytest.raises(ValueError, match="appearance_hog"):
        saved_scores_ready(tmp_path, det)
    settings.appearance_hog, det.ckpt = 0.5, {"epoch": 4}  # another checkpoint
    with pytest.raises(ValueError, match="another checkpoint"):
        saved_scores_ready(tmp_path, det)


def test_appearance_identity_of_a_config_saved_before_s_a():
    """A result scored before S_a existed has no S_a identity (--rescore then computes S_a as
    the config asks) instead of failing on the missing key."""
    cfg = load_config(Path("cfgs/ped2_cpu.yaml")).to_dict()
    assert appearance_identity(cfg)["hog_weight"] == 0.5
    old = dict(cfg, eval={k: v for k, v in cfg["eval"].items() if not k.startswith("appearance")})
    assert appearance_identity(old) == {}
