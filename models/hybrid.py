"""HF2-VAD: ML-MemAE-SC flow reconstruction followed by flow-guided frame prediction
(docs/method.md §1).

One wrapper serves every model type so that training and evaluation code is shared:
- hybrid: ML-MemAE-SC reconstructs each of the flows; the CVAE sees the original first flows
  and the reconstructed last `num_recon_flows` (Table 3; 4 = the paper's model);
- memae: flow reconstruction only; cvae: frame prediction on the original flows;
- vae: frame prediction from frames only (`cvae` holds the FrameVAE).
"""

from __future__ import annotations

import torch
from torch import nn

from models import types
from models.cvae import CVAE
from models.ml_memae_sc import MLMemAESC
from models.vae import FrameVAE


def empty_output(frames: torch.Tensor, flows: torch.Tensor) -> dict:
    """HF2VAD's output dict before any branch has run: the targets, and None / [] for the rest
    (also the shape of an exported graph's outputs, inference/runtimes.py)."""
    return {
        "flow_recon": None,
        "flow_target": flows,
        "frame_pred": None,
        "frame_target": frames[:, -1],
        "att_weights": [],
        "q_means": [],
        "p_means": [],
        "latent_divergence": None,  # per-object KL; only an exported graph gives it directly
    }


class HF2VAD(nn.Module):
    """forward(frames [B, T+1, 3, H, W] in [0, 1], flows [B, F, 2, H, W] in pixels) -> dict:
    flow_recon [B, F, 2, H, W] or None, flow_target (= flows), frame_pred [B, 3, H, W] or None,
    frame_target (= frames[:, -1]), att_weights (list of [B*F, N], row b*F + j = flow j of
    sample b), q_means / p_means (lists of latent means, coarse level first).

    Test mode (latent = posterior mean) when in eval mode and `deterministic` is true.
    `flow_recon` [B, F, 2, H, W], when given, stands for the ML-MemAE-SC's output (computed once
    beforehand while it is frozen, stage 2); att_weights is then empty.
    """

    def __init__(
        self,
        model_type: str,
        memae: MLMemAESC | None = None,
        cvae: CVAE | FrameVAE | None = None,
        num_recon_flows: int = 4,
        deterministic: bool = True,
    ) -> None:
        super().__init__()
        kind = types.model_type(model_type)
        needs_cvae = kind.predictor is not None
        if (memae is not None) != kind.has_memae or (cvae is not None) != needs_cvae:
            raise ValueError(
                f"model type {model_type!r} got memae={memae is not None}, cvae={cvae is not None}"
            )
        if needs_cvae and (kind.predictor == "vae") != isinstance(cvae, FrameVAE):
            raise ValueError("model type 'vae' needs a FrameVAE, the other types a CVAE")
        if model_type == "hybrid" and not 0 <= num_recon_flows <= cvae.num_flows:
            raise ValueError(
                f"model.num_recon_flows must be in 0..{cvae.num_flows}, got {num_recon_flows}"
            )
        self.model_type = model_type
        self.memae = memae
        self.cvae = cvae
        self.num_recon_flows = num_recon_flows
        self.deterministic = deterministic
        self.memae_frozen = False

    def set_memae_frozen(self, frozen: bool) -> None:
        """Frozen: no gradients to ML-MemAE-SC, kept in eval mode, run under no_grad (stage 2)."""
        self.memae_frozen = frozen
        if self.memae is None:
            return
        self.memae.requires_grad_(not frozen)
        self.memae.train(self.training and not frozen)

    def train(self, mode: bool = True) -> HF2VAD:
        super().train(mode)
        if self.memae is not None and self.memae_frozen:
            self.memae.eval()
        return self

    def _reconstruct_flows(self, flows: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Every flow through ML-MemAE-SC in one batch: [B, F, 2, H, W] -> same shape."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.memae_frozen):
            out = self.memae(flows.flatten(0, 1))
        return out["recon"].view_as(flows), out["att_weights"]

    def cvae_sees_reconstructions(self) -> bool:
        """Whether the CVAE's motion input holds any ML-MemAE-SC reconstruction; when it holds
        none, a frozen ML-MemAE-SC (no loss, no gradient) has nothing to do (stage 2 on the
        original flows, stage2.cvae_flows)."""
        return self.model_type == "hybrid" and self.num_recon_flows > 0

    def _check_inputs(self, frames: torch.Tensor, flows: torch.Tensor) -> None:
        if frames.dim() != 5 or flows.dim() != 5 or frames.shape[0] != flows.shape[0]:
            raise ValueError(
                "HF2VAD expects frames [B, T+1, 3, H, W] and flows [B, F, 2, H, W], got "
                f"{list(frames.shape)} and {list(flows.shape)}"
            )
        if self.cvae is None:
            return
        if frames.shape[1] != self.cvae.num_frames + 1:
            raise ValueError(
                f"model predicts from {self.cvae.num_frames} frames and needs "
                f"{self.cvae.num_frames + 1} per sample (inputs + target), got {frames.shape[1]}"
            )
        if isinstance(self.cvae, CVAE) and flows.shape[1] != self.cvae.num_flows:
            raise ValueError(f"model needs {self.cvae.num_flows} flows, got {flows.shape[1]}")

    def forward(
        self, frames: torch.Tensor, flows: torch.Tensor, flow_recon: torch.Tensor | None = None
    ) -> dict:
        self._check_inputs(frames, flows)
        out = empty_output(frames, flows)
        memae_idle = self.memae_frozen and not self.cvae_sees_reconstructions()
        if self.memae is not None and flow_recon is not None:
            out["flow_recon"] = flow_recon
        elif self.memae is not None and not memae_idle:
            out["flow_recon"], out["att_weights"] = self._reconstruct_flows(flows)
        if self.cvae is None:
            return out

        sample_latent = self.training or not self.deterministic
        if self.model_type == "vae":
            pred = self.cvae(frames[:, :-1], sample_latent=sample_latent)
        else:
            motion = self.cvae_motion(flows, out["flow_recon"])
            pred = self.cvae(frames[:, :-1], motion, sample_latent=sample_latent)
        out.update(pred)
        return out

    def cvae_motion(self, flows: torch.Tensor, flow_recon: torch.Tensor | None) -> torch.Tensor:
        """The flows the CVAE sees [B, F, 2, H, W]: the original ones, of which a hybrid
        replaces the last `num_recon_flows` by their reconstructions."""
        if not self.cvae_sees_reconstructions():
            return flows
        num_original = flows.shape[1] - self.num_recon_flows
        return torch.cat([flows[:, :num_original], flow_recon[:, num_original:]], dim=1)
