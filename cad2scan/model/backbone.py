"""MinkUNet14: the sparse U-Net backbone (layout of the MinkowskiEngine examples' MinkUNet14).

Encoder: conv0 (kernel 5) at stride 1, then four stages that each halve the resolution
(kernel-2 stride-2 conv + BN + ReLU) and apply BasicBlocks. Decoder: four stages that each
double it (kernel-2 stride-2 transposed conv + BN + ReLU), concatenate the encoder features
of that stride and apply BasicBlocks; a final 1x1 conv gives ``out_channels`` features on
exactly the input voxels, in the input order. All sparse ops come from ``model.sparse``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from cad2scan.errors import ConfigError
from cad2scan.model.sparse import (
    SparseBatchNorm,
    SparseConv3d,
    SparseConvTranspose3d,
    SparseReLU,
    SparseTensor,
    bf16_is_fast,
    set_compute_dtype,
    sparse_cat,
)


class BasicBlock(nn.Module):
    """Two 3x3x3 submanifold convs with BN, a residual (1x1 conv + BN when channels change)."""

    def __init__(self, in_channels: int, channels: int):
        super().__init__()
        self.conv1 = SparseConv3d(in_channels, channels, 3)
        self.bn1 = SparseBatchNorm(channels)
        self.conv2 = SparseConv3d(channels, channels, 3)
        self.bn2 = SparseBatchNorm(channels)
        self.relu = SparseReLU(inplace=True)
        self.downsample = None
        if in_channels != channels:
            self.downsample = nn.Sequential(SparseConv3d(in_channels, channels, 1), SparseBatchNorm(channels))

    def forward(self, x: SparseTensor) -> SparseTensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(out.replace_feats(out.feats + residual.feats))


def _stage(in_channels: int, channels: int, blocks: int) -> nn.Sequential:
    return nn.Sequential(*[BasicBlock(in_channels if i == 0 else channels, channels) for i in range(blocks)])


def _conv_bn_relu(conv: nn.Module, channels: int) -> nn.Sequential:
    return nn.Sequential(conv, SparseBatchNorm(channels), SparseReLU(inplace=True))


class MinkUNet14(nn.Module):
    """Sparse U-Net, 4 down / 4 up stages, BasicBlocks.

    forward(x: SparseTensor at stride 1, (N, in_channels) feats)
        -> SparseTensor at stride 1, (N, out_channels) feats, same coords and order as x.
    ``width_scale`` multiplies every channel count except ``out_channels``.
    ``compute_dtype``: dtype of the sparse convs' gathers and matmuls (None: the input's,
    float32); torch.bfloat16 halves the CPU time on CPUs with AVX512-BF16/AMX, outputs and
    gradients stay float32 (see ``model.sparse.set_compute_dtype``).
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 96,
        init_dim: int = 32,
        planes: Sequence[int] = (32, 64, 128, 256, 256, 128, 96, 96),
        layers: Sequence[int] = (1, 1, 1, 1, 1, 1, 1, 1),
        width_scale: float = 1.0,
        compute_dtype: torch.dtype | None = None,
    ):
        super().__init__()
        if len(planes) != 8 or len(layers) != 8:
            raise ValueError("planes and layers need 8 entries (4 encoder + 4 decoder stages)")
        if width_scale <= 0:
            raise ValueError(f"width_scale must be positive, got {width_scale}")
        scale = lambda c: max(1, int(round(c * width_scale)))  # noqa: E731
        init = scale(init_dim)
        p = [scale(c) for c in planes]
        self.in_channels, self.out_channels = in_channels, out_channels

        self.stem = _conv_bn_relu(SparseConv3d(in_channels, init, kernel_size=5), init)
        self.down = nn.ModuleList()
        self.encoder = nn.ModuleList()
        width = init
        skip_widths = [init]
        for i in range(4):
            self.down.append(_conv_bn_relu(SparseConv3d(width, width, kernel_size=2, stride=2), width))
            self.encoder.append(_stage(width, p[i], layers[i]))
            width = p[i]
            skip_widths.append(width)
        self.up = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for i in range(4):
            self.up.append(_conv_bn_relu(SparseConvTranspose3d(width, p[4 + i], kernel_size=2, stride=2), p[4 + i]))
            skip = skip_widths[3 - i]
            self.decoder.append(_stage(p[4 + i] + skip, p[4 + i], layers[4 + i]))
            width = p[4 + i]
        self.final = SparseConv3d(width, out_channels, kernel_size=1, bias=True)
        set_compute_dtype(self, compute_dtype)

    def forward(self, x: SparseTensor) -> SparseTensor:
        if x.stride != 1:
            raise ValueError(f"MinkUNet14 expects a stride-1 input, got stride {x.stride}")
        out = self.stem(x)
        skips = [out]
        for down, stage in zip(self.down, self.encoder):
            out = stage(down(out))
            skips.append(out)
        skips.pop()  # the stride-16 output is the decoder's input, not a skip
        for up, stage in zip(self.up, self.decoder):
            out = stage(sparse_cat(up(out), skips.pop()))
        return self.final(out)


