"""The whole network: sparse U-Net backbone -> convex-hull feature alignment -> class anchors.

``model.anchor_source`` picks the anchor head: ``learned`` (a free anchor per class,
:class:`~cad2scan.model.anchors.AnchorClassifier`) or ``text`` (target anchors projected from
text embeddings of the class names, :class:`~cad2scan.model.text_anchors.TextAnchorClassifier`;
the embeddings are computed lazily, so rebuilding a saved network for inference needs no
text model).
"""

from __future__ import annotations

import torch
from torch import nn

from cad2scan.model.adaptation import build_adaptation
from cad2scan.model.anchors import AnchorClassifier
from cad2scan.model.backbone import build_backbone
from cad2scan.model.hull import ConvexHullAlignment
from cad2scan.model.text_anchors import TextAnchorClassifier, embed_class_names


def build_anchor_head(anchor_source: str, feature_dim: int, num_classes: int,
                      class_names: list[str] | None) -> torch.nn.Module:
    """The class-anchor head of ``model.anchor_source`` ("learned" | "text").

    A text head needs the C class names (background last); its target embeddings are
    filled lazily (see :mod:`cad2scan.model.text_anchors`). The learned head consumes the
    random stream exactly as before the text option existed.
    """
    if anchor_source == "learned":
        return AnchorClassifier(feature_dim, num_classes)
    if anchor_source == "text":
        if class_names is None or num_classes < 2:
            raise ValueError("model.anchor_source=text needs the class names (targets, then background)")
        return TextAnchorClassifier.from_class_names(feature_dim, list(class_names[:-1]))
    raise ValueError(f"model.anchor_source {anchor_source!r} is not 'learned' or 'text'")


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
        self.anchors = build_anchor_head(cfg.anchor_source, feature_dim, num_classes,
                                         self.class_names)
        # Domain-adaptation heads of the comparison rows (model.adaptation); used in training only.
        self.adaptation = build_adaptation(cfg.adaptation, feature_dim, num_classes)
        self.adaptation_weight = float(cfg.adaptation_weight)

    def set_classes(self, class_names: list[str], text_embeddings: torch.Tensor | None = None) -> None:
        """Classify into other classes at test time (text anchors only; background last, kept).

        ``text_embeddings``: (C-1, E) embeddings of the new target names; computed from the
        names (needs the text model) when None. Rows of names the head already has are
        reused as they are. Raises ValueError for a network with learned anchors.
        """
        if not isinstance(self.anchors, TextAnchorClassifier):
            raise ValueError("only a network with text anchors (model.anchor_source=text) can take new classes")
        if len(class_names) < 2:
            raise ValueError(f"need at least one target class and background, got {class_names}")
        targets = list(class_names[:-1])
        if text_embeddings is None:
            known = dict(zip(self.anchors.target_names or [], self.anchors.text_embeddings.detach().cpu()))
            new = [name for name in targets if name not in known]
            if new:
                known.update(zip(new, embed_class_names(new)))
            text_embeddings = torch.stack([known[name].to(torch.float32) for name in targets])
        self.anchors.set_classes(targets, text_embeddings)
        self.class_names = list(class_names)

    def forward(self, sparse_input) -> dict[str, torch.Tensor]:
        """sparse_input: SparseTensor of M voxels (coords [b,x,y,z], feats (M,1)).

        Returns per voxel, in input order: ``features (M,D)``, ``aligned (M,D)``,
        ``coefficients (M,K)`` (only with the hull) and ``logits (M,C)``; in training mode
        with ``model.adaptation`` also the adaptation heads' outputs (see
        :mod:`cad2scan.model.adaptation`).
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
        if self.adaptation is not None and self.training:
            out.update(self.adaptation(features, aligned, sparse_input.coords))
        return out
