"""Mix augmented CAD models into a real scan, standing on its floor (the PDA scene).

The output is a plain dict of per-point arrays (scene points first, then each model's
points in the order given), ready for voxelisation:

    coord         (P, 3) float32   metres, z up
    label         (P,)   int64     -1 for scene points (ignored by the loss), else the
                                   model's class index
    is_synthetic  (P,)   bool      True for model points
    model_id      (P,)   int64     -1 for scene points, else the model's index in ``models``
    scene_index   (S',)  int64     which input scene points were kept (into the input)
    overlap_filtered     bool      whether scene points near the models were removed

plus any ``scene_extras`` arrays, filtered like the scene points (length S').
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from cad2scan.geometry.floor import (
    detect_floor_height,
    local_floor_heights,
    sample_floor_positions,
)

OVERLAP_MODES = ("filter", "keep", "random")
_POSITION_TRIES = 16  # candidate floor positions per model; the most clear one is used
_RESERVED_KEYS = ("coord", "label", "is_synthetic", "model_id", "scene_index", "overlap_filtered")


@dataclass
class PlacedModel:
    """One model placed in a scene.

    points: (P, 3) float32, scene coordinates (metres, z up).
    label: class index given by the caller.  model_id: index among the placed models.
    """

    points: np.ndarray
    label: int
    model_id: int


@dataclass
class MixConfig:
    """How models are mixed into a scene.

    overlap: "filter" removes the scene points within ``overlap_radius`` metres of any
    model point, "keep" keeps them, "random" flips a fair coin per call.
    place_on_floor: stand models on observed floor points (else anywhere in the scan's xy
    bounding box).  floor_tolerance: height band (metres) around the floor that counts as
    floor.
    """

    overlap: str = "random"
    overlap_radius: float = 0.05
    place_on_floor: bool = True
    floor_tolerance: float = 0.05

    def __post_init__(self) -> None:
        if self.overlap not in OVERLAP_MODES:
            raise ValueError(f"overlap must be one of {OVERLAP_MODES}, got {self.overlap!r}")
        if self.overlap_radius < 0 or self.floor_tolerance < 0:
            raise ValueError("overlap_radius and floor_tolerance must be >= 0")


def _footprint_radius(points: np.ndarray) -> float:
    """Largest horizontal distance of a model point from the model origin."""
    if len(points) == 0:
        return 0.0
    return float(np.sqrt((points[:, :2].astype(np.float64) ** 2).sum(axis=1).max()))


def _choose_positions(
    scene: np.ndarray,
    floor_z: float,
    radii: np.ndarray,
    rng: np.random.Generator,
    cfg: MixConfig,
) -> np.ndarray:
    """(M, 2) xy positions, each drawn on the floor, preferring ones clear of earlier models."""
    positions = np.zeros((len(radii), 2))
    for index, radius in enumerate(radii):
        if cfg.place_on_floor:
            tries = sample_floor_positions(
                scene, floor_z, _POSITION_TRIES, rng, margin=radius, tolerance=cfg.floor_tolerance
            )
        else:
            low, high = scene[:, :2].min(axis=0), scene[:, :2].max(axis=0)
            tries = low + rng.random((_POSITION_TRIES, 2)) * (high - low)
        if index == 0:
            positions[0] = tries[0]
            continue
        gaps = np.linalg.norm(tries[:, None, :] - positions[None, :index, :], axis=2)
        clearance = (gaps - radius - radii[None, :index]).min(axis=1)
        clear = np.flatnonzero(clearance >= 0)
        positions[index] = tries[clear[0]] if len(clear) else tries[np.argmax(clearance)]
    return positions


def _assemble(
    scene_coord: np.ndarray,
    scene_index: np.ndarray,
    placed: list[PlacedModel],
    overlap_filtered: bool,
) -> dict:
    coords = [scene_coord.astype(np.float32)] + [m.points.astype(np.float32) for m in placed]
    labels = [np.full(len(scene_coord), -1, dtype=np.int64)]
    ids = [np.full(len(scene_coord), -1, dtype=np.int64)]
    for model in placed:
        labels.append(np.full(len(model.points), model.label, dtype=np.int64))
        ids.append(np.full(len(model.points), model.model_id, dtype=np.int64))
    model_id = np.concatenate(ids)
    return {
        "coord": np.concatenate(coords).reshape(-1, 3),
        "label": np.concatenate(labels),
        "is_synthetic": model_id >= 0,
        "model_id": model_id,
        "scene_index": scene_index.astype(np.int64),
        "overlap_filtered": bool(overlap_filtered),
    }


def mix_models_into_scene(
    scene_points: np.ndarray,
    models: list[tuple[np.ndarray, int]],
    rng: np.random.Generator,
    cfg: MixConfig | None = None,
    floor_z: float | None = None,
    scene_extras: dict[str, np.ndarray] | None = None,
) -> dict:
    """Stand each model at a random spot of the scan's floor and merge the points.

    scene_points: (S, 3) float, metres, z up.
    models: [(points (P_i, 3) float, label int)], model coordinates: xy centre at 0 and
    z = 0 the floor contact (as ``augment_model`` returns them).  Each model keeps its
    orientation; it is moved to a random floor position (chosen clear of the models
    placed before it when the floor allows) and lifted so its z = 0 is at the floor:
    the median height of the floor points (within ``cfg.floor_tolerance`` of
    ``floor_z``) under its footprint, as floors are seldom exactly level, else
    ``floor_z``.
    floor_z: floor height; detected with ``detect_floor_height`` when None.
    scene_extras: per-scene-point arrays (S, ...) returned filtered like the scene.
    Returns the dict described in this module's docstring.
    """
    cfg = cfg or MixConfig()
    scene = np.asarray(scene_points).reshape(-1, 3)
    extras = dict(scene_extras or {})
    for key, value in extras.items():
        if key in _RESERVED_KEYS:
            raise ValueError(f"scene_extras key {key!r} clashes with an output key")
        if len(value) != len(scene):
            raise ValueError(f"scene_extras[{key!r}] has {len(value)} rows, scene has {len(scene)}")
    if floor_z is None:
        floor_z = detect_floor_height(scene)

    model_points = [np.asarray(points, dtype=np.float64).reshape(-1, 3) for points, _ in models]
    radii = np.array([_footprint_radius(p) for p in model_points])
    positions = _choose_positions(scene, float(floor_z), radii, rng, cfg)
    if cfg.place_on_floor and len(models):
        heights = local_floor_heights(scene, floor_z, positions, radii, cfg.floor_tolerance)
    else:
        heights = np.full(len(models), float(floor_z))
    placed = []
    for index, ((_, label), points) in enumerate(zip(models, model_points)):
        offset = np.array([positions[index, 0], positions[index, 1], heights[index]])
        placed.append(PlacedModel((points + offset).astype(np.float32), int(label), index))

    overlap_filtered = cfg.overlap == "filter" or (
        cfg.overlap == "random" and bool(rng.random() < 0.5)
    )
    scene_index = np.arange(len(scene), dtype=np.int64)
    synthetic = [m.points for m in placed if len(m.points)]
    if overlap_filtered and synthetic and len(scene):
        tree = cKDTree(np.concatenate(synthetic).astype(np.float64))
        dist, _ = tree.query(scene.astype(np.float64), k=1, distance_upper_bound=cfg.overlap_radius)
        scene_index = np.flatnonzero(~(dist <= cfg.overlap_radius))
    out = _assemble(scene[scene_index], scene_index, placed, overlap_filtered)
    for key, value in extras.items():
        out[key] = np.asarray(value)[scene_index]
    return out


def place_models_alone(
    models: list[tuple[np.ndarray, int]], rng: np.random.Generator, spacing: float = 0.5
) -> dict:
    """Lay models side by side on a floor at z = 0, with no scene (the paper's baseline).

    models: [(points (P_i, 3) float, label int)] in model coordinates (z = 0 the floor
    contact).  The models are laid along x in a random order, ``spacing`` metres apart
    between their xy bounding boxes, the row centred at the origin.
    Returns the same keys as ``mix_models_into_scene`` (no scene points:
    ``scene_index`` is empty and ``overlap_filtered`` False).
    """
    model_points = [np.asarray(points, dtype=np.float64).reshape(-1, 3) for points, _ in models]
    order = rng.permutation(len(models))
    offsets = np.zeros((len(models), 3))
    cursor = 0.0
    for index in order:
        points = model_points[index]
        if len(points):
            low, high = points[:, :2].min(axis=0), points[:, :2].max(axis=0)
        else:
            low = high = np.zeros(2)
        offsets[index, 0] = cursor - low[0]
        offsets[index, 1] = -(low[1] + high[1]) / 2
        cursor += (high[0] - low[0]) + spacing
    if len(models):
        offsets[:, 0] -= (cursor - spacing) / 2
    placed = [
        PlacedModel((points + offsets[index]).astype(np.float32), int(label), index)
        for index, ((_, label), points) in enumerate(zip(models, model_points))
    ]
    empty = np.zeros((0, 3), dtype=np.float32)
    return _assemble(empty, np.zeros(0, dtype=np.int64), placed, False)
