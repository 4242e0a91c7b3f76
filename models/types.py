"""What each model type is: its networks, its training stages and its scores. Every other place
(builder, training scripts, evaluation, detect, the motion check) reads this table."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelType:
    """One model type. `scores` are the named scores evaluation reports, the primary first:
    fused (w_r S_r + w_p S_p), flow_reconstruction (S_r alone), frame_prediction (S_p alone)."""

    name: str
    has_memae: bool  # an ML-MemAE-SC (flow reconstruction)
    predictor: str | None  # "cvae" (frames + flows), "vae" (frames only) or None
    stages: tuple[int, ...]  # training stages, in order (1: ML-MemAE-SC, 2: predictor, 3: joint)
    scores: tuple[str, ...]

    @property
    def primary_score(self) -> str:
        return self.scores[0]

    @property
    def uses_flows_for_prediction(self) -> bool:
        """A frame predictor that is given flows (what the motion check examines)."""
        return self.predictor == "cvae"


MODEL_TYPES: dict[str, ModelType] = {
    t.name: t
    for t in (
        ModelType(
            "hybrid", True, "cvae", (1, 2, 3), ("fused", "flow_reconstruction", "frame_prediction")
        ),
        ModelType("memae", True, None, (1,), ("flow_reconstruction",)),
        ModelType("cvae", False, "cvae", (2,), ("frame_prediction",)),
        ModelType("vae", False, "vae", (2,), ("frame_prediction",)),
    )
}


def model_type(name: str) -> ModelType:
    """The table entry of `name`; an unknown name is an error listing the known ones."""
    if name not in MODEL_TYPES:
        raise ValueError(
            f"config key 'model.type' must be one of {tuple(MODEL_TYPES)}, got {name!r}"
        )
    return MODEL_TYPES[name]
