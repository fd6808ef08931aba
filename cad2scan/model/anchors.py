"""Metric-space classification with class anchors, and its loss (paper eq. 3).

Each class ``c`` (the C-1 target classes and background) has a learnable anchor
``h_c`` in feature space; the logit of a point is the inner product ``<x_hat, h_c>``.
Only synthetic points (points of the CAD models mixed into scans: targets, and
negatives labelled background) carry labels, so only they enter the loss.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class AnchorClassifier(nn.Module):
    """Logits = inner products of point features with one anchor per class.

    Args:
        feature_dim: D.
        num_classes: C, all classes including background.

    Parameters:
        anchors: (C, D), initialised N(0, 1/D); no bias.
    """

    def __init__(self, feature_dim: int, num_classes: int):
        super().__init__()
        if feature_dim < 1 or num_classes < 1:
            raise ValueError(f"feature_dim and num_classes must be positive, got {feature_dim}, {num_classes}")
        self.feature_dim = feature_dim
        self.num_classes = num_classes
        self.anchors = nn.Parameter(torch.randn(num_classes, feature_dim) / math.sqrt(feature_dim))

    def extra_repr(self) -> str:
        return f"feature_dim={self.feature_dim}, num_classes={self.num_classes}"

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Args: features (N, D) float. Returns: logits (N, C), dtype of ``features``
        (or the autocast dtype)."""
        if features.ndim != 2 or features.shape[1] != self.feature_dim:
            raise ValueError(f"features must be (N, {self.feature_dim}), got {tuple(features.shape)}")
        return F.linear(features, self.anchors.to(features.dtype))

    def probabilities(self, features: torch.Tensor) -> torch.Tensor:
        """Args: features (N, D) float. Returns: (N, C) softmax over classes, float32
        (float64 for float64 input); rows sum to 1."""
        logits = self.forward(features)
        return torch.softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=1)


def anchor_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    synthetic_mask: torch.Tensor,
    ignore_index: int = -1,
) -> torch.Tensor:
    """Mean cross-entropy over the synthetic points (paper eq. 3).

    Args:
        logits: (N, C) float, from :class:`AnchorClassifier`.
        labels: (N,) int64 class ids; scene points may hold anything (they are unused);
            synthetic points labelled ``ignore_index`` are skipped too.
        synthetic_mask: (N,) bool, True for points of mixed-in CAD models (targets and
            background-labelled negatives).

    Returns:
        Scalar tensor, computed in float32 (float64 for float64 logits). When no synthetic
        point is present it is ``logits.sum() * 0``: zero, still attached to the graph.
    """
    if logits.ndim != 2:
        raise ValueError(f"logits must be (N, C), got {tuple(logits.shape)}")
    n = logits.shape[0]
    if labels.shape != (n,) or synthetic_mask.shape != (n,):
        raise ValueError(
            f"labels {tuple(labels.shape)} and synthetic_mask {tuple(synthetic_mask.shape)} must be ({n},)"
        )
    selected = synthetic_mask.to(torch.bool) & (labels != ignore_index)
    if not bool(selected.any()):
        return logits.sum() * 0
    chosen = logits[selected]
    chosen = chosen.to(torch.promote_types(chosen.dtype, torch.float32))
    return F.cross_entropy(chosen, labels[selected].long())
