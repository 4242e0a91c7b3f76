"""ML-MemAE-SC: multi-level memory-augmented flow autoencoder with skip connections (docs/method.md
§3).

Levels: 1 = f@32x32 (x0), 2 = 2f@16x16 (x1), 3 = 4f@8x8 (x2), bottleneck = 8f@4x4 (x3).
`mem_usage[k-1]` puts a memory at decoder level k: level 3 reads the bottleneck x3, level 2 the
output of the first up-block (4f@8x8), level 1 the output of the second (2f@16x16).
`skip_ops[k-1]` says whether up-block k concatenates its encoder feature map (x2, x1, x0 for
k = 3, 2, 1). The paper's model uses memories at all three levels and skips at levels 2 and 3;
the outermost skip would let the input bypass every memory.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from models.memory import Memory

INPUT_SIZE = 32  # memory slots are whole feature maps, so the input size is fixed
SKIP_OPS = ("none", "concat")

# Figure 4 (MNIST) and Table 2 variants as (mem_usage, skip_ops), levels ordered 1, 2, 3.
VARIANTS: dict[str, tuple[tuple[bool, bool, bool], tuple[str, str, str]]] = {
    "a": ((False, False, True), ("none", "none", "none")),  # MemAE: bottleneck memory only
    "b": ((True, True, True), ("none", "none", "none")),  # memories at every level, no skips
    "c": ((False, False, True), ("concat", "concat", "concat")),  # all skips, incl. outermost
    "d": ((True, True, True), ("concat", "concat", "concat")),  # (b) + (c)
    "e": ((False, True, True), ("none", "none", "concat")),  # + a memory/skip pair at level 2
    "f": ((True, True, True), ("none", "concat", "concat")),  # ML-MemAE-SC, three memories
}


class ConvBlock(nn.Sequential):
    """3x3 conv (with bias) -> BatchNorm -> ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class DoubleConv(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            ConvBlock(in_channels, out_channels), ConvBlock(out_channels, out_channels)
        )


class DownBlock(nn.Sequential):
    """Stride-2 3x3 conv (no norm) then a double conv: halves the resolution."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1),
            DoubleConv(out_channels, out_channels),
        )


class UpBlock(nn.Module):
    """Transposed conv to half the channels at twice the size, optional concat, double conv."""

    def __init__(self, in_channels: int, out_channels: int, skip: bool) -> None:
        super().__init__()
        self.skip = skip
        self.up = nn.ConvTranspose2d(
            in_channels, in_channels // 2, 3, stride=2, padding=1, output_padding=1
        )
        conv_in = in_channels if skip else in_channels // 2
        self.conv = DoubleConv(conv_in, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        x = self.up(x)
        if self.skip:
            x = torch.cat([skip, x], dim=1)
        return self.conv(x)


class MLMemAESC(nn.Module):
    """Flow autoencoder with memories and skips configurable per level.

    forward(x [B, C, 32, 32]) -> {"recon": [B, C, 32, 32] (no output activation),
    "att_weights": list of [B, num_slots], one per memory, bottleneck first}.
    """

    def __init__(
        self,
        in_channels: int = 2,
        feature_root: int = 32,
        num_slots: int = 2000,
        shrink_thres: float = 5e-4,
        mem_usage: Sequence[bool] = (True, True, True),
        skip_ops: Sequence[str] = ("none", "concat", "concat"),
    ) -> None:
        super().__init__()
        mem_usage, skip_ops = tuple(bool(m) for m in mem_usage), tuple(skip_ops)
        if len(mem_usage) != 3:
            raise ValueError(f"mem_usage needs 3 entries (levels 1, 2, 3), got {mem_usage}")
        if len(skip_ops) != 3 or any(op not in SKIP_OPS for op in skip_ops):
            raise ValueError(f"skip_ops needs 3 entries from {SKIP_OPS}, got {skip_ops}")
        self.in_channels = in_channels
        self.mem_usage = mem_usage
        self.skip_ops = skip_ops
        f = feature_root

        self.in_conv = DoubleConv(in_channels, f)
        self.down1 = DownBlock(f, 2 * f)
        self.down2 = DownBlock(2 * f, 4 * f)
        self.down3 = DownBlock(4 * f, 8 * f)

        # Slot size = channels x area of the map the memory reads (levels 1, 2, 3).
        slot_dims = {1: 2 * f * 16 * 16, 2: 4 * f * 8 * 8, 3: 8 * f * 4 * 4}
        self.memories = nn.ModuleDict(
            {
                f"level{k}": Memory(num_slots, slot_dims[k], shrink_thres)
                for k in (3, 2, 1)
                if mem_usage[k - 1]
            }
        )

        self.up3 = UpBlock(8 * f, 4 * f, skip=skip_ops[2] == "concat")
        self.up2 = UpBlock(4 * f, 2 * f, skip=skip_ops[1] == "concat")
        self.up1 = UpBlock(2 * f, f, skip=skip_ops[0] == "concat")
        self.out_conv = nn.Conv2d(f, in_channels, 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The authors' stage-1 init: Kaiming-normal convs (fan-in, a = 0.1), BatchNorm scales
        N(1, 0.02); transposed convs, conv biases and memories keep their defaults."""
        for module in self.modules():
            if type(module) is nn.Conv2d:
                nn.init.kaiming_normal_(module.weight, a=0.1, mode="fan_in")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.normal_(module.weight, 1.0, 0.02)
                nn.init.zeros_(module.bias)

    def _read_memory(self, level: int, x: torch.Tensor, att: list) -> torch.Tensor:
        """Replace the map x by its memory read-out when level has a memory."""
        key = f"level{level}"
        if key not in self.memories:
            return x
        readout, weights = self.memories[key](x.flatten(1))
        att.append(weights)
        return readout.view_as(x)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        if x.dim() != 4 or x.shape[1:] != (self.in_channels, INPUT_SIZE, INPUT_SIZE):
            raise ValueError(
                f"MLMemAESC expects [B, {self.in_channels}, {INPUT_SIZE}, {INPUT_SIZE}], "
                f"got {list(x.shape)}"
            )
        att: list[torch.Tensor] = []
        x0 = self.in_conv(x)
        x1 = self.down1(x0)
        x2 = self.down2(x1)
        x3 = self.down3(x2)

        h = self.up3(self._read_memory(3, x3, att), x2)
        h = self.up2(self._read_memory(2, h, att), x1)
        h = self.up1(self._read_memory(1, h, att), x0)
        return {"recon": self.out_conv(h), "att_weights": att}
