"""The floor of a z-up scan: its height, which points lie on it, and where things can stand.

The floor is the lowest dense horizontal layer of the cloud: a spike in the histogram
of heights, well above the background that walls and clutter spread over every height.
A few stray points below the floor make no spike; tables and seats make spikes higher up
and are skipped because the floor is the lowest one.
"""

from __future__ import annotations

import numpy as np

from cad2scan.errors import EmptyScanError

# A height bin is part of a horizontal layer when it holds this many times the median
# occupied bin, at least this fraction of the densest layer, and at least this share of
# all points.
_LAYER_OVER_BACKGROUND = 3.0
_LAYER_OVER_DENSEST = 0.1
_LAYER_MIN_SHARE = 0.002
_LAYER_MIN_POINTS = 5
_MAX_BINS = 100_000
# Below this many floor points, placements use the scan's bounding box instead.
_MIN_FLOOR_POINTS = 10


def detect_floor_height(points: np.ndarray, bin_size: float = 0.02) -> float:
    """Height of the floor of a z-up scan.

    points: (N, 3) float, metres, z up.  bin_size: histogram bin height (metres).
    Returns the floor height (metres), refined below the bin size as the median height
    of the points in the floor layer.  A scan with no horizontal layer at all (e.g. an
    object with no floor in view) gets its 1st-percentile height.
    Raises EmptyScanError when there is no finite point.
    """
    if bin_size <= 0:
        raise ValueError(f"bin_size must be > 0, got {bin_size}")
    z = np.asarray(points, dtype=np.float64).reshape(-1, 3)[:, 2]
    z = z[np.isfinite(z)]
    if len(z) == 0:
        raise EmptyScanError("<points>", "no finite points to find a floor in")
    z_low, z_high = float(z.min()), float(z.max())
    if z_high - z_low < bin_size:
        return float(np.median(z))
    if (z_high - z_low) / bin_size > _MAX_BINS:
        # Far outliers would blow up the histogram: bound it by robust quantiles.
        z_low, z_high = (float(q) for q in np.quantile(z, [0.001, 0.999]))
        z_low -= 10 * bin_size
        z_high += 10 * bin_size
        bin_size = max(bin_size, (z_high - z_low) / _MAX_BINS)
    n_bins = int(np.ceil((z_high - z_low) / bin_size)) + 1
    counts = np.bincount(
        np.clip(((z - z_low) / bin_size).astype(np.int64), 0, n_bins - 1), minlength=n_bins
    )
    # A layer of noisy or slightly tilted floor spreads over neighbouring bins.
    smooth = np.convolve(counts, np.ones(3), mode="same")
    occupied = smooth[smooth > 0]
    threshold = max(
        _LAYER_OVER_BACKGROUND * float(np.median(occupied)),
        _LAYER_OVER_DENSEST * float(smooth.max()),
        _LAYER_MIN_SHARE * len(z),
        _LAYER_MIN_POINTS,
    )
    layer_bins = np.flatnonzero(smooth >= threshold)
    if len(layer_bins) == 0:
        return float(np.quantile(z, 0.01))
    # Walk up from the lowest layer bin to the top of that spike (its local maximum).
    first = int(layer_bins[0])
    peak = first
    while peak + 1 < n_bins and smooth[peak + 1] >= smooth[peak]:
        peak += 1
    centre = z_low + (peak + 0.5) * bin_size
    near = z[np.abs(z - centre) <= 1.5 * bin_size]
    return float(np.median(near)) if len(near) else float(centre)


def floor_mask(points: np.ndarray, floor_z: float, tolerance: float = 0.05) -> np.ndarray:
    """(N,) bool: points within ``tolerance`` metres (above or below) of ``floor_z``.

    points: (N, 3) float, metres, z up.
    """
    z = np.asarray(points).reshape(-1, 3)[:, 2]
    return np.abs(z - floor_z) <= tolerance


def sample_floor_positions(
    points: np.ndarray,
    floor_z: float,
    n: int,
    rng: np.random.Generator,
    margin: float = 0.0,
    tolerance: float = 0.05,
) -> np.ndarray:
    """Random xy positions on observed floor, where a placed model can stand.

    points: (N, 3) float, metres, z up.  floor_z: floor height.  n: positions wanted.
    margin: keep positions at least this far (metres) inside the xy bounding box of the
    floor points (e.g. a model's footprint radius), when the floor is large enough.
    tolerance: height band around ``floor_z`` that counts as floor.
    Returns (n, 2) float64 xy positions, each the xy of a floor point drawn at random.
    With fewer than 10 floor points, positions are uniform in the xy bounding box of the
    whole scan (shrunk by ``margin`` where it fits).
    """
    xyz = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    if len(xyz) == 0:
        raise EmptyScanError("<points>", "no points to place models on")
    floor_xy = xyz[floor_mask(xyz, floor_z, tolerance), :2]
    if len(floor_xy) >= _MIN_FLOOR_POINTS:
        if margin > 0:
            low, high = floor_xy.min(axis=0) + margin, floor_xy.max(axis=0) - margin
            inside = np.all((floor_xy >= low) & (floor_xy <= high), axis=1)
            if inside.sum() >= _MIN_FLOOR_POINTS:
                floor_xy = floor_xy[inside]
        return floor_xy[rng.integers(0, len(floor_xy), size=n)]
    low, high = xyz[:, :2].min(axis=0), xyz[:, :2].max(axis=0)
    fits = (high - low) > 2 * margin
    low = np.where(fits, low + margin, low)
    high = np.where(fits, high - margin, high)
    return low + rng.random((n, 2)) * (high - low)


def local_floor_heights(
    points: np.ndarray,
    floor_z: float,
    xy: np.ndarray,
    radius: np.ndarray | float,
    tolerance: float = 0.05,
) -> np.ndarray:
    """Floor height under each of a few xy positions (floors are seldom perfectly level).

    points: (N, 3) float, metres, z up.  xy: (M, 2) positions.  radius: (M,) or scalar,
    the horizontal reach (metres) around each position that counts (at least 0.2 m).
    Returns (M,) float64: median height of the floor points (within ``tolerance`` of
    ``floor_z``) inside each reach, or ``floor_z`` where there are none.
    """
    xyz = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    floor = xyz[floor_mask(xyz, floor_z, tolerance)]
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    reach = np.maximum(np.broadcast_to(np.asarray(radius, dtype=np.float64), (len(xy),)), 0.2)
    heights = np.full(len(xy), float(floor_z))
    for index in range(len(xy)):  # a handful of models per scene
        near = ((floor[:, :2] - xy[index]) ** 2).sum(axis=1) <= reach[index] ** 2
        if near.any():
            heights[index] = float(np.median(floor[near, 2]))
    return heights
