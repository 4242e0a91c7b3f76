"""The validation split of whole training videos, early stopping and stage 2's precomputed
reconstructions (tiny hand-made cubes, CPU)."""

import copy

import numpy as np
import pytest
import scipy.signal
import torch

from datasets import CubeDataset, CubeSource, WithFlowRecon
from engine.checkpoint import load_checkpoint
from engine.stages import frozen_reconstructions, train_stage, train_stage1
from engine.trainer import FitSettings
from models import build_model
from scoring.frame_scores import smooth
from utils.config import load_config, replaced


def test_validation_videos_are_left_out_of_training(tiny_cfg):
    cfg = tiny_cfg("train.val_videos=[t2]", "train.val_max_cubes=10")
    train, val = CubeSource.from_config(cfg).train_val()
    names = train.videos
    assert {names[v] for v in train.video_idx} == {"t1"}
    assert {names[v] for v in val.video_idx} == {"t2"}
    assert len(train) == 24 and len(val) == 10
    assert CubeSource.from_config(tiny_cfg()).train_val()[1] is None


def test_unknown_validation_video_is_named(tiny_cfg):
    with pytest.raises(ValueError, match=r"\['t9'\] are not in cube folder"):
        CubeSource.from_config(tiny_cfg("train.val_videos=[t9]")).train_val()


def test_subset_rows_follow_the_videos(tiny_cfg, tmp_path):
    folder = tmp_path / "cache" / "cubes" / "training"
    whole = CubeDataset(folder)
    part = CubeDataset(folder, include=["t2"], max_cubes=5)
    assert len(part) == 5
    for i in range(len(part)):
        row = part.rows[i]
        assert whole.videos[part.video_idx[i]] == "t2"
        torch.testing.assert_close(part[i]["frames"], whole[int(row)]["frames"])


def test_best_checkpoint_is_the_lowest_validation_error(tiny_cfg, tmp_path):
    cfg = tiny_cfg("train.val_videos=[t2]", "stage1.num_epochs=3")
    train_stage1(cfg)
    last = load_checkpoint(tmp_path / "run" / "stage1" / "last.pth")
    best = load_checkpoint(tmp_path / "run" / "stage1" / "best.pth")
    assert last["selected_by"] == "validation" and last["val_loss"] > 0
    assert best["val_loss"] == pytest.approx(last["best_loss"])
    assert best["epoch"] == last["best_epoch"]


def test_patience_stops_early_and_a_rerun_does_nothing(tiny_cfg, tmp_path):
    # lr 0 and no dropout: every epoch gives the same validation error, so no epoch after the
    # first improves and patience 1 stops after epoch 2
    cfg = tiny_cfg(
        "train.val_videos=[t2]",
        "stage2.num_epochs=5",
        "stage2.patience=1",
        "stage2.lr=0.0",
        "model.cvae.dropout=0.0",
        "model.type=cvae",
    )
    summary = train_stage(cfg, 2)
    assert summary["epochs"] == 2 and summary["best_epoch"] == 1
    last = load_checkpoint(tmp_path / "run" / "stage2" / "last.pth")
    assert last["stopped_early"] and last["epoch"] == 2
    assert train_stage(cfg, 2, resume=True)["seconds"] == 0.0


