"""Models: shapes of every variant, memory addressing, gradients, test modes, robustness, devices,
losses, and the exact parameter counts of the paper configuration."""

import math

import pytest
import torch

from models import (
    CVAE,
    HF2VAD,
    MODEL_TYPES,
    VARIANTS,
    FrameVAE,
    HF2VADLoss,
    Memory,
    MLMemAESC,
    build_loss,
    build_memae,
    build_model,
    memae_loss,
    object_scores,
)
from models.cvae import (
    Dropout,
    PriorGenerator,
    WNConv2d,
    depth_to_space,
    keep_mask,
    space_to_depth,
)
from models.losses import entropy_loss, gradient_loss, kl_loss
from utils.config import load_config

SMALL = [
    "model.memae.feature_root=8",
    "model.memae.num_slots=50",
    "model.cvae.nf_start=8",
    "model.cvae.nf_max=16",
]
DEVICES = [
    "cpu",
    pytest.param(
        "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
    ),
]


def small_model(model_type: str = "hybrid", *overrides: str) -> HF2VAD:
    cfg = load_config(None, [*SMALL, f"model.type={model_type}", *overrides])
    return build_model(cfg.model)


def make_inputs(batch: int = 2, device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    frames = torch.rand(batch, 5, 3, 32, 32, generator=gen)
    flows = 3 * torch.randn(batch, 4, 2, 32, 32, generator=gen)
    return frames.to(device), flows.to(device)


def num_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def all_tensors(out: dict) -> list[torch.Tensor]:
    tensors = []
    for value in out.values():
        if isinstance(value, torch.Tensor):
            tensors.append(value)
        elif isinstance(value, list):
            tensors.extend(value)
    return tensors


# ----------------------------------------------------------------------------- parameter counts


def test_paper_configuration_parameter_counts():
    model = build_model(load_config().model)
    assert num_params(model.memae) == 60_252_578
    cvae = model.cvae
    assert num_params(cvae) == 8_990_668
    assert num_params(cvae.posterior_encoder) == 1_333_760
    assert num_params(cvae.prior_encoder) == 1_332_992
    assert num_params(cvae.posterior_head) == 1_579_008
    assert num_params(cvae.prior_generator) == 3_075_584
    assert num_params(cvae.decoder) == 1_669_324
    assert num_params(model) == 60_252_578 + 8_990_668

    model.eval()
    frames, flows = make_inputs(batch=1)
    with torch.no_grad():
        out = model(frames, flows)
    assert out["flow_recon"].shape == (1, 4, 2, 32, 32)
    assert out["frame_pred"].shape == (1, 3, 32, 32)
    assert [w.shape for w in out["att_weights"]] == [(4, 2000)] * 3


# ----------------------------------------------------------------------------- ML-MemAE-SC


@pytest.mark.parametrize("in_channels", [2, 1])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_memae_variant_shapes(variant, in_channels):
    mem_usage, skip_ops = VARIANTS[variant]
    model = MLMemAESC(
        in_channels, feature_root=4, num_slots=20, mem_usage=mem_usage, skip_ops=skip_ops
    )
    out = model(torch.randn(3, in_channels, 32, 32))
    assert out["recon"].shape == (3, in_channels, 32, 32)
    assert len(out["att_weights"]) == sum(mem_usage)
    assert all(w.shape == (3, 20) for w in out["att_weights"])


def test_two_memory_model_has_bottleneck_and_level2_memories():
    model = MLMemAESC(feature_root=8, num_slots=50, mem_usage=(False, True, True))
    assert sorted(model.memories) == ["level2", "level3"]
    assert model.memories["level3"].slot_dim == 8 * 8 * 4 * 4
    assert model.memories["level2"].slot_dim == 4 * 8 * 8 * 8
    out = model(torch.randn(2, 2, 32, 32))
    assert out["recon"].shape == (2, 2, 32, 32) and len(out["att_weights"]) == 2


def test_memae_rejects_bad_settings_and_inputs():
    with pytest.raises(ValueError, match="skip_ops"):
        MLMemAESC(feature_root=4, num_slots=10, skip_ops=("none", "add", "concat"))
    with pytest.raises(ValueError, match="mem_usage"):
        MLMemAESC(feature_root=4, num_slots=10, mem_usage=(True, True))
    with pytest.raises(ValueError, match=r"\[B, 2, 32, 32\]"):
        MLMemAESC(feature_root=4, num_slots=10)(torch.zeros(1, 2, 28, 28))


def test_build_memae_from_mnist_style_config():
    cfg = load_config(None, [*SMALL, "model.memae.in_channels=1"])
    model = build_memae(cfg.model.memae)
    assert model(torch.rand(2, 1, 32, 32))["recon"].shape == (2, 1, 32, 32)


# ----------------------------------------------------------------------------- memory


def test_memory_addressing_weights():
    torch.manual_seed(0)
    threshold = 0.03
    memory = Memory(num_slots=50, slot_dim=16, shrink_thres=threshold)
    query = 4 * torch.randn(8, 16)
    readout, weights = memory(query)
    softmax = torch.softmax(query @ memory.slots.t(), dim=1)
    below = softmax < threshold
    assert below.any() and (~below).any()
    assert torch.all(weights >= 0)
    assert torch.all(weights[below] == 0)
    assert torch.all(weights[~below] > 0)
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(8))
    torch.testing.assert_close(readout, weights @ memory.slots)


