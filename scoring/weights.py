"""The named scores of a model type (models/types.py) and their branch weights."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from models import model_type


class Weights(NamedTuple):
    """Weights of the z-scored S_r, S_p, S_a (appearance novelty) and S_kl (latent divergence)
    in one named score."""

    w_r: float
    w_p: float
    w_a: float = 0.0
    w_kl: float = 0.0


@dataclass(frozen=True)
class ScoreSet:
    """The named scores of a run and their weights, the primary first (`primary`)."""

    weights: dict[str, Weights]
    primary: str

    @classmethod
    def from_config(cls, cfg) -> ScoreSet:
        """The scores the model type has (models/types.py): fused (eval.w_r, eval.w_p,
        eval.w_a, eval.w_kl); flow_reconstruction (1, 0, 0, 0); frame_prediction (0, 1, 0, 0).
        With eval.w_a > 0 two more: fused_without_appearance (the paper's fusion, eval.w_r,
        eval.w_p) beside a fused score, and appearance (S_a alone). With eval.w_kl != 0,
        latent_divergence (S_kl alone), the paper's fusion as fused_without_divergence when
        S_a is off, and, for a frame predictor alone, the primary prediction_with_divergence
        (S_p + eval.w_kl S_kl)."""
        kind = model_type(cfg.model.type)
        w_a, w_kl = float(cfg.eval.w_a), float(cfg.eval.w_kl)
        if w_kl and kind.predictor is None:
            raise ValueError(
                f"eval.w_kl is {w_kl} but model.type {kind.name!r} has no frame predictor "
                "(S_kl is the CVAE's latent divergence): set eval.w_kl to 0"
            )
        weights = {
            "fused": Weights(cfg.eval.w_r, cfg.eval.w_p, w_a, w_kl),
            "flow_reconstruction": Weights(1.0, 0.0),
            "frame_prediction": Weights(0.0, 1.0),
        }
        scores = {name: weights[name] for name in kind.scores}
        primary = kind.primary_score
        if w_kl and "fused" not in scores:
            scores = {"prediction_with_divergence": Weights(0.0, 1.0, 0.0, w_kl), **scores}
            primary = "prediction_with_divergence"
        if w_a > 0:
            if "fused" in scores:
                scores["fused_without_appearance"] = Weights(cfg.eval.w_r, cfg.eval.w_p)
            scores["appearance"] = Weights(0.0, 0.0, 1.0)
        if w_kl and w_a <= 0 and "fused" in scores:
            scores["fused_without_divergence"] = Weights(cfg.eval.w_r, cfg.eval.w_p)
        if w_kl:
            scores["latent_divergence"] = Weights(0.0, 0.0, 0.0, 1.0)
        return cls(scores, primary)

    @property
    def uses_appearance(self) -> bool:
        """Whether any score needs the appearance novelty S_a (eval.w_a > 0)."""
        return any(w.w_a > 0 for w in self.weights.values())

    @property
    def uses_divergence(self) -> bool:
        """Whether any score needs the latent divergence S_kl (eval.w_kl != 0)."""
        return any(w.w_kl != 0 for w in self.weights.values())

    @property
    def primary_weights(self) -> Weights:
        return self.weights[self.primary]
