"""Figures: flow colour coding, ROC curve, per-video anomaly curves, object grids, TB grids."""

from __future__ import annotations

import os
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from utils.io import atomic_write  # noqa: E402


def flow_to_rgb(flow: np.ndarray, max_magnitude: float | None = None) -> np.ndarray:
    """Colour-code flow [..., H, W, 2] (pixels): hue = direction, brightness = magnitude.

    max_magnitude: the magnitude shown at full brightness (default: the largest in `flow`).
    Returns float RGB in [0, 1] with shape [..., H, W, 3].
    """
    u, v = flow[..., 0], flow[..., 1]
    magnitude = np.sqrt(u**2 + v**2)
    scale = max_magnitude if max_magnitude is not None else float(magnitude.max())
    hue = (np.arctan2(-v, -u) / np.pi + 1.0) / 2.0  # [0, 1]
    value = np.clip(magnitude / max(scale, 1e-6), 0.0, 1.0)
    return matplotlib.colors.hsv_to_rgb(np.stack([hue, np.ones_like(hue), value], axis=-1))


def _save(fig, path: str | os.PathLike) -> None:
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)


def plot_roc(curves: dict[str, tuple[np.ndarray, np.ndarray, float]], path) -> None:
    """curves: label -> (false positive rates, true positive rates, AUROC)."""
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    for label, (fpr, tpr, auc) in curves.items():
        ax.plot(fpr, tpr, label=f"{label} (AUROC {100 * auc:.2f}%)")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("frame-level ROC (all labelled videos)")
    fig.tight_layout()
    _save(fig, path)


def _intervals(labels: np.ndarray) -> list[tuple[int, int]]:
    """[first, last] frame indices of every run of 1s."""
    padded = np.concatenate([[0], labels.astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2])]


def plot_anomaly_curve(
    name: str,
    raw: np.ndarray,
    smoothed: np.ndarray,
    labels: np.ndarray | None,
    path,
    auroc: float | None = None,
) -> None:
    """Frame scores of one video over time, abnormal intervals shaded (like Figures 5 and 10)."""
    fig, ax = plt.subplots(figsize=(8, 2.6))
    frames = np.arange(len(raw))
    if labels is not None:
        for k, (first, last) in enumerate(_intervals(np.asarray(labels))):
            label = "labelled abnormal" if k == 0 else None  # one legend entry
            ax.axvspan(first - 0.5, last + 0.5, color="tab:red", alpha=0.18, lw=0, label=label)
    ax.plot(frames, raw, color="tab:blue", alpha=0.35, linewidth=0.8, label="frame score")
    ax.plot(frames, smoothed, color="tab:blue", linewidth=1.6, label="smoothed")
    title = f"video {name}"
    if labels is None:
        title += " (no labels)"
    elif auroc is not None:
        title += f"  AUROC {100 * auroc:.2f}%"
    ax.set(title=title, xlabel="frame", ylabel="anomaly score", xlim=(0, max(len(raw) - 1, 1)))
    ax.legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    _save(fig, path)


MIN_FLOW_SCALE = 0.5  # pixels per frame: the smallest flow magnitude shown at full colour


