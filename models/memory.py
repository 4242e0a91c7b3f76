"""Memory module of ML-MemAE-SC (docs/method.md §3): a slot is a whole flattened feature map."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

SHRINK_EPS = 1e-12  # keeps the hard shrinkage finite when a weight equals the threshold


def hard_shrink(weights: torch.Tensor, threshold: float) -> torch.Tensor:
    """ReLU-based hard shrinkage: weights <= threshold become 0, the rest keep (almost) their value.

    The smooth form ReLU(w - t) * w / (|w - t| + eps) lets gradients through the kept entries.
    """
    shifted = weights - threshold
    return F.relu(shifted) * weights / (shifted.abs() + SHRINK_EPS)


class Memory(nn.Module):
    """A learned matrix M [num_slots, slot_dim] read by dot-product attention.

    Addressing for queries z [B, C]: w = softmax(z M^T) (one matmul), hard shrinkage with
    `shrink_thres`, L1 renormalisation; the read-out is w M [B, C]. No bias.
    """

    def __init__(
        self, num_slots: int, slot_dim: int, shrink_thres: float = 5e-4, sparse_read: bool = True
    ) -> None:
        super().__init__()
        self.num_slots = num_slots
        self.slot_dim = slot_dim
        self.shrink_thres = shrink_thres
        self.sparse_read = sparse_read  # see _read; False forces the dense product (benchmarks)
        self.slots = nn.Parameter(torch.empty(num_slots, slot_dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.slot_dim)
        nn.init.uniform_(self.slots, -bound, bound)

    def forward(self, query: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """query [B, slot_dim] -> (read-out [B, slot_dim], addressing weights [B, num_slots])."""
        slots = self.slots
        device = query.device.type
        if torch.is_autocast_enabled(device):
            # one cast for both products (autocast would cast slots and slots.t() separately)
            slots = slots.to(torch.get_autocast_dtype(device))
        logits = F.linear(query, slots)  # [B, C] x [C, N]
        # Softmax and shrinkage in float32: under fp16 autocast eps=1e-12 would underflow to 0.
        weights = torch.softmax(logits.float(), dim=1)
        if self.shrink_thres > 0:
            weights = F.normalize(hard_shrink(weights, self.shrink_thres), p=1, dim=1)
        return self._read(weights.to(slots.dtype), slots), weights

    def _read(self, weights: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        """w M [B, C]. Without gradients, only the slots that some query uses are read: the
        others have weight exactly 0 after the shrinkage, so the sum is the same (up to float
        summation order). A trained Ped2 model uses 1 slot per query at levels 2 and 3 and
        about 36 of 2,000 at level 1, so this skips the read-out products: about a fifth of
        the ML-MemAE-SC's multiply-adds."""
        needs_grad = torch.is_grad_enabled() and (weights.requires_grad or slots.requires_grad)
        if self.sparse_read and not needs_grad and self.shrink_thres > 0:
            used = weights.any(dim=0).nonzero().squeeze(1)
            if used.numel() <= self.num_slots // 2:
                return F.linear(weights[:, used], slots[used].t())
        return F.linear(weights, slots.t())  # [B, N] x [N, C]

    def extra_repr(self) -> str:
        return f"num_slots={self.num_slots}, slot_dim={self.slot_dim}, shrink={self.shrink_thres}"
