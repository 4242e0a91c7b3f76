"""Builders from config sections (`cfg.model`, `cfg.model.memae`, `cfg.loss`): the only place
where models read configs. Every script builds its model and loss through these."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from models.cvae import CVAE
from models.hybrid import HF2VAD
from models.losses import HF2VADLoss
from models.ml_memae_sc import MLMemAESC
from models.types import model_type
from models.vae import FrameVAE


def _get(section: Mapping, key: str, where: str) -> Any:
    try:
        return section[key]
    except KeyError:
        raise KeyError(f"config section '{where}' has no key '{key}'") from None


def build_memae(memae_cfg: Mapping) -> MLMemAESC:
    """ML-MemAE-SC from `cfg.model.memae`."""

    def get(key: str) -> Any:
        return _get(memae_cfg, key, "model.memae")

    return MLMemAESC(
        in_channels=int(get("in_channels")),
        feature_root=int(get("feature_root")),
        num_slots=int(get("num_slots")),
        shrink_thres=float(get("shrink_thres")),
        mem_usage=tuple(get("mem_usage")),
        skip_ops=tuple(get("skip_ops")),
    )


def build_cvae(cvae_cfg: Mapping, frames_only: bool = False) -> CVAE | FrameVAE:
    """The CVAE (or, with frames_only, the frame-only VAE) from `cfg.model.cvae`."""

    def get(key: str) -> Any:
        return _get(cvae_cfg, key, "model.cvae")

    common = dict(
        num_frames=int(get("num_frames")),
        img_channels=int(get("img_channels")),
        nf_start=int(get("nf_start")),
        nf_max=int(get("nf_max")),
        dropout=float(get("dropout")),
    )
    if frames_only:
        return FrameVAE(**common)
    skips = get("decoder_skips")
    if not (isinstance(skips, list) and len(skips) == 2 and all(type(s) is bool for s in skips)):
        raise ValueError(
            "config key 'model.cvae.decoder_skips' must be two booleans (levels 1, 2), "
            f"got {skips!r}"
        )
    return CVAE(num_flows=int(get("num_flows")), decoder_skips=tuple(skips), **common)


def build_model(model_cfg: Mapping) -> HF2VAD:
    """The HF2VAD wrapper for `cfg.model.type` (hybrid | memae | cvae | vae)."""
    kind = model_type(_get(model_cfg, "type", "model"))
    memae = build_memae(_get(model_cfg, "memae", "model")) if kind.has_memae else None
    cvae = None
    if kind.predictor is not None:
        cvae = build_cvae(_get(model_cfg, "cvae", "model"), frames_only=kind.predictor == "vae")
    return HF2VAD(
        kind.name,
        memae=memae,
        cvae=cvae,
        num_recon_flows=int(_get(model_cfg, "num_recon_flows", "model")),
        deterministic=bool(_get(model_cfg, "deterministic", "model")),
    )


def build_loss(loss_cfg: Mapping) -> HF2VADLoss:
    """HF2VADLoss from `cfg.loss`."""
    keys = ("lambda_recon", "lambda_ent", "lambda_kl", "lambda_frame", "lambda_grad")
    return HF2VADLoss(**{key: float(_get(loss_cfg, key, "loss")) for key in keys})
