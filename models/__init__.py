"""HF2-VAD models: ML-MemAE-SC, the CVAE, the frame-only VAE, the hybrid wrapper, and losses."""

from models.builder import build_cvae, build_loss, build_memae, build_model
from models.cvae import CVAE
from models.hybrid import HF2VAD
from models.inference import ScoringModel, fuse_for_inference, scoring_model
from models.losses import HF2VADLoss, ObjectErrors, memae_loss, object_scores
from models.memory import Memory
from models.ml_memae_sc import VARIANTS, MLMemAESC
from models.types import MODEL_TYPES, ModelType, model_type
from models.vae import FrameVAE

__all__ = [
    "CVAE",
    "HF2VAD",
    "MODEL_TYPES",
    "ModelType",
    "model_type",
    "VARIANTS",
    "FrameVAE",
    "HF2VADLoss",
    "MLMemAESC",
    "ObjectErrors",
    "Memory",
    "ScoringModel",
    "build_cvae",
    "build_loss",
    "build_memae",
    "build_model",
    "fuse_for_inference",
    "memae_loss",
    "object_scores",
    "scoring_model",
]
