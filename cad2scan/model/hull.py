"""Convex-hull feature alignment (FA).

K learnable prototypes ``p_k`` span a convex hull in feature space; every point feature
``x`` is replaced by a convex combination of them,

    x_hat = sum_k a_k p_k,    a = softmax_k(lambda * sim(theta(x), phi(p_k))),

so synthetic (CAD) and real (scan) features are forced into the same bounded region.
``theta`` and ``phi`` are linear maps D -> proj_dim (``projection="linear"``) or the
identity; ``sim`` is the dot product or the cosine (the paper's ``cos`` ablation is
identity maps with cosine similarity).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cad2scan.errors import ConfigError

SIMILARITIES = ("dot", "cos")
PROJECTIONS = ("linear", "identity")


@dataclass
class HullConfig:
    """Settings of :class:`ConvexHullAlignment`.

    Attributes:
        num_prototypes: K, the number of hull vertices (paper: 128).
        proj_dim: output size of theta / phi (paper: 16); unused with identity projection.
        temperature: lambda, the factor on the similarity before the softmax (paper: 0.5).
        similarity: ``"dot"`` or ``"cos"``.
        projection: ``"linear"`` (theta, phi learnt, with bias) or ``"identity"``.
    """

    num_prototypes: int = 128
    proj_dim: int = 16
    temperature: float = 0.5
    similarity: str = "dot"
    projection: str = "linear"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first invalid field."""
        for name in ("num_prototypes", "proj_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"hull.{name} must be a positive integer, got {value!r}")
        temperature = self.temperature
        if (
            isinstance(temperature, bool)
            or not isinstance(temperature, (int, float))
            or not math.isfinite(temperature)
            or temperature <= 0
        ):
            raise ConfigError(f"hull.temperature must be a finite number > 0, got {temperature!r}")
        if self.similarity not in SIMILARITIES:
            raise ConfigError(f"hull.similarity must be one of {SIMILARITIES}, got {self.similarity!r}")
        if self.projection not in PROJECTIONS:
            raise ConfigError(f"hull.projection must be one of {PROJECTIONS}, got {self.projection!r}")


class ConvexHullAlignment(nn.Module):
    """Replace each feature by a softmax-weighted convex combination of K prototypes.

    Args:
        feature_dim: D, the size of the input (and output) features.
        cfg: the :class:`HullConfig`.

    Parameters:
        prototypes: (K, D), initialised N(0, 1/D).
        theta, phi: ``nn.Linear(D, proj_dim)`` with bias, only with ``projection="linear"``.
    """

    def __init__(self, feature_dim: int, cfg: HullConfig | None = None):
        super().__init__()
        cfg = HullConfig() if cfg is None else cfg
        cfg.validate()
        if feature_dim < 1:
            raise ConfigError(f"feature_dim must be a positive integer, got {feature_dim!r}")
        self.cfg = cfg
        self.feature_dim = feature_dim
        self.prototypes = nn.Parameter(torch.randn(cfg.num_prototypes, feature_dim) / math.sqrt(feature_dim))
        if cfg.projection == "linear":
            self.theta: nn.Linear | None = nn.Linear(feature_dim, cfg.proj_dim, bias=True)
            self.phi: nn.Linear | None = nn.Linear(feature_dim, cfg.proj_dim, bias=True)
        else:
            self.theta = None
            self.phi = None

    def extra_repr(self) -> str:
        cfg = self.cfg
        return (
            f"feature_dim={self.feature_dim}, num_prototypes={cfg.num_prototypes}, "
            f"projection={cfg.projection}, similarity={cfg.similarity}, temperature={cfg.temperature}"
        )

    @staticmethod
    def _project(layer: nn.Linear | None, values: torch.Tensor) -> torch.Tensor:
        if layer is None:
            return values
        return F.linear(values, layer.weight.to(values.dtype), layer.bias.to(values.dtype))

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Align features to the prototype hull.

        Args:
            features: (N, D) float (any float dtype; fp16/bf16 and autocast are computed
                in float32 internally).

        Returns:
            aligned: (N, D), dtype of ``features``; ``aligned == coefficients @ prototypes``.
            coefficients: (N, K), float32 (float64 for float64 input); rows are >= 0 and
                sum to 1.
        """
        if features.ndim != 2 or features.shape[1] != self.feature_dim:
            raise ValueError(f"features must be (N, {self.feature_dim}), got {tuple(features.shape)}")
        compute_dtype = torch.promote_types(features.dtype, torch.float32)
        with torch.autocast(device_type=features.device.type, enabled=False):
            x = features.to(compute_dtype)
            prototypes = self.prototypes.to(compute_dtype)
            queries = self._project(self.theta, x)  # (N, P)
            keys = self._project(self.phi, prototypes)  # (K, P)
            if self.cfg.similarity == "cos":
                queries = F.normalize(queries, dim=1)
                keys = F.normalize(keys, dim=1)
            logits = self.cfg.temperature * (queries @ keys.T)  # (N, K)
            coefficients = torch.softmax(logits, dim=1)
            aligned = coefficients @ prototypes  # (N, D)
        return aligned.to(features.dtype), coefficients