def test_memory_without_shrinkage_is_plain_softmax():
    memory = Memory(num_slots=10, slot_dim=6, shrink_thres=0.0)
    query = torch.randn(3, 6)
    _, weights = memory(query)
    torch.testing.assert_close(weights, torch.softmax(query @ memory.slots.t(), dim=1))


def test_memory_init_range():
    memory = Memory(num_slots=100, slot_dim=400)
    assert memory.slots.abs().max() <= 1 / math.sqrt(400)


# ----------------------------------------------------------------------------- CVAE parts


def test_space_to_depth_groups_are_positions():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    packed = space_to_depth(x)
    assert packed.shape == (2, 12, 2, 2)
    groups = packed.chunk(4, dim=1)
    for g, (i, j) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        assert torch.equal(groups[g], x[:, :, i::2, j::2])
    assert torch.equal(depth_to_space(packed), x)


def test_autoregressive_prior_is_causal_over_groups():
    torch.manual_seed(0)
    prior = PriorGenerator(channels=8, dropout=0.1).eval()
    h, z = torch.randn(1, 8, 4, 4), torch.randn(1, 8, 4, 4)
    base = prior.prior_mean(h, z)
    z_last = z.clone()
    z_last[:, :, 1::2, 1::2] += 1.0  # the last group conditions nothing
    assert torch.equal(prior.prior_mean(h, z_last), base)
    z_first = z.clone()
    z_first[:, :, 0::2, 0::2] += 1.0  # the first group conditions the others only
    changed = prior.prior_mean(h, z_first)
    assert torch.equal(changed[:, :, 0::2, 0::2], base[:, :, 0::2, 0::2])
    assert not torch.allclose(changed[:, :, 0::2, 1::2], base[:, :, 0::2, 1::2])


def test_weight_norm_conv_starts_kaiming_uniform_and_ignores_direction_scale():
    conv = WNConv2d(16, 8, 3)
    torch.testing.assert_close(conv.magnitude, conv.direction.flatten(1).norm(dim=1))
    fan_in = 16 * 9
    assert conv.direction.abs().max() <= 1 / math.sqrt(fan_in)
    expected_std = 1 / math.sqrt(3 * fan_in)  # Kaiming uniform with a = sqrt(5)
    assert 0.8 * expected_std < conv.direction.std().item() < 1.2 * expected_std
    x = torch.randn(2, 16, 8, 8)
    before = conv(x)
    with torch.no_grad():
        conv.direction.mul_(3.0)
    torch.testing.assert_close(conv(x), before)


def test_cvae_rejects_unequal_latent_widths():
    with pytest.raises(ValueError, match="nf_max"):
        CVAE(nf_start=8, nf_max=64)


# ----------------------------------------------------------------------------- the wrapper


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_output_shapes_per_type(model_type):
    model = small_model(model_type)
    frames, flows = make_inputs()
    out = model(frames, flows)
    assert out["flow_target"] is flows
    assert torch.equal(out["frame_target"], frames[:, 4])
    if model_type in ("hybrid", "memae"):
        assert out["flow_recon"].shape == (2, 4, 2, 32, 32)
        assert [w.shape for w in out["att_weights"]] == [(8, 50)] * 3
        assert model.memae is not None
    else:
        assert out["flow_recon"] is None and out["att_weights"] == [] and model.memae is None
    if model_type == "memae":
        assert out["frame_pred"] is None and out["q_means"] == [] and out["p_means"] == []
        assert model.cvae is None
    else:
        assert out["frame_pred"].shape == (2, 3, 32, 32)
        assert [q.shape for q in out["q_means"]] == [(2, 16, 4, 4), (2, 16, 8, 8)]
        assert [p.shape for p in out["p_means"]] == [(2, 16, 4, 4), (2, 16, 8, 8)]
        assert 0 <= out["frame_pred"].min() and out["frame_pred"].max() <= 1
    assert isinstance(model.cvae, FrameVAE) == (model_type == "vae")


