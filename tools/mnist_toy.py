"""Figure 4 of the paper: six ML-MemAE-SC variants trained on one MNIST digit.

Each variant reconstructs images of the normal digit; the per-image reconstruction error scores
anomalies (every other digit). Writes a table (AUROC per variant) and a figure of reconstructions.

    python mnist_toy.py --cfg cfgs/mnist.yaml     # the entry script; this module is its library
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from datasets.mnist import load_mnist_split, to_tensor
from models import VARIANTS, build_memae, memae_loss
from utils.config import save_config
from utils.io import write_json
from utils.misc import get_logger, resolve_device, seed_everything

log = get_logger()


@dataclass(frozen=True)
class ToyTraining:
    """What training a variant reads from the config: the seed, the ML-MemAE-SC settings
    (`model.memae`; each variant sets its memories and skips), the `mnist` section's epochs,
    batch and learning rate, and the stage-1 loss weights."""

    seed: int
    memae: dict
    num_epochs: int
    batch_size: int
    lr: float
    lambda_recon: float
    lambda_ent: float

    @classmethod
    def from_config(cls, cfg) -> ToyTraining:
        return cls(
            seed=int(cfg.seed),
            memae=dict(cfg.model.memae),
            num_epochs=int(cfg.mnist.num_epochs),
            batch_size=int(cfg.mnist.batch_size),
            lr=float(cfg.mnist.lr),
            lambda_recon=float(cfg.loss.lambda_recon),
            lambda_ent=float(cfg.loss.lambda_ent),
        )


def train_variant(
    settings: ToyTraining, variant: str, train_images: torch.Tensor, device
) -> torch.nn.Module:
    """Train one variant on the normal digit with the stage-1 losses."""
    seed_everything(settings.seed)
    mem_usage, skip_ops = VARIANTS[variant]
    model = build_memae(dict(settings.memae, mem_usage=mem_usage, skip_ops=skip_ops)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    generator = torch.Generator().manual_seed(settings.seed)
    model.train()
    for _ in range(settings.num_epochs):
        order = torch.randperm(len(train_images), generator=generator)
        for start in range(0, len(order), settings.batch_size):
            batch = train_images[order[start : start + settings.batch_size]].to(device)
            out = model(batch)
            losses = memae_loss(
                out["recon"], batch, out["att_weights"], settings.lambda_recon, settings.lambda_ent
            )
            optimizer.zero_grad(set_to_none=True)
            losses["total"].backward()
            optimizer.step()
    return model.eval()


@torch.inference_mode()
def reconstruct(model: torch.nn.Module, images: torch.Tensor, device, batch_size: int = 256):
    """Reconstructions [N,1,32,32] and per-image squared error [N]."""
    recons = [
        model(images[s : s + batch_size].to(device))["recon"].cpu()
        for s in range(0, len(images), batch_size)
    ]
    recon = torch.cat(recons)
    return recon, ((recon - images) ** 2).flatten(1).sum(1)


def save_figure(path: Path, examples: torch.Tensor, recons: dict[str, torch.Tensor]) -> None:
    """Rows: inputs, then one row of reconstructions per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [("input", examples)] + [(f"({v})", r) for v, r in recons.items()]
    cols = len(examples)
    fig, axes = plt.subplots(len(rows), cols, figsize=(cols * 0.9, len(rows) * 0.95))
    for r, (name, images) in enumerate(rows):
        for c in range(cols):
            ax = axes[r, c]
            ax.imshow(images[c, 0].clamp(0, 1).numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name, rotation=0, labelpad=18)
    fig.suptitle("left: normal digit, right: anomalies", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def pick_examples(labels: np.ndarray, per_class: int = 4) -> np.ndarray:
    """Indices of the first `per_class` normal images and the first `2 * per_class` anomalies."""
    normal = np.flatnonzero(labels == 0)[:per_class]
    abnormal = np.flatnonzero(labels == 1)[: 2 * per_class]
    return np.concatenate([normal, abnormal])


def run(cfg) -> dict:
    """Train and score every variant of `mnist.variants`; writes metrics.json and figure4.png."""
    device = resolve_device(cfg.device)
    out_dir = Path(cfg.run_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out_dir / "config.yaml")
    split = load_mnist_split(cfg.mnist.root, cfg.mnist.normal_digit, cfg.mnist.train_fraction)
    train_images, test_images = to_tensor(split["train_images"]), to_tensor(split["test_images"])
    labels = split["test_labels"]
    examples = pick_examples(labels)
    settings = ToyTraining.from_config(cfg)
    table, recons = {}, {}
    for variant in cfg.mnist.variants:
        if variant not in VARIANTS:
            raise ValueError(
                f"config key 'mnist.variants': unknown {variant!r}; choices {sorted(VARIANTS)}"
            )
        start = time.time()
        model = train_variant(settings, variant, train_images, device)
        recon, error = reconstruct(model, test_images, device)
        auroc = float(roc_auc_score(labels, error.numpy()))
        table[variant] = {"auroc": auroc, "seconds": round(time.time() - start, 1)}
        recons[variant] = recon[examples]
        log.info(f"variant ({variant}): AUROC {100 * auroc:.2f}%  ({table[variant]['seconds']} s)")
    write_json(out_dir / "metrics.json", table)
    save_figure(out_dir / "figure4.png", test_images[examples], recons)
    return table
