"""Reading published results (results/<run>/): a run's scores and recipe, and how scores are
named in the tables of results/README.md and README.md."""

from __future__ import annotations

import functools
from pathlib import Path

import yaml

from utils.io import read_json

PAPER_FUSION = "fused_without_appearance"  # the paper's fused score when a run adds S_a
WITH_S_A = "fused with S_a"  # a run's fused score, shown only when it adds S_a
RECON_WARP = "x4 moved by the reconstructed last flow"  # a motion-check row that needs a model
DIVERGENCE = "prediction_with_divergence"  # a frame predictor's S_p fused with its S_kl (ours)
OPTIONAL_SCORES = (WITH_S_A, DIVERGENCE)  # scores of ours: a table row only where a run has them


SCORE_NAMES = {
    "fused": "fused S (w_r S_r + w_p S_p)",
    "fused_without_appearance": "fused as in the paper (w_r S_r + w_p S_p, no S_a)",
    "appearance": "S_a only (appearance novelty, ours)",
    "flow_reconstruction": "S_r only (flow reconstruction)",
    "frame_prediction": "S_p only (frame prediction)",
    "fused_without_divergence": "fused as in the paper (w_r S_r + w_p S_p, no S_kl)",
    "latent_divergence": "S_kl only (the CVAE's latent divergence, ours)",
    "prediction_with_divergence": "S_p + w_kl S_kl (ours)",
}


def score_label(name: str, score: dict) -> str:
    """How a named score is shown; a fused score with S_a or S_kl says so."""
    if name == "fused" and (score.get("w_a") or score.get("w_kl")):
        extra = " + w_a S_a" * bool(score.get("w_a")) + " + w_kl S_kl" * bool(score.get("w_kl"))
        return f"fused S (w_r S_r + w_p S_p{extra}, ours)"
    return SCORE_NAMES.get(name, name)


def fmt2(value) -> str:
    """A percentage or a time with two decimals; a dash for a missing value."""
    return "–" if value is None else f"{value:.2f}"


FAST_RECIPE = Path(__file__).resolve().parents[1] / "cfgs" / "ped2_cpu_fast.yaml"


@functools.lru_cache(maxsize=1)
def _fast_epochs() -> int:
    """Stage 2's epochs in the fast recipe (read once: every results row asks)."""
    return yaml.safe_load(FAST_RECIPE.read_text())["stage2"]["num_epochs"]


def recipe(folder: Path) -> str:
    """`validated` (validation split and early stopping), `fast` (the same with the stage 2
    of cfgs/ped2_cpu_fast.yaml, at most its epochs) or `first` (the first CPU schedule), read
    from the published config; plus the smoothing (and the track window, when on), for a
    hybrid whose stage 2 trained its CVAE on the original flows, that, and whether objects cut
    by the image border were cropped as if whole."""
    path = folder / "config.yaml"
    if not path.is_file():
        return ""
    cfg = yaml.safe_load(path.read_text())
    name = "first"
    if cfg["train"].get("val_videos"):
        epochs = (cfg.get("stage2") or {}).get("num_epochs", _fast_epochs() + 1)
        name = "fast" if epochs <= _fast_epochs() else "validated"
    tracks = int(cfg["eval"].get("track_window", 1))
    text = f"{name}, {cfg['eval']['smoothing']}" + (f", tracks {tracks}" if tracks > 1 else "")
    on_original = (cfg.get("stage2") or {}).get("cvae_flows") == "original"
    hybrid = (cfg.get("model") or {}).get("type") == "hybrid"
    text += ", stage 2 on original flows" if on_original and hybrid else ""
    border_aspect = ((cfg.get("preprocess") or {}).get("cubes") or {}).get("border_aspect", 0)
    return text + (", border crops as if whole" if border_aspect > 0 else "")


def published_score(folder: Path, score: str | None = None) -> dict | None:
    """One score of a published result (its main score by default); None if not published."""
    path = folder / "metrics.json"
    if not path.is_file():
        return None
    scores = read_json(path)["scores"]
    if score == PAPER_FUSION and score not in scores:
        # a run without S_a: its fused score without S_kl, or its fused score, is the paper's
        score = "fused_without_divergence" if "fused_without_divergence" in scores else "fused"
    if score == WITH_S_A:
        score = "fused" if PAPER_FUSION in scores else None
        if score is None:
            return None
    return scores.get(score or read_json(path)["main_score"])