def test_precomputed_reconstructions_equal_the_frozen_forward(tiny_cfg):
    cfg = tiny_cfg()
    torch.manual_seed(0)
    model = build_model(cfg.model)
    model.set_memae_frozen(True)
    model.eval()
    train, _ = CubeSource.from_config(cfg).train_val()
    recon = frozen_reconstructions(
        model.memae, train, torch.device("cpu"), FitSettings.from_config(cfg)
    )
    cached = WithFlowRecon(train, recon)
    batch = {k: torch.stack([cached[i][k] for i in range(4)]) for k in ("frames", "flows")}
    batch["flow_recon"] = torch.stack([cached[i]["flow_recon"] for i in range(4)])
    with torch.no_grad():
        direct = model(batch["frames"], batch["flows"])
        given = model(batch["frames"], batch["flows"], batch["flow_recon"])
    torch.testing.assert_close(given["flow_recon"], direct["flow_recon"], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(given["frame_pred"], direct["frame_pred"], atol=1e-5, rtol=1e-4)


def test_resumed_stage2_reads_its_reconstructions_back(tiny_cfg, tmp_path, monkeypatch):
    from engine import stages

    cfg = tiny_cfg("train.val_videos=[t2]", "stage1.num_epochs=1", "stage2.num_epochs=1")
    train_stage1(cfg)
    computed, trained_on = [], []
    real_reconstructions, real_fit = stages.frozen_reconstructions, stages.fit

    def counted(*args, **kwargs):
        computed.append(1)
        return real_reconstructions(*args, **kwargs)

    def interrupted(run, *args, **kwargs):
        raise KeyboardInterrupt

    def recorded(run, *args, **kwargs):
        trained_on.append((run.dataset.recon, run.val_dataset.recon))
        return real_fit(run, *args, **kwargs)

    monkeypatch.setattr(stages, "frozen_reconstructions", counted)
    monkeypatch.setattr(stages, "fit", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_stage(cfg, 2)
    assert len(computed) == 2  # training and validation cubes
    saved = sorted(p.name for p in (tmp_path / "run" / "stage2").glob("frozen_recon_*.npz"))
    assert saved == ["frozen_recon_train.npz", "frozen_recon_val.npz"]

    monkeypatch.setattr(stages, "fit", recorded)
    train_stage(cfg, 2, resume=True)
    assert len(computed) == 2  # read back, not computed again
    model = build_model(cfg.model)
    model.memae.load_state_dict(load_checkpoint(tmp_path / "run" / "stage1" / "best.pth")["model"])
    train, val = CubeSource.from_config(cfg).train_val()
    settings = FitSettings.from_config(cfg)
    for recon, data in zip(trained_on[0], (train, val)):
        expected = real_reconstructions(model.memae, data, torch.device("cpu"), settings)
        torch.testing.assert_close(recon, expected)
    assert not list((tmp_path / "run" / "stage2").glob("frozen_recon_*"))  # removed when done


def test_reconstruction_key_follows_the_weights_and_the_cubes(tiny_cfg):
    from engine.stages import reconstruction_key

    cfg = tiny_cfg("train.val_videos=[t2]")
    torch.manual_seed(0)
    memae = build_model(cfg.model).memae
    train, val = CubeSource.from_config(cfg).train_val()
    settings, cpu = FitSettings.from_config(cfg), torch.device("cpu")
    key = reconstruction_key(memae, train, cpu, settings)
    assert key == reconstruction_key(copy.deepcopy(memae), train, cpu, settings)
    assert key != reconstruction_key(memae, val, cpu, settings)
    with torch.no_grad():
        next(memae.parameters()).add_(1e-3)
    assert key != reconstruction_key(memae, train, cpu, settings)


def test_damaged_reconstruction_file_is_computed_again(tiny_cfg, tmp_path):
    from engine.stages import cached_reconstructions

    cfg = tiny_cfg()
    torch.manual_seed(0)
    memae = build_model(cfg.model).memae.eval()
    train, _ = CubeSource.from_config(cfg).train_val()
    settings, cpu = FitSettings.from_config(cfg), torch.device("cpu")
    path = tmp_path / "recon.npz"
    path.write_bytes(b"not a zip file")
    recon = cached_reconstructions(memae, train, cpu, settings, path, write=True)
    torch.testing.assert_close(recon, frozen_reconstructions(memae, train, cpu, settings))
    again = cached_reconstructions(memae, train, cpu, settings, path, write=False)
    torch.testing.assert_close(again, recon)


def test_medfilt_smoothing_is_scipys_zero_padded_filter():
    scores = np.random.default_rng(0).normal(size=60)
    scores[:4] = np.nan
    smoothed = smooth(scores, "medfilt", 17)
    assert np.isnan(smoothed[:4]).all()
    np.testing.assert_array_equal(smoothed[4:], scipy.signal.medfilt(scores[4:], 17))
    edge = smooth(scores, "median", 17)
    assert not np.allclose(edge[4:], smoothed[4:])  # the ends differ: zeros vs repeated edges


def test_boxes_cut_by_the_border_are_found():
    from pre_process.boxes import touches_border

    boxes = np.array(
        [
            [0, 50, 10, 80],  # at the left edge
            [350, 50, 360, 80],  # at the right edge (width 360)
            [100, 239.5, 120, 240],  # at the bottom edge
            [2, 50, 30, 80],  # 2 px inside: interior with margin 1
            [100, 100, 120, 130],
        ]
    )
    np.testing.assert_array_equal(
        touches_border(boxes, (240, 360), 1), [True, True, True, False, False]
    )
    assert touches_border(boxes, (240, 360), 2)[3]
    assert touches_border(np.zeros((0, 4)), (240, 360), 1).shape == (0,)


def test_the_crop_and_the_scores_agree_on_which_objects_the_border_cuts():
    from pre_process.boxes import BORDER_MARGIN, border_edges, touches_border
    from utils.config import load_config

    # the crop's fixed margin is the default of the scoring's: one object, one verdict
    assert load_config().eval.border_margin == BORDER_MARGIN
    boxes = np.array([[0.5, 50, 10, 80], [100, 1, 120, 30], [1.5, 1.5, 30, 238.5]])
    left, top, right, bottom = border_edges(boxes, (240, 360))
    np.testing.assert_array_equal(left, [True, False, False])
    np.testing.assert_array_equal(top, [False, True, False])
    assert not (right | bottom).any()
    np.testing.assert_array_equal(touches_border(boxes, (240, 360)), left | top)


def test_border_objects_are_normalised_with_their_own_statistics():
    from scoring.frame_scores import border_statistics, empty_frame_score, fuse_scores

    rng = np.random.default_rng(0)
    border = np.arange(400) < 100
    s_r = np.where(border, rng.normal(50, 10, 400), rng.normal(10, 2, 400))
    s_p = np.where(border, rng.normal(8, 2, 400), rng.normal(4, 1, 400))
    groups = border_statistics(s_r, s_p, border, 1)
    assert groups["border"]["num_cubes"] == 100 and groups["interior"]["num_cubes"] == 300
    stats = {"groups": groups}
    # a border object with a typical border error scores like an interior one with a typical
    # interior error, although its raw error is 5x larger
    mean_b, mean_i = groups["border"], groups["interior"]
    fused = fuse_scores(
        np.array([mean_b["mean_r"], mean_i["mean_r"]]),
        np.array([mean_b["mean_p"], mean_i["mean_p"]]),
        stats,
        1.0,
        0.1,
        border=np.array([True, False]),
    )
    np.testing.assert_allclose(fused, [0.0, 0.0], atol=1e-9)
    expected = -mean_i["mean_r"] / mean_i["std_r"] - 0.1 * mean_i["mean_p"] / mean_i["std_p"]
    assert empty_frame_score(stats, 1.0, 0.1, grouped=True) == pytest.approx(expected)
    with pytest.raises(ValueError, match="too few"):
        border_statistics(s_r, s_p, np.arange(400) < 1, 1)


@pytest.mark.parametrize("skips", [[True, True], [False, True], [False, False]])
def test_cvae_decoder_skips_can_be_dropped(skips):
    from models.builder import build_cvae

    cfg = load_config("cfgs/ped2.yaml", [f"model.cvae.decoder_skips={skips}"])
    cfg = replaced(cfg, {"model.cvae.nf_start": 8, "model.cvae.nf_max": 16})
    cvae = build_cvae(cfg.model.cvae).eval()
    frames, flows = torch.rand(2, 4, 3, 32, 32), torch.randn(2, 4, 2, 32, 32)
    out = cvae(frames, flows)
    assert out["frame_pred"].shape == (2, 3, 32, 32)
    with_skip = [b.skip_proj is not None for b in cvae.decoder.blocks[1]]  # level 1 blocks
    assert with_skip == [skips[0]] * 2


def test_default_decoder_skips_keep_old_fingerprints():
    from utils.fingerprint import fingerprints

    cfg = copy.deepcopy(load_config("cfgs/ped2_cpu.yaml"))  # writable: an older config
    before = fingerprints(cfg)["model"]
    del cfg.model.cvae["decoder_skips"]  # a config from before the setting existed
    assert fingerprints(cfg)["model"] == before
    cfg.model.cvae["decoder_skips"] = [False, True]
    assert fingerprints(cfg)["model"] != before
