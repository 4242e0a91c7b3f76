"""The CVAE's latent divergence S_kl as an optional object score (eval.w_kl, docs/method.md §6.3):
its fusion, the scores it adds, and its path through evaluation, re-scoring and cached
statistics."""

import json

import numpy as np
import pytest
import torch

from engine.stages import train_stage
from evaluation.protocol import evaluate, rescore
from models.losses import object_divergence
from scoring.frame_scores import border_statistics, empty_frame_score, fuse_scores
from scoring.weights import ScoreSet

STATS = {"mean_r": 10.0, "std_r": 2.0, "mean_p": 4.0, "std_p": 0.5, "mean_kl": 3.0, "std_kl": 1.5}


def test_divergence_is_one_more_z_scored_term():
    s_r, s_p, s_kl = np.array([10.0, 12.0]), np.array([4.0, 4.5]), np.array([3.0, 6.0])
    fused = fuse_scores(s_r, s_p, STATS, 1.0, 0.1, s_kl=s_kl, w_kl=0.5)
    np.testing.assert_allclose(fused, [0.0, 1.0 + 0.1 * 1.0 + 0.5 * 2.0])
    assert empty_frame_score(STATS, 0.0, 0.0, w_kl=1.0) == pytest.approx(-2.0)
    with pytest.raises(ValueError, match="latent divergence S_kl"):
        fuse_scores(s_r, s_p, STATS, 1.0, 0.1, w_kl=0.5)  # S_kl missing
    with pytest.raises(ValueError, match="latent divergence S_kl"):
        fuse_scores(s_r, s_p, {k: STATS[k] for k in list(STATS)[:4]}, 1.0, 0.1, s_kl=s_kl, w_kl=1)


def test_divergence_of_hand_made_latent_means():
    q = [torch.tensor([[1.0, 2.0], [0.0, 0.0]]), torch.zeros(2, 3)]
    p = [torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 0.0]])]
    # object 0: 0.5 * (2^2) + 0.5 * 1^2; object 1: 0.5 * 1^2
    got = object_divergence({"q_means": q, "p_means": p})
    torch.testing.assert_close(got, torch.tensor([2.5, 0.5]))
    assert object_divergence({"q_means": [], "p_means": []}) is None
    exported = torch.tensor([7.0, 8.0])  # an exported graph gives it directly
    assert (
        object_divergence({"latent_divergence": exported, "q_means": q, "p_means": p}) is exported
    )


def test_scores_that_the_divergence_adds(tiny_cfg):
    hybrid = ScoreSet.from_config(tiny_cfg("eval.w_kl=0.5"))
    assert hybrid.primary == "fused" and hybrid.weights["fused"].w_kl == 0.5
    assert hybrid.weights["fused_without_divergence"] == (1.0, 0.1, 0.0, 0.0)  # the paper's
    assert hybrid.weights["latent_divergence"] == (0.0, 0.0, 0.0, 1.0)
    both = ScoreSet.from_config(tiny_cfg("eval.w_kl=0.5", "eval.w_a=1"))
    assert "fused_without_divergence" not in both.weights
    assert both.weights["fused_without_appearance"] == (1.0, 0.1, 0.0, 0.0)
    cvae = ScoreSet.from_config(tiny_cfg("model.type=cvae", "eval.w_kl=2"))
    assert cvae.primary == "prediction_with_divergence"
    assert cvae.weights["prediction_with_divergence"] == (0.0, 1.0, 0.0, 2.0)
    assert cvae.weights["frame_prediction"] == (0.0, 1.0, 0.0, 0.0)  # the paper's w/o FR row
    assert not ScoreSet.from_config(tiny_cfg("model.type=cvae")).uses_divergence
    with pytest.raises(ValueError, match="eval.w_kl is 1.0 but model.type 'memae'"):
        ScoreSet.from_config(tiny_cfg("model.type=memae", "eval.w_kl=1"))


def test_divergence_in_evaluation_statistics_and_rescore(tiny_cfg, tmp_path):
    plain = tiny_cfg("model.type=cvae", "stage2.num_epochs=1", "eval.plots=false")
    train_stage(plain, 2)
    metrics = evaluate(plain)  # without S_kl in any score: the statistics are kept anyway
    stats_path = tmp_path / "run" / "stage2" / "best.train_stats.json"
    stats = json.loads(stats_path.read_text())
    with np.load(tmp_path / "run" / "stage2" / "best.train_object_scores.npz") as objects:
        assert objects["s_kl"].mean() == pytest.approx(stats["mean_kl"], rel=1e-6)
        assert stats["std_kl"] > 0
    doc = json.loads((tmp_path / "run" / "eval" / "scores.json").read_text())
    objects = doc["videos"][0]["objects"]
    assert len(objects["s_kl"]) == len(objects["s_p"]) > 0 and min(objects["s_kl"]) > 0

    # statistics written before S_kl existed serve S_p, and are recomputed when S_kl is asked
    old = {k: v for k, v in stats.items() if k not in ("mean_kl", "std_kl")}
    stats_path.write_text(json.dumps(old))
    with_kl = tiny_cfg("model.type=cvae", "eval.plots=false", "eval.w_kl=1")
    assert evaluate(plain)["scores"] == metrics["scores"]
    assert "mean_kl" not in json.loads(stats_path.read_text())
    scored = evaluate(with_kl)
    assert json.loads(stats_path.read_text())["mean_kl"] == pytest.approx(stats["mean_kl"])
    assert scored["main_score"] == "prediction_with_divergence"
    assert scored["scores"]["frame_prediction"] == metrics["scores"]["frame_prediction"]
    assert set(scored["scores"]) == {
        "prediction_with_divergence",
        "frame_prediction",
        "latent_divergence",
    }
    assert rescore(with_kl)["scores"] == scored["scores"]  # no model needed

    # a scores file without S_kl (made before it existed) cannot be re-fused with it
    path = tmp_path / "run" / "eval" / "scores.json"
    doc = json.loads(path.read_text())
    for video in doc["videos"]:
        del video["objects"]["s_kl"]
    path.write_text(json.dumps(doc))
    assert rescore(plain)["scores"]["frame_prediction"] == metrics["scores"]["frame_prediction"]
    with pytest.raises(ValueError, match="S_kl .*evaluate again without --rescore"):
        rescore(with_kl)


def test_border_objects_take_the_divergence_statistics_of_their_group():
    s_r = s_p = np.zeros(4)
    s_kl = np.array([1.0, 3.0, 10.0, 30.0])
    border = np.array([False, False, True, True])
    stats = {"groups": border_statistics(s_r, s_p, border, 1.0, s_kl=s_kl)}
    assert stats["groups"]["interior"]["mean_kl"] == 2.0
    assert stats["groups"]["border"]["std_kl"] == 10.0
    fused = fuse_scores(
        np.zeros(2), np.zeros(2), stats, 0.0, 0.0, border=[False, True], s_kl=[3.0, 30.0], w_kl=1
    )
    np.testing.assert_allclose(fused, [1.0, 1.0])  # each one sigma above its own group
    empty = empty_frame_score(stats, 0.0, 0.0, grouped=True, w_kl=1.0)
    assert empty == pytest.approx(-2.0)  # a zero-error object against the interior objects
