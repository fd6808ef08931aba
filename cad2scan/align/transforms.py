"""Physical data alignment of CAD model points: normalise, real-world size, augment.

Every function takes ``points: (N, 3)`` float (z up) and returns a new array of the same
dtype (float32 stays float32); nothing is changed in place.  "xy centre" means the centre
of the xy bounding box and "bottom" the lowest z; a model in model coordinates has its
xy centre at 0 and its bottom at z = 0, so z = 0 is where it touches the floor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_FLAT = 1e-6  # relative size below which an extent counts as zero


def _as_float(points: np.ndarray) -> np.ndarray:
    points = np.asarray(points)
    if not np.issubdtype(points.dtype, np.floating):
        points = points.astype(np.float64)
    return points.reshape(-1, 3)


def _base_point(points: np.ndarray) -> np.ndarray:
    """(3,) float64: xy bounding-box centre and bottom z of ``points``."""
    low, high = points.min(axis=0).astype(np.float64), points.max(axis=0).astype(np.float64)
    return np.array([(low[0] + high[0]) / 2, (low[1] + high[1]) / 2, low[2]])


def _scale_about_base(points: np.ndarray, factor: float) -> np.ndarray:
    base = _base_point(points)
    scaled = (points.astype(np.float64) - base) * factor + base
    return scaled.astype(points.dtype)


def normalise_model(points: np.ndarray) -> np.ndarray:
    """Remove arbitrary CAD units and offsets.

    points: (N, 3) float, any unit.
    Returns (N, 3): xy bounding box centred at 0, bottom at z = 0, bounding-box diagonal
    1 (a model that is a single point is only translated).
    """
    points = _as_float(points)
    if len(points) == 0:
        return points.copy()
    shifted = points.astype(np.float64) - _base_point(points)
    diagonal = float(np.linalg.norm(np.ptp(shifted, axis=0)))
    if diagonal > 0:
        shifted /= diagonal
    return shifted.astype(points.dtype)


def size_prior_scale(
    points: np.ndarray, size_lwh: tuple[float, float, float], mode: str = "height"
) -> float:
    """The uniform factor that ``scale_to_size_prior`` applies (see there)."""
    if mode not in ("height", "fit"):
        raise ValueError(f"mode must be 'height' or 'fit', got {mode!r}")
    prior = np.asarray(size_lwh, dtype=np.float64).reshape(3)
    extent = np.ptp(points.astype(np.float64), axis=0)
    diagonal = float(np.linalg.norm(extent))
    if diagonal == 0:
        return 1.0
    flat = extent[2] <= _FLAT * diagonal
    if mode == "height" and not flat and prior[2] > 0:
        return float(prior[2] / extent[2])
    # "fit": horizontal extents matched largest-to-largest whatever the azimuth.
    model_sizes = np.concatenate([np.sort(extent[:2])[::-1], extent[2:]])
    prior_sizes = np.concatenate([np.sort(prior[:2])[::-1], prior[2:]])
    usable = (model_sizes > _FLAT * diagonal) & (prior_sizes > 0)
    if not usable.any():
        return 1.0
    ratios = prior_sizes[usable] / model_sizes[usable]
    return float(np.exp(np.mean(np.log(ratios))))


def scale_to_size_prior(
    points: np.ndarray, size_lwh: tuple[float, float, float], mode: str = "height"
) -> np.ndarray:
    """Uniformly scale a model to a real-world size prior, about its xy centre and bottom.

    points: (N, 3) float.  size_lwh: prior (length, width, height) in metres; a size of 0
    means unknown and is ignored.
    mode "height": the model's height becomes the prior height (falls back to "fit" for a
    flat model or an unknown prior height).  mode "fit": the geometric mean of the ratios
    prior/model of the sorted horizontal extents and of the height.
    Returns (N, 3) scaled points, bottom height unchanged.
    """
    points = _as_float(points)
    if len(points) == 0:
        return points.copy()
    return _scale_about_base(points, size_prior_scale(points, size_lwh, mode))


def random_rotate_z(points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rotate about the vertical axis through the model's xy centre.

    points: (N, 3) float.  The angle is uniform in [0, 2 pi).
    Returns (N, 3) rotated points (z unchanged).
    """
    points = _as_float(points)
    angle = rng.uniform(0.0, 2.0 * np.pi)
    if len(points) == 0:
        return points.copy()
    base = _base_point(points)
    cos, sin = np.cos(angle), np.sin(angle)
    rotation = np.array([[cos, -sin, 0.0], [sin, cos, 0.0], [0.0, 0.0, 1.0]])
    rotated = (points.astype(np.float64) - base) @ rotation.T + base
    return rotated.astype(points.dtype)


