"""Domain-adaptation heads for the paper's comparison rows (ADDA-style and PointDAN-style).

The paper compares its feature alignment with two domain-adaptation methods adapted to
scene segmentation: the *source* domain is the mixed point clouds (CAD models placed in
scans), the *target* domain is the real scan points. In a PDA batch a voxel that holds any
synthetic point is source; every other voxel (real scene points only) is target.

* ``adda`` — point-wise adversarial feature alignment: a small per-voxel domain
  discriminator on the backbone features. ADDA trains an encoder and a discriminator in
  alternating stages; here both play their game in one optimiser step through a
  gradient-reversal layer (the discriminator minimises the domain loss, the backbone
  receives the negated gradient and so maximises it), the common way to run ADDA-style
  alignment inside one training loop.
* ``pointdan`` — multi-scale alignment: *local* node features (the mean backbone feature of
  every ``cell`` x ``cell`` x ``cell``-voxel cell of each batch item) aligned adversarially
  by a node-level discriminator, plus *global* alignment with Maximum Classifier
  Discrepancy (MCD): two extra classifier heads on the aligned features both fit the
  labelled source voxels while their disagreement on target voxels is maximised by the
  heads and, through gradient reversal, minimised by the backbone.

Usage (the caller multiplies the loss by ``model.adaptation_weight``)::

    module = build_adaptation(cfg.adaptation, feature_dim, num_classes)   # None for "none"
    outputs = module(features, aligned, voxel_coords)
    loss = adaptation_loss(outputs, source_mask, loss_voxel, loss_label)

Every loss term that needs a domain absent from the batch is an exact zero that is still
connected to all the module's parameters (so DistributedDataParallel sees every parameter
used in every step).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

METHODS = ("none", "adda", "pointdan")


class _ReverseGradient(torch.autograd.Function):
    """Identity forward; backward multiplies the incoming gradient by ``-scale``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return -ctx.scale * grad, None


