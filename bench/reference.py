"""A faithful "reference execution" of a trained HF2VAD, the way the authors' code runs it, for
speed ratios measured in one run (issue 16): float32; each of the 4 flows through ML-MemAE-SC
as a batch of its own; every weight-normalised conv computes its weight from direction and
magnitude on every call and applies gain and shift as separate passes over its output; the
memory read multiplies every slot (dense); no fusion, no micro-batches, NCHW. It computes the
same function as the model (tests/test_reference.py)."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from models.cvae import WNConv2d
from models.memory import Memory


def _reference_wn_forward(self: WNConv2d, x: torch.Tensor) -> torch.Tensor:
    """The authors' order of operations: weight norm, conv, then gain and shift."""
    norm = self.direction.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    weight = self.magnitude.view(-1, 1, 1, 1) * self.direction / norm
    out = F.conv2d(x, weight, self.bias, stride=self.stride, padding=self.padding)
    return out * self.gain + self.shift


class ReferenceExecution(nn.Module):
    """forward(frames [B, 5, 3, H, W], flows [B, 4, 2, H, W]) -> the model's output dict."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = copy.deepcopy(model).float().eval()
        for module in self.model.modules():
            if isinstance(module, Memory):
                module.sparse_read = False
            if isinstance(module, WNConv2d):
                module.forward = _reference_wn_forward.__get__(module)

    @torch.inference_mode()
    def forward(self, frames: torch.Tensor, flows: torch.Tensor) -> dict:
        recon = None
        if self.model.memae is not None:
            parts = [self.model.memae(flows[:, j])["recon"] for j in range(flows.shape[1])]
            recon = torch.stack(parts, dim=1)
        return self.model(frames, flows, flow_recon=recon)
