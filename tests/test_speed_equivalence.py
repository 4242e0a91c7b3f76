"""Every speed-up keeps its outputs: the tolerances stated in models/inference.py, models/cvae.py,
pre_process/boxes.py and pre_process/cubes.py are checked here against straightforward reference
implementations."""

import copy
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from engine.trainer import build_optimizer
from models import (
    ScoringModel,
    build_model,
    fuse_for_inference,
    object_scores,
    scoring_model,
)
from models.cvae import WNConv2d, elu
from models.memory import Memory
from pre_process.boxes import ForegroundBoxes
from pre_process.cubes import crop_resize, video_cubes
from scoring.statistics import ScoringSettings, scoring_dtype
from utils.config import load_config

FUSED_TOL = 1e-4  # max abs difference of frame_pred / flow_recon, float32
PAPER = load_config("cfgs/ped2.yaml", ["device=cpu"])


pytestmark = pytest.mark.usefixtures("one_thread")


def random_cubes(batch: int = 4, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    frames = torch.rand(batch, 5, 3, 32, 32, generator=gen)
    flows = 2.0 * torch.randn(batch, 4, 2, 32, 32, generator=gen)
    return frames, flows


def randomise_norms(model: nn.Module, seed: int = 0) -> None:
    """Give every folded quantity a non-trivial value: BatchNorm statistics and affine
    parameters, WNConv2d gain and shift (which start at 1 and 0)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(0.3 * torch.randn(m.running_mean.shape, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=gen))
                m.weight.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=gen))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))
            elif isinstance(m, WNConv2d):
                m.gain.copy_(1 + 0.2 * torch.randn(m.gain.shape, generator=gen))
                m.shift.copy_(0.1 * torch.randn(m.shift.shape, generator=gen))


def paper_model(model_type: str = "hybrid") -> nn.Module:
    cfg = copy.deepcopy(PAPER)
    cfg.model.type = model_type
    torch.manual_seed(0)
    model = build_model(cfg.model)
    randomise_norms(model)
    return model.eval()


def max_diff(a: dict, b: dict) -> float:
    diffs = [
        (a[k].float() - b[k].float()).abs().max().item()
        for k in ("frame_pred", "flow_recon")
        if a[k] is not None
    ]
    return max(diffs)


# ---------------------------------------------------------------------------------------------
# Folding weight norm and batch norm


@pytest.mark.parametrize("channels_last", [False, True])
def test_fused_paper_model_equals_original(channels_last):
    model = paper_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fused = fuse_for_inference(model, channels_last=channels_last)
    frames, flows = random_cubes()
    with torch.inference_mode():
        ref, out = model(frames, flows), fused(frames, flows)
    assert max_diff(ref, out) <= FUSED_TOL
    for a, b in zip(object_scores(ref), object_scores(out)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-4)
    # the original keeps its weight norm, batch norm and weights
    assert any(isinstance(m, WNConv2d) for m in model.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert not any(isinstance(m, (WNConv2d, nn.BatchNorm2d)) for m in fused.modules())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


@pytest.mark.parametrize("model_type", ["memae", "cvae", "vae"])
def test_fused_single_branch_models(model_type):
    model = paper_model(model_type)
    fused = fuse_for_inference(model)
    frames, flows = random_cubes(batch=2, seed=1)
    with torch.inference_mode():
        assert max_diff(model(frames, flows), fused(frames, flows)) <= FUSED_TOL


def test_wnconv_fold_equals_weight_norm_formula():
    torch.manual_seed(0)
    conv = WNConv2d(8, 16, 3, stride=2)
    randomise_norms(conv)
    x = torch.randn(2, 8, 9, 9)
    weight = conv.magnitude[:, None] * F.normalize(conv.direction.flatten(1), dim=1)
    expected = conv.gain * F.conv2d(x, weight.view_as(conv.direction), conv.bias, 2, 1)
    expected = expected + conv.shift
    torch.testing.assert_close(conv(x), expected, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# ELU


def test_cpu_elu_equals_torch_elu():
    x = torch.cat([torch.randn(10_000) * 5, torch.tensor([0.0, -0.0, 1e-8, -1e-8, -100.0, 80.0])])
    torch.testing.assert_close(elu(x), F.elu(x), rtol=0, atol=2e-7)
    xb = x.bfloat16()
    torch.testing.assert_close(elu(xb).float(), F.elu(xb).float(), rtol=1e-2, atol=1e-2)
    assert elu(xb).dtype == torch.bfloat16


def test_cpu_elu_gradient():
    x = torch.randn(64, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(elu, (x,))
    x32 = torch.randn(1000, requires_grad=True)
    (grad,) = torch.autograd.grad(elu(x32).sum(), x32)
    (ref,) = torch.autograd.grad(F.elu(x32).sum(), x32)
    torch.testing.assert_close(grad, ref, rtol=0, atol=2e-7)


# ---------------------------------------------------------------------------------------------
# Memory under autocast, scoring wrapper, precision settings


def test_memory_single_cast_under_autocast_matches_plain_autocast():
    torch.manual_seed(0)
    memory = Memory(50, 64, 0.01)
    query = torch.randn(8, 64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        readout, weights = memory(query)
        logits = F.linear(query, memory.slots)  # autocast's own casts
        expected_w = F.normalize(
            F.relu(torch.softmax(logits.float(), 1) - 0.01)
            * torch.softmax(logits.float(), 1)
            / ((torch.softmax(logits.float(), 1) - 0.01).abs() + 1e-12),
            p=1,
            dim=1,
        )
        expected = F.linear(expected_w, memory.slots.t())
    assert readout.dtype == expected.dtype == torch.bfloat16
    torch.testing.assert_close(weights, expected_w)
    torch.testing.assert_close(readout, expected)


def test_memory_reads_only_used_slots_without_gradients():
    """Inference reads only the slots with a non-zero weight: the same read-out as the dense
    product; with gradients the dense product runs (and is differentiable)."""
    torch.manual_seed(0)
    memory = Memory(200, 64, 0.01)
    memory.slots.data[:3] *= 40  # a few dominant slots: sparse weights, as in a trained model
    query = memory.slots.data[torch.randint(0, 3, (16,))] / 40 + 0.01 * torch.randn(16, 64)
    readout, weights = memory(query)  # grad enabled: dense
    assert 0 < int(weights.any(0).sum()) <= 100
    with torch.no_grad():
        sparse, sparse_w = memory(query)
    torch.testing.assert_close(sparse_w, weights.detach())
    torch.testing.assert_close(sparse, readout.detach(), rtol=1e-6, atol=1e-6)
    readout.sum().backward()
    assert memory.slots.grad is not None


def test_scoring_model_float32_and_bf16():
    model = paper_model()
    frames, flows = random_cubes(batch=4, seed=2)
    with torch.inference_mode():
        ref = model(frames, flows)
    exact = scoring_model(model)
    assert isinstance(exact, ScoringModel)
    assert max_diff(ref, exact(frames, flows)) <= FUSED_TOL
    exact.train()
    assert not exact.training and not exact.model.training  # scoring stays in test mode
    low = scoring_model(model, autocast_dtype=torch.bfloat16)
    out = low(frames, flows)
    assert out["frame_pred"].dtype == out["flow_recon"].dtype == torch.float32
    assert all(q.dtype == torch.float32 for q in out["q_means"])
    assert max_diff(ref, out) <= 0.05  # bf16 has 8 significant bits
    for a, b in zip(object_scores(ref), object_scores(out)):
        torch.testing.assert_close(b, a, rtol=0.02, atol=1e-3)


def test_micro_batches_equal_whole_batch():
    model = paper_model()
    frames, flows = random_cubes(batch=7, seed=3)
    whole = scoring_model(model)(frames, flows)
    chunked = scoring_model(model, micro_batch=3)(frames, flows)  # chunks of 3, 3, 1
    assert whole.keys() == chunked.keys()
    assert max_diff(whole, chunked) <= FUSED_TOL
    for key in ("att_weights", "q_means", "p_means"):
        assert len(whole[key]) == len(chunked[key]) > 0
        for a, b in zip(whole[key], chunked[key]):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(whole["frame_target"], chunked["frame_target"], rtol=0, atol=0)
    memae_only = paper_model("memae")
    out = scoring_model(memae_only, micro_batch=3)(frames, flows)
    assert out["frame_pred"] is None and out["q_means"] == []


def test_scoring_precision_settings(fast_bf16):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    cfg = load_config("cfgs/ped2.yaml", [])
    assert (
        scoring_dtype(cfg.eval.bf16_cpu, cfg.eval.amp, cpu) is None
        and scoring_dtype(cfg.eval.bf16_cpu, cfg.eval.amp, cuda) is None
    )
    low = load_config("cfgs/ped2.yaml", ["eval.bf16_cpu=true", "eval.amp=true"])
    assert scoring_dtype(low.eval.bf16_cpu, low.eval.amp, cpu) == torch.bfloat16
    assert scoring_dtype(low.eval.bf16_cpu, low.eval.amp, cuda) == torch.float16
    ckpt = {"module": "hf2vad", "epoch": 1, "step": 2, "saved_at": "t", "fingerprints": {}}
    plain = ScoringSettings.from_config(cfg, cpu).identity(ckpt)
    assert "precision" not in plain  # float32 statistics keep their identity
    assert ScoringSettings.from_config(low, cpu).identity(ckpt) == {
        **plain,
        "precision": "bfloat16",
    }


def test_bf16_falls_back_to_float32_without_fast_bf16_kernels(monkeypatch):
    from engine.trainer import autocast

    monkeypatch.setattr("utils.misc.cpu_has_fast_bf16", lambda: False)
    cpu = torch.device("cpu")
    low = load_config("cfgs/ped2.yaml", ["eval.bf16_cpu=true", "train.bf16_cpu=true"])
    assert scoring_dtype(low.eval.bf16_cpu, low.eval.amp, cpu) is None
    assert ScoringSettings.from_config(low, cpu).precision is None  # float32 statistics too
    with autocast(cpu, low.train):
        assert not torch.is_autocast_enabled("cpu")
    assert scoring_dtype(low.eval.bf16_cpu, low.eval.amp, torch.device("cuda")) is None


# ---------------------------------------------------------------------------------------------
# Fused Adam


def test_fused_adam_matches_reference_adam():
    torch.manual_seed(0)
    params = [nn.Parameter(torch.randn(300, 40)), nn.Parameter(torch.randn(7))]
    twins = [nn.Parameter(p.detach().clone()) for p in params]
    stage_cfg = SimpleNamespace(lr=1e-3, eps=1e-7)
    fused = build_optimizer(params, stage_cfg)
    reference = torch.optim.Adam(twins, lr=1e-3, eps=1e-7, foreach=False)
    for _ in range(5):
        grads = [torch.randn_like(p) for p in params]
        for p, t, g in zip(params, twins, grads):
            p.grad, t.grad = g.clone(), g.clone()
        fused.step()
        reference.step()
    for p, t in zip(params, twins):
        torch.testing.assert_close(p, t, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Pre-processing: identical results


def reference_moving_mask(fg: ForegroundBoxes, frames) -> np.ndarray:
    """The former numpy recipe: int16 blur, summed absolute differences, channel maximum."""
    size = (fg.gauss_mask_size, fg.gauss_mask_size)
    prev, cur, nxt = (cv2_blur(f, size).astype(np.int16) for f in frames)
    grad = (np.abs(cur - prev) + np.abs(nxt - cur)).max(axis=2)
    return np.where(grad > fg.binary_thr, 255, 0).astype(np.uint8)


def cv2_blur(frame, size):
    import cv2

    return cv2.GaussianBlur(frame, size, 0)


@pytest.mark.parametrize("thr", [0, 18, 17.5, 300])
def test_moving_mask_equals_numpy_recipe(thr):
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (40, 50, 3), dtype=np.uint8) for _ in range(3)]
    frames[1][10:20, 10:30] = 255  # a bright moving patch
    fg = ForegroundBoxes(binary_thr=thr, merge="none")
    mask = fg.moving_mask(tuple(fg.blur(f) for f in frames))
    np.testing.assert_array_equal(mask, reference_moving_mask(fg, frames))


def reference_video_cubes(frames, flows, boxes, size=32, num_frames=5):
    """The former stacking recipe: every window's frames and flows stacked, then cropped."""
    tensors = [torch.from_numpy(f.transpose(2, 0, 1).astype(np.float32)) for f in frames]
    for i in range(len(frames)):
        if len(boxes[i]) == 0:
            continue
        box = torch.from_numpy(np.asarray(boxes[i], np.float32))
        window = torch.stack([tensors[max(j, 0)] for j in range(i - num_frames + 1, i + 1)])
        ids = [max(j, 0) for j in range(i - num_frames + 2, i + 1)]
        flow_stack = torch.from_numpy(flows[ids].astype(np.float32)).permute(0, 3, 1, 2)
        crops = crop_resize(window, box, size).round_().clamp_(0, 255).to(torch.uint8)
        flow_crops = crop_resize(flow_stack, box, size)
        yield i, crops.permute(0, 1, 3, 4, 2).numpy(), flow_crops.permute(0, 1, 3, 4, 2).numpy()


def test_ring_buffer_cubes_equal_stacked_cubes():
    rng = np.random.default_rng(1)
    num, height, width = 9, 30, 40
    frames = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(num)]
    flows = rng.normal(0, 3, (num, height, width, 2)).astype(np.float16)
    flows.setflags(write=False)  # like a memory-mapped cache file
    boxes = [
        np.array([[1.0, 2.0, 20.0, 25.0], [10.5, 3.25, 39.0, 29.0]], np.float32)
        if i % 3
        else np.zeros((0, 4), np.float32)
        for i in range(num)
    ]
    got = list(video_cubes(iter(frames), flows, boxes))
    expected = list(reference_video_cubes(frames, flows, boxes))
    assert [g[0] for g in got] == [e[0] for e in expected] == [1, 2, 4, 5, 7, 8]
    for (_, frame_cubes, flow_cubes, _), (_, ref_frames, ref_flows) in zip(got, expected):
        np.testing.assert_array_equal(frame_cubes, ref_frames)
        np.testing.assert_array_equal(flow_cubes, ref_flows)
