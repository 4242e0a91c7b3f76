"""The named scores of a model type (models/types.py) and their branch weights."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from models import model_type


class Weights(NamedTuple):
    """Weights of the z-scored S_r, S_p and S_a (appearance novelty) in one named score."""

    w_r: float
    w_p: float
    w_a: float = 0.0


@dataclass(frozen=True)
class ScoreSet:
    """The named scores of a run and their weights, the primary first (`primary`)."""

    weights: dict[str, Weights]
    primary: str

    @classmethod
    def from_config(cls, cfg) -> ScoreSet:
        """The scores the model type has (models/types.py): fused (eval.w_r, eval.w_p,
        eval.w_a); flow_reconstruction (1, 0, 0); frame_prediction (0, 1, 0). With eval.w_a > 0
        two more: fused_without_appearance (the paper's fusion, eval.w_r, eval.w_p) beside a
        fused score, and appearance (0, 0, 1)."""
        kind = model_type(cfg.model.type)
        w_a = float(cfg.eval.w_a)
        weights = {
            "fused": Weights(cfg.eval.w_r, cfg.eval.w_p, w_a),
            "flow_reconstruction": Weights(1.0, 0.0),
            "frame_prediction": Weights(0.0, 1.0),
        }
        scores = {name: weights[name] for name in kind.scores}
        if w_a > 0:
            if "fused" in scores:
                scores["fused_without_appearance"] = Weights(cfg.eval.w_r, cfg.eval.w_p)
            scores["appearance"] = Weights(0.0, 0.0, 1.0)
        return cls(scores, kind.primary_score)

    @property
    def uses_appearance(self) -> bool:
        """Whether any score needs the appearance novelty S_a (eval.w_a > 0)."""
        return any(w.w_a > 0 for w in self.weights.values())

    @property
    def primary_weights(self) -> Weights:
        return self.weights[self.primary]