def reverse_gradient(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Gradient-reversal layer: returns ``x`` unchanged; its gradient is ``-scale`` times the upstream one."""
    return _ReverseGradient.apply(x, float(scale))


class DomainDiscriminator(nn.Module):
    """Small MLP: (N, D) features -> (N,) logits of "source" (1) versus "target" (0)."""

    def __init__(self, feature_dim: int, hidden: int = 64):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(feature_dim, hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, 1),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features).squeeze(-1)


def pool_cells(features: torch.Tensor, voxel_coords: torch.Tensor, cell: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean feature of every ``cell``^3-voxel cell of every batch item (PointDAN-style nodes).

    features: (M, D) float.  voxel_coords: (M, 4) int [batch, x, y, z] voxel indices (any sign).
    Returns ``nodes (N, D) float32`` (N = occupied cells, in sorted
    (batch, cx, cy, cz) order) and ``node_index (M,) int64``: the node of every voxel.
    """
    if cell < 1:
        raise ValueError(f"cell must be >= 1, got {cell}")
    coords = voxel_coords.long()
    keys = torch.cat([coords[:, :1], torch.div(coords[:, 1:], cell, rounding_mode="floor")], dim=1)
    _, node_index = torch.unique(keys, dim=0, return_inverse=True)
    num_nodes = int(node_index.max()) + 1 if len(node_index) else 0
    values = features.float()  # sums in float32 also under bf16/fp16 autocast
    sums = values.new_zeros((num_nodes, values.shape[1])).index_add_(0, node_index, values)
    counts = torch.bincount(node_index, minlength=num_nodes).clamp_min(1).to(values.dtype)
    return sums / counts[:, None], node_index


def _classifier_head(feature_dim: int, num_classes: int) -> nn.Module:
    return nn.Sequential(nn.Linear(feature_dim, feature_dim), nn.ReLU(inplace=True),
                         nn.Linear(feature_dim, num_classes))


class FeatureAdversarialAdaptation(nn.Module):
    """ADDA-style point-wise adversarial alignment of the backbone features.

    forward returns ``domain_logits (M,)``: the discriminator's source logit of every voxel,
    computed on the gradient-reversed backbone features.
    """

    def __init__(self, feature_dim: int, hidden: int = 64, reversal_scale: float = 1.0):
        super().__init__()
        self.discriminator = DomainDiscriminator(feature_dim, hidden)
        self.reversal_scale = reversal_scale

    def forward(self, features: torch.Tensor, aligned: torch.Tensor, voxel_coords: torch.Tensor) -> dict:
        """features, aligned: (M, D) float; voxel_coords: (M, 4) int [batch, x, y, z] (unused here)."""
        return {"domain_logits": self.discriminator(reverse_gradient(features, self.reversal_scale))}


class PointDANAdaptation(nn.Module):
    """PointDAN-style multi-scale alignment: node-level adversarial + global MCD.

    forward returns ``node_domain_logits (N,)`` (node discriminator on gradient-reversed
    node features), ``node_index (M,) int64`` (node of every voxel), ``mcd_logits (2, M, C)``
    (both heads on the aligned features: fit the source labels) and
    ``mcd_logits_reversed (2, M, C)`` (both heads on gradient-reversed aligned features:
    their discrepancy on target voxels is maximised by the heads, minimised by the backbone).
    """

    def __init__(self, feature_dim: int, num_classes: int, cell: int = 4, hidden: int = 64,
                 reversal_scale: float = 1.0):
        super().__init__()
        self.cell = cell
        self.reversal_scale = reversal_scale
        self.node_discriminator = DomainDiscriminator(feature_dim, hidden)
        self.heads = nn.ModuleList([_classifier_head(feature_dim, num_classes) for _ in range(2)])

    def forward(self, features: torch.Tensor, aligned: torch.Tensor, voxel_coords: torch.Tensor) -> dict:
        """features, aligned: (M, D) float; voxel_coords: (M, 4) int [batch, x, y, z]."""
        nodes, node_index = pool_cells(features, voxel_coords, self.cell)
        reversed_aligned = reverse_gradient(aligned, self.reversal_scale)
        return {
            "node_domain_logits": self.node_discriminator(reverse_gradient(nodes, self.reversal_scale)),
            "node_index": node_index,
            "mcd_logits": torch.stack([head(aligned) for head in self.heads]),
            "mcd_logits_reversed": torch.stack([head(reversed_aligned) for head in self.heads]),
        }


def build_adaptation(method: str, feature_dim: int, num_classes: int) -> nn.Module | None:
    """The adaptation module of ``model.adaptation``: None for "none"."""
    if method == "none":
        return None
    if method == "adda":
        return FeatureAdversarialAdaptation(feature_dim)
    if method == "pointdan":
        return PointDANAdaptation(feature_dim, num_classes)
    raise ValueError(f"model.adaptation must be one of {METHODS}, got {method!r}")


def _connected_zero(outputs: dict) -> torch.Tensor:
    """0.0 that depends on every float output (so every parameter gets a gradient, of 0)."""
    tensors = [t for t in outputs.values() if isinstance(t, torch.Tensor) and t.is_floating_point()]
    return sum(t.float().sum() for t in tensors) * 0.0


def domain_loss(logits: torch.Tensor, is_source: torch.Tensor) -> torch.Tensor:
    """Class-balanced binary cross-entropy of domain logits: (mean over source + mean over target) / 2.

    logits: (N,) float; is_source: (N,) bool.  Zero (connected to ``logits``) when either
    domain is absent: a one-domain batch carries nothing to align.
    """
    logits = logits.float()
    n_source = int(is_source.sum())
    if n_source == 0 or n_source == len(is_source):
        return logits.sum() * 0.0
    bce = F.binary_cross_entropy_with_logits(logits, is_source.float(), reduction="none")
    return 0.5 * (bce[is_source].mean() + bce[~is_source].mean())


def classifier_discrepancy(logits_a: torch.Tensor, logits_b: torch.Tensor) -> torch.Tensor:
    """MCD discrepancy: mean over rows and classes of |softmax(a) - softmax(b)|.

    logits_a, logits_b: (N, C) float.  Zero for an empty input (connected to both).
    """
    if logits_a.shape[0] == 0:
        return (logits_a.sum() + logits_b.sum()).float() * 0.0
    diff = torch.softmax(logits_a.float(), dim=1) - torch.softmax(logits_b.float(), dim=1)
    return diff.abs().mean()


def node_is_source(source_mask: torch.Tensor, node_index: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """(N,) bool: a node is source when any of its voxels is (source_mask (M,) bool, node_index (M,))."""
    counts = torch.zeros(num_nodes, dtype=torch.long, device=node_index.device)
    counts.index_add_(0, node_index, source_mask.long())
    return counts > 0


def source_mask_from_voxels(num_voxels: int, synthetic_voxel: torch.Tensor) -> torch.Tensor:
    """(M,) bool: True at the voxels listed in ``synthetic_voxel`` (any int index tensor, repeats allowed)."""
    mask = torch.zeros(num_voxels, dtype=torch.bool, device=synthetic_voxel.device)
    mask[synthetic_voxel.long()] = True
    return mask


def adaptation_loss(module_outputs: dict, source_mask: torch.Tensor, loss_voxel: torch.Tensor,
                    loss_label: torch.Tensor) -> torch.Tensor:
    """The adaptation module's loss, a scalar (the caller multiplies it by ``model.adaptation_weight``).

    module_outputs: what the module's forward returned (other keys, e.g. the whole RTLNet
    output, are ignored).  source_mask: (M,) bool, True for voxels holding any synthetic
    point.  loss_voxel, loss_label: (S,) int64 labelled voxel and class of every loss point
    (the anchor loss's targets), used by the MCD heads to fit the source.

    adda:     balanced domain BCE of the voxel discriminator.
    pointdan: balanced domain BCE of the node discriminator + cross-entropy of both MCD heads
              on the labelled points - their discrepancy on target voxels.

    Domain terms are zero (still connected) when the batch lacks source or target voxels;
    the heads' source cross-entropy still applies whenever there are labelled points.
    """
    loss = _connected_zero(module_outputs)
    if "domain_logits" in module_outputs:
        loss = loss + domain_loss(module_outputs["domain_logits"], source_mask)
    if "node_domain_logits" in module_outputs:
        node_logits = module_outputs["node_domain_logits"]
        nodes_source = node_is_source(source_mask, module_outputs["node_index"], node_logits.shape[0])
        loss = loss + domain_loss(node_logits, nodes_source)
    if "mcd_logits" in module_outputs:
        logits, reversed_logits = module_outputs["mcd_logits"], module_outputs["mcd_logits_reversed"]
        if loss_voxel.numel():
            for head_logits in logits:
                loss = loss + F.cross_entropy(head_logits[loss_voxel].float(), loss_label)
        target = ~source_mask
        if bool(source_mask.any()) and bool(target.any()):  # the heads' game needs both domains
            loss = loss - classifier_discrepancy(reversed_logits[0][target], reversed_logits[1][target])
    return loss