@pytest.mark.parametrize("k", [0, 1, 2, 3, 4])
def test_num_recon_flows_feeds_last_k_reconstructions(k):
    model = small_model("hybrid", f"model.num_recon_flows={k}").eval()
    seen = {}
    original_forward = model.cvae.forward

    def spy(frames, flows, sample_latent=None):
        seen["motion"] = flows
        return original_forward(frames, flows, sample_latent)

    model.cvae.forward = spy
    frames, flows = make_inputs()
    out = model(frames, flows)
    motion = seen["motion"]
    assert motion.shape == flows.shape
    assert torch.equal(motion[:, : 4 - k], flows[:, : 4 - k])
    assert torch.equal(motion[:, 4 - k :], out["flow_recon"][:, 4 - k :])
    assert out["flow_recon"].shape == (2, 4, 2, 32, 32)  # S_r stays defined


def test_builder_errors_name_the_key():
    with pytest.raises(ValueError, match="model.type"):
        small_model("gan")
    with pytest.raises(ValueError, match="model.num_recon_flows"):
        small_model("hybrid", "model.num_recon_flows=5")
    with pytest.raises(ValueError, match="needs 5"):
        small_model("cvae")(torch.rand(1, 4, 3, 32, 32), torch.rand(1, 4, 2, 32, 32))


# ----------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_gradients_reach_every_parameter(model_type):
    torch.manual_seed(0)
    model = small_model(model_type).train()
    loss = build_loss(load_config().loss)
    loss(model(*make_inputs()))["total"].backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        if param.dim() > 1:  # biases right before BatchNorm get (numerically) zero gradients
            assert param.grad.abs().sum() > 0, name


def test_frozen_memae_gets_no_gradients_and_stays_in_eval():
    torch.manual_seed(0)
    model = small_model("hybrid")
    model.set_memae_frozen(True)
    model.train()
    assert model.memae_frozen and not model.memae.training and model.cvae.training
    running_mean = model.memae.in_conv[0][1].running_mean.clone()
    out = model(*make_inputs())
    assert not out["flow_recon"].requires_grad
    HF2VADLoss()(out)["total"].backward()
    assert all(p.grad is None for p in model.memae.parameters())
    assert all(p.grad is not None for p in model.cvae.parameters())
    assert torch.equal(model.memae.in_conv[0][1].running_mean, running_mean)

    model.set_memae_frozen(False)
    assert model.memae.training
    assert all(p.requires_grad for p in model.memae.parameters())


# ----------------------------------------------------------------------------- test modes


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_deterministic_test_mode_is_repeatable(model_type):
    model = small_model(model_type).eval()
    frames, flows = make_inputs()
    with torch.no_grad():
        first, second = model(frames, flows), model(frames, flows)
    for a, b in zip(all_tensors(first), all_tensors(second)):
        assert torch.equal(a, b)


@pytest.mark.parametrize("model_type", ["hybrid", "vae"])
def test_stochastic_test_mode_samples(model_type):
    model = small_model(model_type, "model.deterministic=false").eval()
    frames, flows = make_inputs()
    with torch.no_grad():
        first, second = model(frames, flows), model(frames, flows)
    assert torch.equal(first["q_means"][0], second["q_means"][0])
    assert not torch.equal(first["frame_pred"], second["frame_pred"])
    if model_type == "hybrid":
        assert torch.equal(first["flow_recon"], second["flow_recon"])


# ----------------------------------------------------------------------------- robustness


@pytest.mark.parametrize("scale", [0.0, 1e4])
@pytest.mark.parametrize("model_type", ["hybrid", "vae"])
@pytest.mark.parametrize("train", [True, False])
def test_no_nan_or_inf_on_extreme_inputs(scale, model_type, train):
    torch.manual_seed(0)
    model = small_model(model_type).train(train)
    frames, flows = make_inputs()
    frames, flows = frames * scale, flows * scale
    out = model(frames, flows)
    for tensor in all_tensors(out):
        assert torch.isfinite(tensor).all()
    losses = build_loss(load_config().loss)(out)
    assert all(torch.isfinite(v) for v in losses.values())
    if train:
        losses["total"].backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


# ----------------------------------------------------------------------------- devices


@pytest.mark.parametrize("device", DEVICES)
def test_device_comes_from_the_caller(device):
    model = small_model("hybrid").to(device).train()
    frames, flows = make_inputs(device=device)
    out = model(frames, flows)
    assert all(t.device.type == device for t in all_tensors(out))
    assert build_loss(load_config().loss)(out)["total"].device.type == device
    s_r, s_p, _ = object_scores(out)
    assert s_r.device.type == device and s_p.device.type == device