@dataclass
class BackboneConfig:
    """name: "minkunet14"; width_scale multiplies the hidden widths (CPU demos use < 1);
    compute_dtype: "float32", "bfloat16" (sparse-conv matmuls in bf16, float32 outputs) or
    "auto" (bfloat16 where this machine's CPU multiplies bf16 natively, else float32)."""

    name: str = "minkunet14"
    in_channels: int = 1
    out_channels: int = 96
    width_scale: float = 1.0
    compute_dtype: str = "float32"


_COMPUTE_DTYPES = {"float32": None, "bfloat16": torch.bfloat16}


def resolve_compute_dtype(name: str) -> torch.dtype | None:
    """"float32" -> None, "bfloat16" -> torch.bfloat16, "auto" -> bf16 if ``bf16_is_fast()``."""
    if name == "auto":
        return torch.bfloat16 if bf16_is_fast("cpu") else None
    if name not in _COMPUTE_DTYPES:
        raise ConfigError(f"backbone.compute_dtype: {name!r} is not one of float32, bfloat16, auto")
    return _COMPUTE_DTYPES[name]


def build_backbone(cfg: BackboneConfig) -> nn.Module:
    """The backbone named by ``cfg.name`` (only "minkunet14" so far)."""
    if cfg.name.lower() == "minkunet14":
        if cfg.width_scale <= 0:
            raise ConfigError(f"backbone.width_scale must be positive, got {cfg.width_scale}")
        return MinkUNet14(
            cfg.in_channels,
            cfg.out_channels,
            width_scale=cfg.width_scale,
            compute_dtype=resolve_compute_dtype(cfg.compute_dtype),
        )
    raise ConfigError(f"backbone.name: unknown backbone {cfg.name!r} (known: 'minkunet14')")


def make_sparse_input(voxel_coords_list, feats_list=None, device=None) -> SparseTensor:
    """Batch voxelised scenes into one stride-1 SparseTensor.

    voxel_coords_list: list of (M_i, 3) int arrays/tensors, unique voxel indices per scene.
    feats_list: list of (M_i, C) float arrays/tensors, or None for a constant 1.0 feature.
    Returns coords (sum M_i, 4) int64 [batch, x, y, z] (scene i gets batch index i, rows in
    the given order) and feats (sum M_i, C) float32 on ``device``.
    """
    if len(voxel_coords_list) == 0:
        raise ValueError("make_sparse_input needs at least one scene")
    coords, feats = [], []
    for i, vc in enumerate(voxel_coords_list):
        vc = torch.as_tensor(np.asarray(vc) if not isinstance(vc, torch.Tensor) else vc).to(device, torch.long)
        if vc.dim() != 2 or vc.shape[1] != 3:
            raise ValueError(f"scene {i}: voxel coords must be (M, 3), got {tuple(vc.shape)}")
        coords.append(torch.cat([torch.full_like(vc[:, :1], i), vc], dim=1))
        if feats_list is None:
            feats.append(torch.ones(len(vc), 1, device=device))
        else:
            f = feats_list[i]
            f = torch.as_tensor(np.asarray(f) if not isinstance(f, torch.Tensor) else f).to(device, torch.float32)
            if f.dim() != 2 or f.shape[0] != len(vc):
                raise ValueError(f"scene {i}: feats must be ({len(vc)}, C), got {tuple(f.shape)}")
            feats.append(f)
    return SparseTensor(torch.cat(coords), torch.cat(feats))
