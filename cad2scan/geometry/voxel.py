"""Voxelisation: points -> integer voxel indices, and the maps back.

A voxel's integer index is ``floor(point / voxel_size)`` per axis (floor, not truncation,
so ``-0.01 m`` at 5 cm falls in voxel ``-1``). Voxels are listed in a deterministic order:
sorted lexicographically by ``(x, y, z)`` index, which is also the order the sparse
backbone's coordinate hashing sorts them in (see ``cad2scan.model.sparse``).

The point -> voxel map (``point_to_voxel``) is kept so that per-voxel predictions can be
brought back to every point (``devoxelise``) without recomputing anything.

``voxelise`` works on numpy arrays (the data pipeline); ``devoxelise``, ``voxel_mean`` and
``voxel_majority_label`` accept numpy arrays or torch tensors and return the same kind.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class VoxelGrid:
    """The occupied voxels of a point set.

    voxel_coords: (M, 3) int32, integer voxel indices floor(points / voxel_size),
        sorted lexicographically by (x, y, z), unique.
    point_to_voxel: (N,) int64, row of ``voxel_coords`` that each point falls in.
    voxel_size: edge length of a voxel, metres.
    """

    voxel_coords: np.ndarray
    point_to_voxel: np.ndarray
    voxel_size: float

    @property
    def num_voxels(self) -> int:
        return int(self.voxel_coords.shape[0])


def voxel_indices(points: np.ndarray, voxel_size: float) -> np.ndarray:
    """Integer voxel index of each point: (N, 3) float -> (N, 3) int64, floor(points / size)."""
    if voxel_size <= 0:
        raise ValueError(f"voxel_size must be positive, got {voxel_size}")
    return np.floor(np.asarray(points, dtype=np.float64) / float(voxel_size)).astype(np.int64)


def voxelise(points: np.ndarray, voxel_size: float) -> VoxelGrid:
    """Group points into voxels of edge ``voxel_size``.

    points: (N, 3) float, metres. Returns a VoxelGrid whose voxels are sorted by (x, y, z)
    index; N = 0 gives an empty grid.
    """
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must have shape (N, 3), got {points.shape}")
    if not np.all(np.isfinite(points)):
        raise ValueError("points contain NaN or infinite values")
    idx = voxel_indices(points, voxel_size)
    if idx.shape[0] == 0:
        return VoxelGrid(np.zeros((0, 3), np.int32), np.zeros(0, np.int64), float(voxel_size))
    lo = idx.min(axis=0)
    span = idx.max(axis=0) - lo + 1
    if float(span[0]) * float(span[1]) * float(span[2]) < 2.0**62:
        # Pack (x, y, z) into one int64 whose order is the lexicographic order.
        shifted = idx - lo
        keys = (shifted[:, 0] * span[1] + shifted[:, 1]) * span[2] + shifted[:, 2]
        unique_keys, inverse = np.unique(keys, return_inverse=True)
        z = unique_keys % span[2]
        y = (unique_keys // span[2]) % span[1]
        x = unique_keys // (span[2] * span[1])
        coords = np.stack([x, y, z], axis=1) + lo
    else:  # absurdly large extent: fall back to row-wise unique (same order)
        coords, inverse = np.unique(idx, axis=0, return_inverse=True)
    if np.abs(coords).max() >= 2**31:
        raise ValueError("voxel indices overflow int32: voxel_size too small for these coordinates")
    return VoxelGrid(
        voxel_coords=coords.astype(np.int32),
        point_to_voxel=inverse.reshape(-1).astype(np.int64),
        voxel_size=float(voxel_size),
    )


def _point_to_voxel(grid_or_map):
    return grid_or_map.point_to_voxel if isinstance(grid_or_map, VoxelGrid) else grid_or_map


def devoxelise(voxel_values, grid_or_point_to_voxel):
    """Bring per-voxel values back to the points.

    voxel_values: (M, ...) numpy array or torch tensor.
    grid_or_point_to_voxel: a VoxelGrid or its (N,) int point_to_voxel map (numpy or torch).
    Returns (N, ...) of the same kind as voxel_values.
    """
    index = _point_to_voxel(grid_or_point_to_voxel)
    if isinstance(voxel_values, torch.Tensor):
        index = torch.as_tensor(index, dtype=torch.long, device=voxel_values.device)
        return voxel_values.index_select(0, index)
    if isinstance(index, torch.Tensor):
        index = index.detach().cpu().numpy()
    return np.asarray(voxel_values)[np.asarray(index, dtype=np.int64)]


def voxel_mean(values, point_to_voxel, num_voxels: int):
    """Mean of the point values in each voxel.

    values: (N, C) or (N,) float, numpy or torch; point_to_voxel: (N,) int.
    Returns (num_voxels, C) (or (num_voxels,)) of the same kind; empty voxels get 0.
    """
    if isinstance(values, torch.Tensor):
        index = torch.as_tensor(point_to_voxel, dtype=torch.long, device=values.device)
        sums = values.new_zeros((num_voxels,) + tuple(values.shape[1:]))
        sums.index_add_(0, index, values)
        counts = torch.bincount(index, minlength=num_voxels).clamp_(min=1).to(values.dtype)
        return sums / counts.reshape((-1,) + (1,) * (values.dim() - 1))
    values = np.asarray(values)
    index = np.asarray(point_to_voxel, dtype=np.int64)
    out_dtype = values.dtype if np.issubdtype(values.dtype, np.floating) else np.float64
    sums = np.zeros((num_voxels,) + values.shape[1:], dtype=np.float64)
    np.add.at(sums, index, values)
    counts = np.maximum(np.bincount(index, minlength=num_voxels), 1)
    return (sums / counts.reshape((-1,) + (1,) * (values.ndim - 1))).astype(out_dtype)


def voxel_majority_label(
    labels, point_to_voxel, num_voxels: int, ignore_index: int = -1, empty_label: int = -1
):
    """Most frequent label among the points of each voxel.

    labels: (N,) int (numpy or torch); labels equal to ``ignore_index`` (and any negative
    label) do not vote. Ties go to the smallest label. A voxel with no voting point gets
    ``empty_label`` (-1). Returns (num_voxels,) int64 of the same kind as ``labels``.
    """
    if isinstance(labels, torch.Tensor):
        index = torch.as_tensor(point_to_voxel, dtype=torch.long, device=labels.device)
        labels64 = labels.long()
        keep = (labels64 != ignore_index) & (labels64 >= 0)
        out = torch.full((num_voxels,), empty_label, dtype=torch.long, device=labels.device)
        if not bool(keep.any()):
            return out
        lab, vox = labels64[keep], index[keep]
        n_labels = int(lab.max()) + 1
        pairs, counts = torch.unique(vox * n_labels + lab, return_counts=True)  # sorted by (voxel, label)
        order = torch.sort(-counts, stable=True).indices
        order = order[torch.sort(pairs[order] // n_labels, stable=True).indices]
        pairs = pairs[order]  # by voxel, then count descending, then label ascending
        vox_sorted = pairs // n_labels
        first = torch.ones_like(vox_sorted, dtype=torch.bool)
        first[1:] = vox_sorted[1:] != vox_sorted[:-1]
        out[vox_sorted[first]] = pairs[first] % n_labels
        return out
    labels64 = np.asarray(labels).astype(np.int64)
    index = np.asarray(point_to_voxel, dtype=np.int64)
    keep = (labels64 != ignore_index) & (labels64 >= 0)
    out = np.full(num_voxels, empty_label, dtype=np.int64)
    if not keep.any():
        return out
    lab, vox = labels64[keep], index[keep]
    n_labels = int(lab.max()) + 1
    pairs, counts = np.unique(vox * n_labels + lab, return_counts=True)
    order = np.lexsort((pairs % n_labels, -counts, pairs // n_labels))
    pairs = pairs[order]
    vox_sorted = pairs // n_labels
    first = np.ones(len(pairs), dtype=bool)
    first[1:] = vox_sorted[1:] != vox_sorted[:-1]
    out[vox_sorted[first]] = pairs[first] % n_labels
    return out
