"""Inference-only rewrites of a trained model that compute the same function faster.

`fuse_for_inference(model)` returns a copy in eval mode in which
- every weight-normalised conv of the CVAE / frame VAE (`WNConv2d`: gain * conv(x, m * v / |v|)
  + shift) is one plain `nn.Conv2d` with weight gain * m * v / |v| and bias gain * b + shift, so
  the weight is not renormalised and no per-channel affine pass runs at every call;
- every BatchNorm of ML-MemAE-SC is folded into the conv before it (eval-mode statistics);
- with `channels_last`, parameters and the inputs of every conv use the NHWC memory layout
  (oneDNN's native layout on CPU, tensor cores on CUDA): measure it, it does not always pay.
Outputs equal the original model's up to float rounding (tests/test_speed_equivalence.py:
max abs difference <= 1e-4 on frame_pred and flow_recon in float32). The copy cannot be trained
(batch statistics and weight norm are gone): keep the original for that.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from models.cvae import WNConv2d


@torch.no_grad()
def plain_conv(wn: WNConv2d) -> nn.Conv2d:
    """The nn.Conv2d computing the same map as a WNConv2d."""
    out_channels, in_channels, kernel, _ = wn.direction.shape
    conv = nn.Conv2d(
        in_channels, out_channels, kernel, stride=wn.stride, padding=wn.padding, bias=True
    ).to(wn.direction.device, wn.direction.dtype)
    gain, shift = wn.gain.view(-1), wn.shift.view(-1)
    scale = gain * wn.magnitude / wn.direction.flatten(1).norm(dim=1)
    conv.weight.copy_(wn.direction * scale.view(-1, 1, 1, 1))
    conv.bias.copy_(gain * wn.bias + shift)
    return conv


def _fold_batch_norms(module: nn.Module) -> None:
    """Fold each BatchNorm2d that directly follows a Conv2d in an nn.Sequential into it."""
    for child in module.children():
        _fold_batch_norms(child)
    if not isinstance(module, nn.Sequential):
        return
    for i in range(len(module) - 1):
        conv, norm = module[i], module[i + 1]
        if type(conv) is nn.Conv2d and isinstance(norm, nn.BatchNorm2d):
            module[i] = fuse_conv_bn_eval(conv, norm)
            module[i + 1] = nn.Identity()


def _replace_wn_convs(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, WNConv2d):
            setattr(module, name, plain_conv(child))
        else:
            _replace_wn_convs(child)


def fuse_for_inference(model: nn.Module, channels_last: bool = False) -> nn.Module:
    """An eval-mode copy of `model` (HF2VAD, MLMemAESC, CVAE or FrameVAE) with weight norm and
    batch norm folded into plain convs; see the module docstring. `model` is not changed."""
    fused = copy.deepcopy(model).eval()
    _replace_wn_convs(fused)
    _fold_batch_norms(fused)
    fused.requires_grad_(False)
    if channels_last:
        fused.to(memory_format=torch.channels_last)
    return fused


class ScoringModel(nn.Module):
    """Test-mode wrapper used for scoring: forward(frames, flows) runs the model under
    inference_mode and, with `autocast_dtype` (bfloat16 on CPU, float16 on CUDA), under autocast;
    floating-point outputs come back in float32 (the scores are summed in float32 anyway).

    With `micro_batch` > 0 a batch runs through the model in chunks of that many cubes and the
    outputs are concatenated (samples are independent in test mode, so nothing changes but the
    speed: on CPU cache-sized chunks run ~30% faster than batches of 128-256).
    """

    def __init__(
        self, model: nn.Module, autocast_dtype: torch.dtype | None = None, micro_batch: int = 0
    ) -> None:
        super().__init__()
        self.model = model.eval()
        self.autocast_dtype = autocast_dtype
        self.micro_batch = micro_batch

    def train(self, mode: bool = True) -> ScoringModel:
        return super().train(False)  # scoring only: stays in test mode

    def forward(self, frames: torch.Tensor, flows: torch.Tensor) -> dict:
        size = self.micro_batch if self.micro_batch > 0 else len(frames)
        if len(frames) <= size:
            return self._run(frames, flows)
        chunks = [self._run(f, g) for f, g in zip(frames.split(size), flows.split(size))]
        return {key: _concat([c[key] for c in chunks]) for key in chunks[0]}

    def _run(self, frames: torch.Tensor, flows: torch.Tensor) -> dict:
        with torch.inference_mode():
            if self.autocast_dtype is None:
                return self.model(frames, flows)
            with torch.autocast(frames.device.type, dtype=self.autocast_dtype):
                out = self.model(frames, flows)
            return {key: _to_float32(value) for key, value in out.items()}


def _to_float32(value):
    if torch.is_tensor(value) and value.is_floating_point():
        return value.float()
    if isinstance(value, list):
        return [_to_float32(v) for v in value]
    return value


def _concat(parts: list):
    """Join per-chunk outputs along the batch: tensors, lists of tensors, or None."""
    if parts[0] is None:
        return None
    if isinstance(parts[0], list):
        return [torch.cat(level) for level in zip(*parts)]
    return torch.cat(parts)


def scoring_model(
    model: nn.Module,
    fuse: bool = True,
    channels_last: bool = False,
    autocast_dtype: torch.dtype | None = None,
    micro_batch: int = 0,
) -> ScoringModel:
    """`model` ready to score: fused (see `fuse_for_inference`) when `fuse`, in channels_last
    when asked, wrapped in a ScoringModel. `model` itself is not changed."""
    if fuse:
        model = fuse_for_inference(model, channels_last=channels_last)
    elif channels_last:
        model = copy.deepcopy(model).to(memory_format=torch.channels_last)
    return ScoringModel(model, autocast_dtype, micro_batch)
