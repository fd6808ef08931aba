"""Collate training segments into one sparse batch, keeping the point <-> voxel maps."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from cad2scan.geometry.voxel import voxelise


@dataclass
class Batch:
    """A voxelised batch of B segments.

    voxel_coords: list of B (M_b, 3) int32 voxel indices (one list entry per batch item).
    loss_voxel:   (S,) int64 index, into the concatenated voxels, of every point in the loss.
    loss_label:   (S,) int64 class index of those points.
    num_points:   total points in the batch (scene + synthetic).
    """

    voxel_coords: list[np.ndarray]
    loss_voxel: np.ndarray
    loss_label: np.ndarray
    num_points: int

    @property
    def num_voxels(self) -> int:
        return int(sum(len(c) for c in self.voxel_coords))

    def loss_tensors(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.from_numpy(self.loss_voxel).to(device, non_blocking=True),
                torch.from_numpy(self.loss_label).to(device, non_blocking=True))


def collate_segments(segments: list[dict], voxel_size: float) -> Batch:
    """Voxelise each segment (its own batch item) and keep the voxels of the points in the loss.

    segments: dicts with ``coord (P,3) float32`` metres, ``label (P,) int64`` (-1 = no label),
    ``is_synthetic (P,) bool`` and optionally ``loss_mask (P,) bool``. The points in the loss
    are ``loss_mask & (label >= 0)`` when a segment has a ``loss_mask`` (labelled scans,
    scene points used as negatives), else its synthetic points with a label >= 0. They enter
    ``loss_voxel`` / ``loss_label`` in segment order then point order; ``loss_voxel`` indexes
    the voxels of all segments concatenated in order (what ``make_sparse_input`` builds).
    """
    if not segments:
        raise ValueError("collate_segments needs at least one segment")
    voxel_coords, loss_voxel, loss_label = [], [], []
    offset, num_points = 0, 0
    for position, segment in enumerate(segments):
        coord = np.asarray(segment["coord"])
        label = np.asarray(segment["label"])
        is_synthetic = np.asarray(segment["is_synthetic"], dtype=bool)
        in_loss = np.asarray(segment["loss_mask"], dtype=bool) if "loss_mask" in segment else is_synthetic
        if label.shape != (len(coord),) or is_synthetic.shape != (len(coord),) or in_loss.shape != (len(coord),):
            raise ValueError(f"segment {position}: label {label.shape}, is_synthetic {is_synthetic.shape} and "
                             f"loss_mask {in_loss.shape} must be ({len(coord)},) like coord")
        grid = voxelise(coord, voxel_size)
        in_loss = in_loss & (label >= 0)
        voxel_coords.append(grid.voxel_coords.astype(np.int32))
        loss_voxel.append(grid.point_to_voxel[in_loss] + offset)
        loss_label.append(label[in_loss])
        offset += len(grid.voxel_coords)
        num_points += len(coord)
    return Batch(voxel_coords, np.concatenate(loss_voxel).astype(np.int64),
                 np.concatenate(loss_label).astype(np.int64), num_points)
