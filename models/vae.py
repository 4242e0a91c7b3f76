"""Frame-only VAE: the "VAE" baseline of Table 2 (docs/method.md §4). The paper gives no details.

Choices made here, keeping the CVAE's structure with the flows removed:
- posterior: the CVAE's posterior encoder and head on the 4 input frames only (12 channels),
  giving the means q_4 (4x4) and q_3 (8x8) of unit-variance Gaussians;
- prior: a standard normal at both levels, so the reported prior means p_k are zeros and the
  shared KL term sum 0.5 * (p - q)^2 becomes sum 0.5 * q^2;
- generator: starts from the latent alone, mirroring the CVAE's generator without the prior
  encoder: h = res(conv1x1(z_4)); up-sample to 8x8; h = res(h, skip = z_3);
- decoder: the CVAE's decoder, keeping its skips from the posterior encoder at 16x16 and 32x32.
Latent used: a posterior sample in training (and in the stochastic test), else the mean.
"""

from __future__ import annotations

import torch
from torch import nn

from models.cvae import (
    Decoder,
    Encoder,
    PosteriorHead,
    ResBlock,
    Upsample,
    WNConv2d,
    check_channels,
)


class LatentGenerator(nn.Module):
    """Generator path from the two latents alone: forward([z_4, z_3]) -> h [B, C, 8, 8]."""

    def __init__(self, channels: int, dropout: float) -> None:
        super().__init__()
        self.in_proj = WNConv2d(channels, channels, 1)
        self.block4 = ResBlock(channels, dropout)
        self.up = Upsample(channels, channels)
        self.block3 = ResBlock(channels, dropout, with_skip=True)

    def forward(self, latents: list[torch.Tensor]) -> torch.Tensor:
        z4, z3 = latents
        h = self.up(self.block4(self.in_proj(z4)))
        return self.block3(h, z3)


class FrameVAE(nn.Module):
    """Predicts the next frame from num_frames frames only.

    forward(frames [B, T, img_channels, H, W], sample_latent=None)
    -> {"frame_pred": [B, img_channels, H, W], "q_means": [q_4, q_3], "p_means": zeros like q}.
    """

    def __init__(
        self,
        num_frames: int = 4,
        img_channels: int = 3,
        nf_start: int = 64,
        nf_max: int = 128,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        channels = check_channels(nf_start, nf_max)
        self.num_frames = num_frames
        self.posterior_encoder = Encoder(num_frames * img_channels, nf_start, nf_max, dropout)
        self.posterior_head = PosteriorHead(channels[3], dropout)
        self.generator = LatentGenerator(channels[3], dropout)
        self.decoder = Decoder(channels, img_channels, dropout)

    def forward(
        self, frames: torch.Tensor, sample_latent: bool | None = None
    ) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        if sample_latent is None:
            sample_latent = self.training
        posterior_features = self.posterior_encoder(frames.flatten(1, 2))
        q_means, latents = self.posterior_head(posterior_features, sample_latent)
        frame_pred = self.decoder(self.generator(latents), posterior_features)
        p_means = [torch.zeros_like(q) for q in q_means]
        return {"frame_pred": frame_pred, "q_means": q_means, "p_means": p_means}
