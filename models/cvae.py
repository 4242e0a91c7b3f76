"""Flow-guided frame prediction: the Variational U-Net style CVAE of HF2-VAD (docs/method.md §4).

Four levels (32, 16, 8, 4 pixels); level k of an encoder keeps two residual-block outputs
(s_k_1, s_k_2). Latents live at level 4 (4x4) and level 3 (8x8), with the channels of those levels.
The posterior (frames + flows) gives the means q_k; the prior (flows only) gives the means p_k
autoregressively over the 4 positions of every 2x2 block. Both Gaussians have unit variance.

Latent used by the generator: the posterior sample q + N(0, 1) when `sample_latent` is true
(training, and the stochastic test of Appendix B), else the posterior mean q (test mode).
The same latent feeds the posterior's own level-3 branch, so test mode is fully deterministic.
(The authors' code always sampled z_4 inside the posterior, so its q_3 was noisy at test time.)

Initialisation (docs/method.md §5 says Kaiming): every weight-normalised conv starts from a
Kaiming-uniform direction (fan-in, a = sqrt(5), PyTorch's conv default), a magnitude equal to its
norm, and PyTorch's default bias. That is what the authors' run effectively used: their explicit
kaiming_normal_(a=0.1) wrote to a weight that weight norm recomputes from its untouched parameters
before every forward pass. Applying that Kaiming-normal init for real makes the un-normalised
residual stacks blow up (KL ~1e9 and saturated outputs at step 0, against ~3e2).
"""

from __future__ import annotations

import math
import sys

import torch
import torch.nn.functional as F
from torch import nn

NUM_LEVELS = 4
LATENT_LEVELS = (4, 3)  # coarse to fine
NUM_GROUPS = 4  # autoregressive groups = positions of a 2x2 block


def space_to_depth(x: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] -> [B, 4C, H/2, W/2]; channel group g = i*2 + j holds position (i, j)."""
    b, c, h, w = x.shape
    x = x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 3, 5, 1, 2, 4)
    return x.reshape(b, 4 * c, h // 2, w // 2)


def depth_to_space(x: torch.Tensor) -> torch.Tensor:
    """Inverse of space_to_depth: [B, 4C, H, W] -> [B, C, 2H, 2W]."""
    b, c4, h, w = x.shape
    x = x.view(b, 2, 2, c4 // 4, h, w).permute(0, 3, 4, 1, 5, 2)
    return x.reshape(b, c4 // 4, 2 * h, 2 * w)


def _elu_by_exp(x: torch.Tensor) -> torch.Tensor:
    """ELU(x) = max(x, exp(min(x, 0)) - 1) (exp(x) - 1 >= x, with equality at 0 only), the
    exponential of half types in float32."""
    negative = x.clamp(max=0)
    if x.dtype in (torch.float16, torch.bfloat16):
        negative = negative.float().exp_().sub_(1).to(x.dtype)
    else:
        negative = negative.exp_().sub_(1)
    if torch.onnx.is_in_onnx_export():  # the exporter has no out= form
        return torch.maximum(x, negative)
    return torch.maximum(x, negative, out=negative)


class _CPUELU(torch.autograd.Function):
    """_elu_by_exp with a backward pass from the output: d ELU / dx = min(y, 0) + 1."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        y = _elu_by_exp(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (y,) = ctx.saved_tensors
        return grad * (y.clamp(max=0) + 1)


def elu(x: torch.Tensor) -> torch.Tensor:
    """ELU (alpha = 1). On CPU torch's kernel evaluates expm1 one element at a time, which made
    ELU about a fifth of the CVAE's time; exp(x) - 1 is vectorised (2-7x faster) and differs from
    expm1 by at most ~1.2e-7 (one float32 step at 1). Other devices use F.elu. Without gradients
    (scoring, export to ONNX) the same formula runs as plain tensor operations."""
    if x.device.type != "cpu":
        return F.elu(x)
    if not torch.is_grad_enabled():
        return _elu_by_exp(x)
    return _CPUELU.apply(x)


