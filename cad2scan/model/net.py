"""The whole network: sparse U-Net backbone -> convex-hull feature alignment -> class anchors."""

from __future__ import annotations

import torch
from torch import nn

from cad2scan.model.anchors import AnchorClassifier
from cad2scan.model.backbone import build_backbone
from cad2scan.model.hull import ConvexHullAlignment


class RTLNet(nn.Module):
    """Referring-transfer-learning network.

    ``cfg`` is a ``cad2scan.config.ModelConfig``; ``num_classes`` = C-1 targets + background.
    With ``cfg.use_hull = False`` the anchors classify the backbone features directly (the
    paper's "PDA" row and the baseline). ``class_names`` (C names, background last) are
    needed by heads that depend on what the classes are called (text anchors).
    """

    def __init__(self, cfg, num_classes: int, class_names: list[str] | None = None):
        super().__init__()
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class names for {num_classes} classes")
        self.class_names = list(class_names) if class_names is not None else None
        self.backbone = build_backbone(cfg.backbone)
        feature_dim = cfg.backbone.out_channels
        self.hull = ConvexHullAlignment(feature_dim, cfg.hull) if cfg.use_hull else None
        self.anchors = AnchorClassifier(feature_dim, num_classes)

    def forward(self, sparse_input) -> dict[str, torch.Tensor]:
        """sparse_input: SparseTensor of M voxels (coords [b,x,y,z], feats (M,1)).

        Returns per voxel, in input order: ``features (M,D)``, ``aligned (M,D)``,
        ``coefficients (M,K)`` (only with the hull) and ``logits (M,C)``.
        """
        features = self.backbone(sparse_input).feats
        out = {"features": features}
        if self.hull is not None:
            aligned, coefficients = self.hull(features)
            out["coefficients"] = coefficients
        else:
            aligned = features
        out["aligned"] = aligned
        out["logits"] = self.anchors(aligned)
        return out
