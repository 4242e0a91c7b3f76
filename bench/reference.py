"""A faithful "reference execution" of a trained HF2VAD, the way the authors' code runs it, for
speed ratios measured in one run (issue 16): float32; each of the 4 flows through ML-MemAE-SC
as a batch of its own; every weight-normalised conv computes its weight from direction and
magnitude on every call and applies gain and shift as separate passes over its output; the
memory read multiplies every slot (dense); torch's dropout; no fusion, no micro-batches, NCHW.
It computes the same function as the model (tests/test_reference.py); its training steps
(reference_outputs) compute the same losses as ours."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from models.cvae import Dropout, WNConv2d
from models.memory import Memory


def _reference_wn_forward(self: WNConv2d, x: torch.Tensor) -> torch.Tensor:
    """The authors' order of operations: weight norm, conv, then gain and shift."""
    norm = self.direction.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    weight = self.magnitude.view(-1, 1, 1, 1) * self.direction / norm
    out = F.conv2d(x, weight, self.bias, stride=self.stride, padding=self.padding)
    return out * self.gain + self.shift


def _reference_dropout(self: Dropout, x: torch.Tensor) -> torch.Tensor:
    """torch's dropout, a Bernoulli draw per element."""
    return F.dropout(x, self.p, training=self.training)


def reference_copy(model: nn.Module) -> nn.Module:
    """A float32 copy of `model` that runs the authors' way: dense memory read, weight norm
    recomputed on every call with gain and shift as passes of their own, torch's dropout."""
    model = copy.deepcopy(model).float()
    for module in model.modules():
        if isinstance(module, Memory):
            module.sparse_read = False
        if isinstance(module, WNConv2d):
            module.forward = _reference_wn_forward.__get__(module)
        if isinstance(module, Dropout):
            module.forward = _reference_dropout.__get__(module)
    return model


def reference_outputs(model: nn.Module, frames: torch.Tensor, flows: torch.Tensor) -> dict:
    """The model's output dict with each flow through ML-MemAE-SC as a batch of its own (with
    gradients unless the model's ML-MemAE-SC is frozen), as the authors' loop does."""
    if model.memae is None:
        return model(frames, flows)
    with torch.set_grad_enabled(torch.is_grad_enabled() and not model.memae_frozen):
        parts = [model.memae(flows[:, j]) for j in range(flows.shape[1])]
    out = model(frames, flows, flow_recon=torch.stack([p["recon"] for p in parts], dim=1))
    # the entropy loss is a mean over addressed rows: their order does not matter
    out["att_weights"] = [torch.cat(rows) for rows in zip(*(p["att_weights"] for p in parts))]
    return out


class ReferenceExecution(nn.Module):
    """forward(frames [B, 5, 3, H, W], flows [B, 4, 2, H, W]) -> the model's output dict."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = reference_copy(model).eval()

    @torch.inference_mode()
    def forward(self, frames: torch.Tensor, flows: torch.Tensor) -> dict:
        return reference_outputs(self.model, frames, flows)