def keep_mask(shape: torch.Size, p: float) -> torch.Tensor:
    """A bool tensor of `shape`, each element True with probability 1 - p (p in steps of 2^-16,
    or 2^-15 for every second element). torch's CPU generator draws 31 uniform bits per int32,
    so one draw serves two elements: 16 bits in its low half, 15 in its high half; that is about
    4x faster than bernoulli_, which draws for every element."""
    n = math.prod(shape)
    bits = torch.empty((n + 1) // 2, dtype=torch.int32).random_().view(torch.int16).view(-1, 2)
    low, high = (0, 1) if sys.byteorder == "little" else (1, 0)
    thresholds = torch.empty(2, dtype=torch.int16)
    thresholds[low] = round(p * 65536) - 32768  # low half: uniform over all int16 values
    thresholds[high] = round(p * 32768)  # high half: uniform over 0 ... 32767
    return (bits >= thresholds).view(-1)[:n].view(shape)


class Dropout(nn.Module):
    """nn.Dropout(p) whose CPU training mask comes from keep_mask: the mask was a quarter of a
    CVAE training step on CPU with bernoulli_. Other devices use F.dropout."""

    def __init__(self, p: float = 0.1) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability must be in [0, 1], got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if x.device.type != "cpu" or self.p == 1.0:
            return F.dropout(x, self.p, training=True)
        return torch.where(keep_mask(x.shape, self.p), x * (1.0 / (1.0 - self.p)), 0.0)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def latent_from(mean: torch.Tensor, sample: bool) -> torch.Tensor:
    """Unit-variance Gaussian latent: a sample q + N(0, 1), or the mean itself."""
    return mean + torch.randn_like(mean) if sample else mean


class WNConv2d(nn.Module):
    """Weight-normalised conv (own bias) with a per-channel gain and shift: out = g * conv(x) + b.

    The conv weight is magnitude[o] * direction[o] / ||direction[o]||. Padding keeps the size.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1
    ) -> None:
        super().__init__()
        self.stride = stride
        self.padding = kernel_size // 2
        self.direction = nn.Parameter(
            torch.empty(out_channels, in_channels, kernel_size, kernel_size)
        )
        self.magnitude = nn.Parameter(torch.empty(out_channels))
        self.bias = nn.Parameter(torch.empty(out_channels))
        self.gain = nn.Parameter(torch.ones(1, out_channels, 1, 1))
        self.shift = nn.Parameter(torch.zeros(1, out_channels, 1, 1))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.direction, a=math.sqrt(5), mode="fan_in")
        with torch.no_grad():
            self.magnitude.copy_(self.direction.flatten(1).norm(dim=1))
        bound = 1 / math.sqrt(self.direction[0].numel())
        nn.init.uniform_(self.bias, -bound, bound)
        nn.init.ones_(self.gain)
        nn.init.zeros_(self.shift)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # g * conv(x, w) + b' = conv(x, g * w) + g * b + b': the gain and shift are folded into
        # the (small) weight and bias instead of two passes over the (large) output
        gain = self.gain.view(-1)
        scale = gain * self.magnitude / self.direction.flatten(1).norm(dim=1)
        weight = self.direction * scale.view(-1, 1, 1, 1)
        bias = gain * self.bias + self.shift.view(-1)
        return F.conv2d(x, weight, bias, self.stride, self.padding)


class ResBlock(nn.Module):
    """out = x + conv3x3(dropout(ELU(h))), h = x or concat(x, conv1x1(ELU(skip)))."""

    def __init__(self, channels: int, dropout: float = 0.1, with_skip: bool = False) -> None:
        super().__init__()
        self.skip_proj = WNConv2d(channels, channels, 1) if with_skip else None
        self.conv = WNConv2d(2 * channels if with_skip else channels, channels, 3)
        self.dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        h = x
        if self.skip_proj is not None:
            h = torch.cat([h, self.skip_proj(elu(skip))], dim=1)
        return x + self.conv(self.dropout(elu(h)))


class Upsample(nn.Module):
    """Sub-pixel up-sampling: 3x3 conv to 4x out_channels, then depth-to-space (x2)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = WNConv2d(in_channels, 4 * out_channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return depth_to_space(self.conv(x))


def level_channels(nf_start: int, nf_max: int) -> list[int]:
    """Channels of levels 1..4: nf_start, then doubled per level up to nf_max."""
    channels = [nf_start]
    for _ in range(NUM_LEVELS - 1):
        channels.append(min(2 * channels[-1], nf_max))
    return channels


class Encoder(nn.Module):
    """1x1 conv to nf_start, two residual blocks per level, a stride-2 3x3 conv between levels.

    forward(x [B, C, H, W]) -> list over levels 1..4 of (s_k_1, s_k_2).
    """

    def __init__(self, in_channels: int, nf_start: int, nf_max: int, dropout: float) -> None:
        super().__init__()
        channels = level_channels(nf_start, nf_max)
        self.in_proj = WNConv2d(in_channels, nf_start, 1)
        self.downs = nn.ModuleList(
            WNConv2d(c_in, c_out, 3, stride=2) for c_in, c_out in zip(channels, channels[1:])
        )
        self.blocks = nn.ModuleList(
            nn.ModuleList(ResBlock(c, dropout) for _ in range(2)) for c in channels
        )

    def forward(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        h = self.in_proj(x)
        features = []
        for level, (block1, block2) in enumerate(self.blocks):
            if level > 0:
                h = self.downs[level - 1](h)
            s1 = block1(h)
            h = block2(s1)
            features.append((s1, h))
        return features


class PosteriorHead(nn.Module):
    """Posterior means q_4 (4x4) and q_3 (8x8) from the posterior encoder's features.

    forward(features, sample_latent) -> (q_means [q_4, q_3], latents [z_4, z_3]).
    """

    def __init__(self, channels: int, dropout: float) -> None:
        super().__init__()
        self.in_proj = WNConv2d(channels, channels, 1)
        self.mean4 = ResBlock(channels, dropout, with_skip=True)
        self.merge_proj = WNConv2d(2 * channels, channels, 1)
        self.merge4 = ResBlock(channels, dropout, with_skip=True)
        self.up = Upsample(channels, channels)
        self.mean3 = ResBlock(channels, dropout, with_skip=True)

    def forward(
        self, features: list[tuple[torch.Tensor, torch.Tensor]], sample_latent: bool
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        (_, s3_2), (s4_1, s4_2) = features[2], features[3]
        q4 = self.mean4(self.in_proj(s4_2), s4_2)
        z4 = latent_from(q4, sample_latent)
        h = self.merge4(q4, self.merge_proj(torch.cat([s4_1, z4], dim=1)))
        q3 = self.mean3(self.up(h), s3_2)
        return [q4, q3], [z4, latent_from(q3, sample_latent)]


class PriorGenerator(nn.Module):
    """Prior means p_4, p_3 from the prior encoder's features, and the generator path.

    At each latent level: h = res(h, s_k_2); p_k is predicted over the 4 space-to-depth groups,
    group g+1 conditioned on group g of the latent used (teacher forcing); the latent is merged
    with h = res(h, conv1x1(s_k_1 + z_k)). The autoregressive blocks are shared by both levels.

    forward(features, latents [z_4, z_3]) -> (h [B, C, H/4, W/4], p_means [p_4, p_3]).
    """

    def __init__(self, channels: int, dropout: float) -> None:
        super().__init__()
        self.in_proj = WNConv2d(channels, channels, 1)
        self.up = Upsample(channels, channels)
        self.merge_projs = nn.ModuleList(WNConv2d(2 * channels, channels, 1) for _ in LATENT_LEVELS)
        self.pre_blocks = nn.ModuleList(
            ResBlock(channels, dropout, with_skip=True) for _ in LATENT_LEVELS
        )
        self.merge_blocks = nn.ModuleList(
            ResBlock(channels, dropout, with_skip=True) for _ in LATENT_LEVELS
        )
        self.ar_features = ResBlock(channels, dropout)
        self.ar_to_params = WNConv2d(NUM_GROUPS * channels, channels, 1)
        self.ar_steps = nn.ModuleList(
            ResBlock(channels, dropout, with_skip=True) for _ in range(NUM_GROUPS - 1)
        )

    def prior_mean(self, h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Autoregressive prior mean [B, C, H, W] from h, teacher-forced with latent z."""
        z_groups = space_to_depth(z).chunk(NUM_GROUPS, dim=1)
        params = self.ar_to_params(space_to_depth(self.ar_features(h)))
        groups = [params]
        for step, z_group in zip(self.ar_steps, z_groups):
            params = step(params, z_group)
            groups.append(params)
        return depth_to_space(torch.cat(groups, dim=1))

    def forward(
        self, features: list[tuple[torch.Tensor, torch.Tensor]], latents: list[torch.Tensor]
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        h = self.in_proj(features[-1][1])
        p_means = []
        for i, level in enumerate(LATENT_LEVELS):
            s1, s2 = features[level - 1]
            h = self.pre_blocks[i](h, s2)
            p_means.append(self.prior_mean(h, latents[i]))
            h = self.merge_blocks[i](h, self.merge_projs[i](torch.cat([s1, latents[i]], dim=1)))
            if i == 0:
                h = self.up(h)
        return h, p_means


class Decoder(nn.Module):
    """From level 3 up: per level an up-sampler and two residual blocks with skips s_k_2, s_k_1
    from the posterior encoder; 1x1 conv to out_channels and sigmoid.

    `skips` (levels 1, 2): False at a level drops that level's skips from the posterior encoder
    (its blocks see only the up-sampled generator path), so the frame's detail at that
    resolution cannot be copied from the input frames.

    forward(h [B, C3, H/4, W/4], features) -> [B, out_channels, H, W] in (0, 1).
    """

    def __init__(
        self,
        channels: list[int],
        out_channels: int,
        dropout: float,
        skips: tuple[bool, bool] = (True, True),
    ) -> None:
        super().__init__()
        self.skips = tuple(bool(s) for s in skips)
        self.ups = nn.ModuleList(
            [Upsample(channels[2], channels[1]), Upsample(channels[1], channels[0])]
        )
        self.blocks = nn.ModuleList(
            nn.ModuleList(ResBlock(c, dropout, with_skip=skip) for _ in range(2))
            for c, skip in ((channels[1], self.skips[1]), (channels[0], self.skips[0]))
        )
        self.out_proj = WNConv2d(channels[0], out_channels, 1)

    def forward(
        self, h: torch.Tensor, features: list[tuple[torch.Tensor, torch.Tensor]]
    ) -> torch.Tensor:
        for up, (block2, block1), level in zip(self.ups, self.blocks, (2, 1)):
            s1, s2 = features[level - 1] if self.skips[level - 1] else (None, None)
            h = block1(block2(up(h), s2), s1)
        return torch.sigmoid(self.out_proj(h))


def check_channels(nf_start: int, nf_max: int) -> list[int]:
    """Level channels; both latent levels must share one width (nf_max <= 4 * nf_start)."""
    channels = level_channels(nf_start, nf_max)
    if channels[2] != channels[3]:
        raise ValueError(
            f"nf_start={nf_start}, nf_max={nf_max} give level widths {channels}; the latent "
            "levels 3 and 4 need equal widths (nf_max <= 4 * nf_start)"
        )
    return channels


class CVAE(nn.Module):
    """Predicts the next frame from num_frames frames and num_flows flows.

    forward(frames [B, T, img_channels, H, W], flows [B, F, 2, H, W], sample_latent=None)
    -> {"frame_pred": [B, img_channels, H, W], "q_means": [q_4, q_3], "p_means": [p_4, p_3]}.
    sample_latent=None samples in training mode and uses the posterior mean in eval mode.
    """

    def __init__(
        self,
        num_frames: int = 4,
        num_flows: int = 4,
        img_channels: int = 3,
        flow_channels: int = 2,
        nf_start: int = 64,
        nf_max: int = 128,
        dropout: float = 0.1,
        decoder_skips: tuple[bool, bool] = (True, True),
    ) -> None:
        super().__init__()
        channels = check_channels(nf_start, nf_max)
        self.num_frames, self.num_flows = num_frames, num_flows
        appearance_in = num_frames * img_channels
        motion_in = num_flows * flow_channels
        self.posterior_encoder = Encoder(appearance_in + motion_in, nf_start, nf_max, dropout)
        self.prior_encoder = Encoder(motion_in, nf_start, nf_max, dropout)
        self.posterior_head = PosteriorHead(channels[3], dropout)
        self.prior_generator = PriorGenerator(channels[3], dropout)
        self.decoder = Decoder(channels, img_channels, dropout, decoder_skips)

    def forward(
        self, frames: torch.Tensor, flows: torch.Tensor, sample_latent: bool | None = None
    ) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        if sample_latent is None:
            sample_latent = self.training
        frames, flows = frames.flatten(1, 2), flows.flatten(1, 2)
        posterior_features = self.posterior_encoder(torch.cat([frames, flows], dim=1))
        q_means, latents = self.posterior_head(posterior_features, sample_latent)
        h, p_means = self.prior_generator(self.prior_encoder(flows), latents)
        frame_pred = self.decoder(h, posterior_features)
        return {"frame_pred": frame_pred, "q_means": q_means, "p_means": p_means}
