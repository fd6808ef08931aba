"""Scan -> per-point class probabilities with a trained network."""

from __future__ import annotations

import numpy as np
import torch

from cad2scan.geometry.voxel import voxelise
from cad2scan.model.sparse import make_sparse_input


def select_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when available; an unavailable CUDA request says what to do."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        from cad2scan.errors import ConfigError

        raise ConfigError(f"device {name!r} requested but this torch build has no usable CUDA "
                          f"(torch {torch.__version__}); install a CUDA build of torch==2.13.0 or use --device cpu")
    return device


@torch.no_grad()
def predict_probabilities(net: torch.nn.Module, coord: np.ndarray, voxel_size: float,
                          device: torch.device | str = "cpu") -> np.ndarray:
    """Class probabilities of every point.

    coord: (N, 3) float32, metres, z up. Returns (N, C) float32, rows sum to 1, in the
    order of ``coord`` (points sharing a voxel share its probabilities).
    """
    grid = voxelise(np.asarray(coord, dtype=np.float32), voxel_size)
    voxel_coords = grid.voxel_coords - grid.voxel_coords.min(axis=0)
    was_training = net.training
    net.eval()
    try:
        sparse = make_sparse_input([voxel_coords], None, device)
        logits = net(sparse)["logits"].float()
        probabilities = torch.softmax(logits, dim=1).cpu().numpy()
    finally:
        net.train(was_training)
    return probabilities[grid.point_to_voxel].astype(np.float32)