def random_scale(
    points: np.ndarray, rng: np.random.Generator, low: float = 0.9, high: float = 1.1
) -> np.ndarray:
    """Scale by one factor uniform in [low, high] about the xy centre and bottom.

    points: (N, 3) float.  Returns (N, 3) points whose bottom stays at the same height.
    """
    points = _as_float(points)
    factor = rng.uniform(low, high)
    if len(points) == 0:
        return points.copy()
    return _scale_about_base(points, factor)


def random_crop(
    points: np.ndarray, rng: np.random.Generator, min_anchors: int = 2, max_anchors: int = 5
) -> np.ndarray:
    """Simulate a partial observation: drop one of k nearest-anchor clusters.

    points: (N, 3) float.  k is uniform in [min_anchors, max_anchors]; the anchors are k
    distinct points drawn at random, every point joins its nearest anchor, and one
    non-empty cluster, drawn at random, is dropped.
    Returns keep: (N,) bool.  A model of fewer than 2 points is kept whole.
    """
    if min_anchors < 2 or max_anchors < min_anchors:
        raise ValueError(f"need 2 <= min_anchors <= max_anchors, got {min_anchors}, {max_anchors}")
    points = _as_float(points)
    n_points = len(points)
    k = int(rng.integers(min_anchors, max_anchors + 1))
    if n_points < 2:
        return np.ones(n_points, dtype=bool)
    k = min(k, n_points)
    anchors = points[rng.choice(n_points, size=k, replace=False)].astype(np.float64)
    squared = ((points.astype(np.float64)[:, None, :] - anchors[None, :, :]) ** 2).sum(axis=2)
    cluster = squared.argmin(axis=1)
    non_empty = np.flatnonzero(np.bincount(cluster, minlength=k))
    dropped = non_empty[rng.integers(0, len(non_empty))]
    return cluster != dropped


@dataclass
class ModelAugmentConfig:
    """Which augmentations ``augment_model`` applies, and their ranges."""

    rotate: bool = True
    scale_low: float = 0.9
    scale_high: float = 1.1
    scale: bool = True
    crop: bool = True
    crop_min_anchors: int = 2
    crop_max_anchors: int = 5


def augment_model(
    points: np.ndarray,
    size_lwh: tuple[float, float, float] | None,
    cfg: ModelAugmentConfig,
    rng: np.random.Generator,
) -> np.ndarray:
    """normalise -> size prior (height) -> random z-rotation -> random scale -> crop.

    points: (N, 3) float, model in any unit.  size_lwh: real-world (l, w, h) metres, or
    None to keep the unit-diagonal size.
    Returns (M, 3) points, M <= N, in metres with the xy centre at 0 and the bottom of the
    whole (uncropped) model at z = 0: the crop hides part of the model as an occlusion
    would, it does not move what is left, so z = 0 stays the floor contact.
    """
    points = normalise_model(points)
    if size_lwh is not None:
        points = scale_to_size_prior(points, size_lwh, mode="height")
    if cfg.rotate:
        points = random_rotate_z(points, rng)
    if cfg.scale:
        points = random_scale(points, rng, cfg.scale_low, cfg.scale_high)
    if cfg.crop:
        points = points[random_crop(points, rng, cfg.crop_min_anchors, cfg.crop_max_anchors)]
    return points
