"""Training losses (docs/method.md §3-4) and the per-object anomaly scores (docs/method.md §6).

Every loss is computed in float32 so that mixed-precision outputs do not lose the small terms.
Loss dicts hold the unweighted terms under their names and `total` = sum of lambda * term.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

ENTROPY_EPS = 1e-12


def flow_recon_loss(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over all elements."""
    return F.mse_loss(recon.float(), target.float())


def entropy_loss(att_weights: list[torch.Tensor]) -> torch.Tensor:
    """Sum over memories of the batch-mean entropy of the (shrunk, renormalised) weights [B, N]."""
    return sum(
        (-(w.float() * torch.log(w.float() + ENTROPY_EPS)).sum(dim=1)).mean() for w in att_weights
    )


def kl_loss(q_means: list[torch.Tensor], p_means: list[torch.Tensor]) -> torch.Tensor:
    """KL of unit-variance Gaussians: sum over levels of batch-mean sum 0.5 * (p - q)^2."""
    return sum(
        (0.5 * (p.float() - q.float()).pow(2)).flatten(1).sum(dim=1).mean()
        for q, p in zip(q_means, p_means, strict=True)
    )


def frame_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Intensity loss: mean squared error over all elements."""
    return F.mse_loss(pred.float(), target.float())


def gradient_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Eq. 7 as in docs/method.md §4: mean | |d target| - |d pred| | along x plus the same along y,
    per channel, over neighbouring pixels. (The authors' code compared signed differences of the
    channel-summed image, zero-padded at the border.)"""
    pred, target = pred.float(), target.float()
    loss = pred.new_zeros(())
    for dim in (-1, -2):
        pred_grad = torch.diff(pred, dim=dim).abs()
        target_grad = torch.diff(target, dim=dim).abs()
        loss = loss + (target_grad - pred_grad).abs().mean()
    return loss


def _weighted_total(terms: dict[str, torch.Tensor], weights: dict[str, float]) -> torch.Tensor:
    return sum(weights[name] * value for name, value in terms.items())


def memae_loss(
    recon: torch.Tensor,
    target: torch.Tensor,
    att_weights: list[torch.Tensor],
    lambda_recon: float = 1.0,
    lambda_ent: float = 2e-4,
) -> dict[str, torch.Tensor]:
    """Stage-1 loss of ML-MemAE-SC: {"flow_recon", "entropy" (if any memory), "total"}."""
    terms = {"flow_recon": flow_recon_loss(recon, target)}
    if att_weights:
        terms["entropy"] = entropy_loss(att_weights)
    weights = {"flow_recon": lambda_recon, "entropy": lambda_ent}
    return {**terms, "total": _weighted_total(terms, weights)}


class HF2VADLoss(nn.Module):
    """forward(out of HF2VAD) -> {"flow_recon", "entropy", "kl", "frame", "gradient", "total"},
    leaving out the terms whose inputs are None or empty (e.g. no flow terms for type cvae).
    """

    def __init__(
        self,
        lambda_recon: float = 1.0,
        lambda_ent: float = 2e-4,
        lambda_kl: float = 1.0,
        lambda_frame: float = 1.0,
        lambda_grad: float = 1.0,
    ) -> None:
        super().__init__()
        self.weights = {
            "flow_recon": lambda_recon,
            "entropy": lambda_ent,
            "kl": lambda_kl,
            "frame": lambda_frame,
            "gradient": lambda_grad,
        }

    def forward(self, out: dict) -> dict[str, torch.Tensor]:
        terms = {}
        if out.get("flow_recon") is not None:
            terms["flow_recon"] = flow_recon_loss(out["flow_recon"], out["flow_target"])
        if out.get("att_weights"):
            terms["entropy"] = entropy_loss(out["att_weights"])
        if out.get("q_means"):
            terms["kl"] = kl_loss(out["q_means"], out["p_means"])
        if out.get("frame_pred") is not None:
            terms["frame"] = frame_loss(out["frame_pred"], out["frame_target"])
            terms["gradient"] = gradient_loss(out["frame_pred"], out["frame_target"])
        if not terms:
            raise ValueError("HF2VADLoss: the model output holds no prediction to score")
        return {**terms, "total": _weighted_total(terms, self.weights)}

    def extra_repr(self) -> str:
        return ", ".join(f"lambda_{name}={value}" for name, value in self.weights.items())


def object_divergence(out: dict) -> torch.Tensor | None:
    """Per-object KL divergence [B] (float32) between the CVAE's posterior (frames and flows) and
    its prior (flows only), summed over levels: sum 0.5 * (p - q)^2, as `kl_loss` per object. It
    is large where the frames tell the latent what the flows cannot (docs/method.md §6.3). An
    exported graph gives it as `latent_divergence`; None without a frame predictor."""
    if out.get("latent_divergence") is not None:
        return out["latent_divergence"].float()
    if not out.get("q_means"):
        return None
    return sum(
        (0.5 * (p.float() - q.float()).pow(2)).flatten(1).sum(dim=1)
        for q, p in zip(out["q_means"], out["p_means"], strict=True)
    )


class ObjectErrors(NamedTuple):
    """Per-object errors [B]: S_r, S_p and the latent divergence S_kl; zeros for a missing
    branch. float32 tensors from `object_scores`; float64 numpy arrays where scoring gathers
    them (`scoring.statistics.object_errors`)."""

    s_r: torch.Tensor
    s_p: torch.Tensor
    s_kl: torch.Tensor


@torch.no_grad()
def object_scores(out: dict) -> ObjectErrors:
    """Per-object errors: S_r, the summed squared flow reconstruction error over F x 2 x H x W;
    S_p, the summed squared frame prediction error over 3 x H x W; S_kl (`object_divergence`)."""
    flows = out["flow_target"]
    zeros = torch.zeros(flows.shape[0], device=flows.device, dtype=torch.float32)
    s_r, s_p, s_kl = zeros, zeros, zeros
    if out.get("flow_recon") is not None:
        s_r = (out["flow_recon"].float() - flows.float()).pow(2).flatten(1).sum(dim=1)
    if out.get("frame_pred") is not None:
        error = out["frame_pred"].float() - out["frame_target"].float()
        s_p = error.pow(2).flatten(1).sum(dim=1)
        divergence = object_divergence(out)
        if divergence is not None:
            s_kl = divergence
    return ObjectErrors(s_r, s_p, s_kl)