def plot_object_grid(rows: Sequence[dict], title: str, path) -> None:
    """One row per object: true flow, reconstructed flow, true frame, predicted frame, error map.

    Each row: `flow` and `flow_recon` [32, 32, 2] (the last flow; recon may be None),
    `frame` and `frame_pred` [32, 32, 3] in [0, 1] (pred may be None), `caption` text.
    Both flows of a row share one colour scale, the larger of their peak magnitudes and
    MIN_FLOW_SCALE: the lowest-scoring objects barely move, and scaling their flows to their own
    peak of a few hundredths of a pixel showed the decoder's faint high-frequency residue (well
    under a tenth of a pixel) as a saturated checkerboard. The scale is printed in the caption.
    The error map is the per-pixel squared frame error summed over colours (or the flow error
    when there is no frame prediction).
    """
    columns = ["true flow", "recon. flow", "true frame", "pred. frame", "error map"]
    fig, axes = plt.subplots(len(rows), 5, figsize=(9, 1.7 * len(rows) + 0.4), squeeze=False)
    for r, row in enumerate(rows):
        peaks = [
            np.sqrt((f**2).sum(-1)).max() for f in (row["flow"], row["flow_recon"]) if f is not None
        ]
        scale = float(max(*peaks, MIN_FLOW_SCALE))
        images = [flow_to_rgb(row["flow"], scale), None, row["frame"], row["frame_pred"], None]
        if row["flow_recon"] is not None:
            images[1] = flow_to_rgb(row["flow_recon"], scale)
        if row["frame_pred"] is not None:
            images[4] = ((row["frame_pred"] - row["frame"]) ** 2).sum(-1)
        elif row["flow_recon"] is not None:
            images[4] = ((row["flow_recon"] - row["flow"]) ** 2).sum(-1)
        for c, image in enumerate(images):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if image is None:
                ax.text(0.5, 0.5, "n/a", ha="center", va="center", transform=ax.transAxes)
            elif image.ndim == 2:
                ax.imshow(image, cmap="inferno")
            else:
                ax.imshow(np.clip(image, 0, 1))
            if r == 0:
                ax.set_title(columns[c], fontsize=8)
        caption = f"{row['caption']}\nflow scale {scale:.2g} px"
        axes[r, 0].set_ylabel(caption, fontsize=8, rotation=0, ha="right", va="center")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    _save(fig, path)


def tensorboard_grid(
    flows: torch.Tensor,
    flow_recon: torch.Tensor | None = None,
    frames: torch.Tensor | None = None,
    frame_pred: torch.Tensor | None = None,
    max_items: int = 8,
) -> torch.Tensor:
    """An image [3, H, W] for TensorBoard: one column per object, rows = the given tensors.

    flows / flow_recon: [B, 2, 32, 32] (one flow per object); frames / frame_pred: [B, 3, 32, 32].
    """
    n = min(max_items, flows.shape[0])
    flow = flows[:n].detach().float().permute(0, 2, 3, 1).cpu().numpy()
    scale = float(np.sqrt((flow**2).sum(-1)).max())
    rows = [flow_to_rgb(flow, scale)]
    if flow_recon is not None:
        recon = flow_recon[:n].detach().float().permute(0, 2, 3, 1).cpu().numpy()
        rows.append(flow_to_rgb(recon, scale))
    for images in (frames, frame_pred):
        if images is not None:
            rows.append(images[:n].detach().float().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy())
    grid = np.concatenate([np.concatenate(list(row), axis=1) for row in rows], axis=0)
    return torch.from_numpy(grid).permute(2, 0, 1).float()


def plot_frames_with_boxes(panels: Sequence[dict], path, columns: int = 2) -> None:
    """One panel per dict: `frame` RGB uint8 [H, W, 3], `boxes` [K, 4], `scores` [K], `title`.
    Boxes scoring above the panel's `threshold` are red, the others green; each is labelled
    with its score."""
    rows = -(-len(panels) // columns)
    height, width = panels[0]["frame"].shape[:2]
    fig, axes = plt.subplots(rows, columns, figsize=(columns * width / 60, rows * height / 60))
    for ax, panel in zip(np.atleast_1d(axes).ravel(), panels):
        ax.imshow(panel["frame"])
        for (x1, y1, x2, y2), score in zip(panel["boxes"], panel["scores"]):
            colour = "red" if score > panel["threshold"] else "lime"
            ax.add_patch(
                plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, color=colour, linewidth=1)
            )
            ax.text(x1, y1 - 2, f"{score:.1f}", color="yellow", fontsize=6)
        ax.set_title(panel["title"], fontsize=8)
    for ax in np.atleast_1d(axes).ravel():
        ax.axis("off")
    fig.tight_layout()
    _save(fig, path)