# ----------------------------------------------------------------------------- losses and scores


def test_loss_terms_follow_the_spec():
    uniform = torch.full((3, 50), 1 / 50)
    torch.testing.assert_close(entropy_loss([uniform, uniform]), torch.tensor(2 * math.log(50)))
    q = [torch.zeros(2, 4, 2, 2), torch.zeros(2, 4, 4, 4)]
    p = [torch.ones(2, 4, 2, 2), 2 * torch.ones(2, 4, 4, 4)]
    torch.testing.assert_close(kl_loss(q, p), torch.tensor(0.5 * 16 + 0.5 * 4 * 64))
    image = torch.rand(2, 3, 8, 8)
    zero = torch.tensor(0.0)
    torch.testing.assert_close(gradient_loss(image, image + 0.3), zero)
    torch.testing.assert_close(gradient_loss(image, -image), zero)  # |gradients| compared, Eq. 7
    ramp = torch.arange(8.0).view(1, 1, 1, 8) + torch.arange(8.0).view(1, 1, 8, 1)  # slope 1, 1
    torch.testing.assert_close(gradient_loss(torch.zeros_like(ramp), ramp), torch.tensor(2.0))


def test_memae_loss_weights_terms():
    recon, target = torch.zeros(2, 2, 4, 4), torch.ones(2, 2, 4, 4)
    weights = [torch.full((2, 10), 0.1)]
    out = memae_loss(recon, target, weights, lambda_recon=2.0, lambda_ent=0.5)
    assert set(out) == {"flow_recon", "entropy", "total"}
    torch.testing.assert_close(out["total"].item(), 2.0 * 1.0 + 0.5 * math.log(10))
    assert set(memae_loss(recon, target, [])) == {"flow_recon", "total"}


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_hf2vad_loss_keys_and_scores(model_type):
    out = small_model(model_type).eval()(*make_inputs())
    terms = HF2VADLoss()(out)
    expected = {"total"}
    if model_type in ("hybrid", "memae"):
        expected |= {"flow_recon", "entropy"}
    if model_type != "memae":
        expected |= {"kl", "frame", "gradient"}
    assert set(terms) == expected
    s_r, s_p, s_kl = object_scores(out)
    assert s_r.shape == s_p.shape == s_kl.shape == (2,)
    if out["flow_recon"] is None:
        assert torch.all(s_r == 0)
    else:
        torch.testing.assert_close(
            s_r, ((out["flow_recon"] - out["flow_target"]) ** 2).sum((1, 2, 3, 4))
        )
    if out["frame_pred"] is None:
        assert torch.all(s_p == 0)
    else:
        torch.testing.assert_close(
            s_p, ((out["frame_pred"] - out["frame_target"]) ** 2).sum((1, 2, 3))
        )
    if not out["q_means"]:
        assert torch.all(s_kl == 0)
    else:  # per object, the batch mean of which is the KL term of the loss
        assert torch.all(s_kl > 0)
        torch.testing.assert_close(s_kl.mean(), terms["kl"])


def test_cpu_dropout_keeps_each_element_with_probability_one_minus_p():
    torch.manual_seed(0)
    keep = keep_mask(torch.Size([64, 257, 31]), 0.1)  # an odd count: the last draw is half used
    assert keep.dtype == torch.bool and keep.shape == (64, 257, 31)
    assert abs(keep.float().mean().item() - 0.9) < 0.002
    pairs = keep.view(-1)[: keep.numel() // 2 * 2].view(-1, 2).float().mean(0)
    torch.testing.assert_close(pairs, torch.full((2,), 0.9), atol=0.003, rtol=0)  # both halves
    assert abs(keep_mask(torch.Size([100_000]), 0.5).float().mean().item() - 0.5) < 0.01


def test_cpu_dropout_scales_kept_elements_and_passes_gradients_through_them():
    drop = Dropout(0.25).train()
    x = torch.randn(8, 16, 12, 12, requires_grad=True)
    y = drop(x)
    kept = y != 0
    torch.testing.assert_close(y[kept], x[kept] / 0.75)
    y.sum().backward()
    torch.testing.assert_close(x.grad, kept.float() / 0.75)
    assert torch.equal(drop.eval()(x), x)
    assert torch.equal(Dropout(1.0).train()(x), torch.zeros_like(x))
    with pytest.raises(ValueError, match="dropout probability"):
        Dropout(1.5)
