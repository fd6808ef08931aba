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

plus any ``scene_extras`` arrays, filtered like the scene points (length S'), and with
``placement: "layout"`` also ``placement (M,) str``: how each model was placed
("against_wall", "on_support", "neighbour", "free", or "random" when no spot fitted).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from scipy.spatial import ConvexHull, QhullError, cKDTree

from cad2scan.align.layout import (
    PlacementSettings,
    analyse_scene,
    load_layout_rules,
    place_model,
    placement_order,
)

from cad2scan.geometry.floor import (
    detect_floor_height,
    local_floor_heights,
    sample_floor_positions,
)

log = logging.getLogger(__name__)

OVERLAP_MODES = ("filter", "keep", "random")
PLACEMENT_MODES = ("random", "layout")
REGION_MODES = ("overlap", "replace")
_POSITION_TRIES = 16  # candidate floor positions per model; the most clear one is used
_RESERVED_KEYS = ("coord", "label", "is_synthetic", "model_id", "scene_index", "overlap_filtered", "placement")


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
    placement: "random" (each model keeps its orientation, at a random floor spot) or
    "layout" (free floor space without interpenetration, class rules from
    ``layout_rules``: against walls, on supports, near tables; see ``align/layout.py``).
    region: "overlap" (models are added to the scan) or "replace" (the scan points inside
    each model's footprint volume, its xy convex hull grown by ``region_margin`` from its
    bottom to its top +- ``region_margin``, are erased first).
    layout_rules: preset name (``configs/<name>.yaml``) or YAML path of the class rules.
    layout_cell: grid cell (metres) of the scan's occupancy analysis.
    layout_overlap: largest share of a model's footprint columns that may hold scene points.
    layout_tries: candidate spots per model and strategy before falling back.
    """

    overlap: str = "random"
    overlap_radius: float = 0.05
    place_on_floor: bool = True
    floor_tolerance: float = 0.05
    placement: str = "random"
    region: str = "overlap"
    region_margin: float = 0.05
    layout_rules: str = "layout_rules"
    layout_cell: float = 0.1
    layout_overlap: float = 0.05
    layout_tries: int = 30

    def __post_init__(self) -> None:
        if self.overlap not in OVERLAP_MODES:
            raise ValueError(f"overlap must be one of {OVERLAP_MODES}, got {self.overlap!r}")
        if self.overlap_radius < 0 or self.floor_tolerance < 0:
            raise ValueError("overlap_radius and floor_tolerance must be >= 0")
        if self.placement not in PLACEMENT_MODES:
            raise ValueError(f"placement must be one of {PLACEMENT_MODES}, got {self.placement!r}")
        if self.region not in REGION_MODES:
            raise ValueError(f"region must be one of {REGION_MODES}, got {self.region!r}")
        if not (math.isfinite(self.region_margin) and self.region_margin >= 0):
            raise ValueError(f"region_margin must be a finite number >= 0, got {self.region_margin!r}")
        if not (math.isfinite(self.layout_cell) and 0.01 <= self.layout_cell <= 1.0):
            raise ValueError(f"layout_cell must be in [0.01, 1] metres, got {self.layout_cell!r}")
        if not (0 <= self.layout_overlap <= 1):
            raise ValueError(f"layout_overlap must be in [0, 1], got {self.layout_overlap!r}")
        if self.layout_tries < 1:
            raise ValueError(f"layout_tries must be >= 1, got {self.layout_tries!r}")
        if not self.layout_rules:
            raise ValueError("layout_rules must name a rules preset or YAML file")
        if self.placement == "layout":
            load_layout_rules(self.layout_rules)  # a missing or malformed rules file fails here, early


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


def _random_offsets(scene, floor_z, model_points, rng, cfg) -> list[np.ndarray]:
    """The random recipe: (3,) xyz offsets putting each model on a random floor spot."""
    radii = np.array([_footprint_radius(p) for p in model_points])
    positions = _choose_positions(scene, float(floor_z), radii, rng, cfg)
    if cfg.place_on_floor and len(model_points):
        heights = local_floor_heights(scene, floor_z, positions, radii, cfg.floor_tolerance)
    else:
        heights = np.full(len(model_points), float(floor_z))
    return [np.array([positions[i, 0], positions[i, 1], heights[i]]) for i in range(len(model_points))]


def _layout_points(scene, floor_z, model_points, model_classes, rng, cfg) -> tuple[list[np.ndarray], list[str]]:
    """Placed points (scene coordinates) of every model by the layout recipe, and how each
    was placed ("against_wall", "on_support", "neighbour", "free" or "random": the
    fallback for models no layout spot was found for)."""
    rules = load_layout_rules(cfg.layout_rules)
    layout = analyse_scene(scene, float(floor_z), cfg.layout_cell, cfg.floor_tolerance, rules.support_height)
    settings = PlacementSettings(rules, cfg.layout_overlap, cfg.layout_tries)
    classes = list(model_classes) if model_classes is not None else [None] * len(model_points)
    placed: list[np.ndarray | None] = [None] * len(model_points)
    how = ["random"] * len(model_points)
    for index in placement_order(classes, rules):
        points, rule = place_model(layout, model_points[index], classes[index], rng, settings)
        if points is not None:
            placed[index], how[index] = points, rule
    missing = [i for i, points in enumerate(placed) if points is None]
    if missing:
        log.debug("layout: no free spot for %d of %d models; placing them at random", len(missing), len(placed))
        offsets = _random_offsets(scene, floor_z, [model_points[i] for i in missing], rng, cfg)
        for index, offset in zip(missing, offsets):
            placed[index] = model_points[index] + offset
    return placed, how


def footprint_volume_mask(points: np.ndarray, model_points: np.ndarray, margin: float) -> np.ndarray:
    """(N,) bool: which ``points`` lie in a model's footprint volume.

    points: (N, 3) float scene points; model_points: (P, 3) float, the placed model.
    The volume is the model's xy convex hull with every edge pushed out by ``margin``
    metres (a mitred offset), between its lowest point - ``margin`` and its highest
    point + ``margin``.  A model whose footprint has no area (a line or a point) uses its
    xy bounding box grown by ``margin``.
    """
    xyz = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    model = np.asarray(model_points, dtype=np.float64).reshape(-1, 3)
    if len(model) == 0 or len(xyz) == 0:
        return np.zeros(len(xyz), dtype=bool)
    z_ok = (xyz[:, 2] >= model[:, 2].min() - margin) & (xyz[:, 2] <= model[:, 2].max() + margin)
    low, high = model[:, :2].min(axis=0) - margin, model[:, :2].max(axis=0) + margin
    inside = z_ok & np.all((xyz[:, :2] >= low) & (xyz[:, :2] <= high), axis=1)
    try:
        hull = ConvexHull(model[:, :2])
    except QhullError:
        return inside
    candidates = np.flatnonzero(inside)
    # equations: unit outward normal (a, b) and offset c, inside the hull where a x + b y + c <= 0.
    distance = xyz[candidates, :2] @ hull.equations[:, :2].T + hull.equations[:, 2]
    inside[candidates] = np.all(distance <= margin, axis=1)
    return inside


def mix_models_into_scene(
    scene_points: np.ndarray,
    models: list[tuple[np.ndarray, int]],
    rng: np.random.Generator,
    cfg: MixConfig | None = None,
    floor_z: float | None = None,
    scene_extras: dict[str, np.ndarray] | None = None,
    model_classes: list[str] | None = None,
) -> dict:
    """Stand each model on the scan's floor (or a support) and merge the points.

    scene_points: (S, 3) float, metres, z up.
    models: [(points (P_i, 3) float, label int)], model coordinates: xy centre at 0 and
    z = 0 the floor contact (as ``augment_model`` returns them).
    ``cfg.placement == "random"``: each model keeps its orientation; it is moved to a
    random floor position (chosen clear of the models placed before it when the floor
    allows) and lifted so its z = 0 is at the floor: the median height of the floor points
    (within ``cfg.floor_tolerance`` of ``floor_z``) under its footprint, as floors are
    seldom exactly level, else ``floor_z``.
    ``cfg.placement == "layout"``: each model goes to free floor space (rotated about z
    where a class rule asks: against a wall, on a support surface, facing a table), see
    ``cad2scan.align.layout``; models no spot is found for are placed at random.  The
    output then also holds ``placement``: (M,) str, how each model was placed.
    ``cfg.region == "replace"``: scene points inside each placed model's footprint volume
    (``footprint_volume_mask``) are erased before the ``overlap`` handling.
    floor_z: floor height; detected with ``detect_floor_height`` when None.
    scene_extras: per-scene-point arrays (S, ...) returned filtered like the scene.
    model_classes: CAD class name of each model (for the layout class rules); None: no
    class rules.
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
    if model_classes is not None and len(model_classes) != len(models):
        raise ValueError(f"model_classes has {len(model_classes)} names for {len(models)} models")
    if floor_z is None:
        floor_z = detect_floor_height(scene)

    model_points = [np.asarray(points, dtype=np.float64).reshape(-1, 3) for points, _ in models]
    how = None
    if cfg.placement == "layout" and len(models) and len(scene):
        placed_points, how = _layout_points(scene, floor_z, model_points, model_classes, rng, cfg)
    else:
        offsets = _random_offsets(scene, floor_z, model_points, rng, cfg)
        placed_points = [points + offset for points, offset in zip(model_points, offsets)]
    placed = [PlacedModel(points.astype(np.float32), int(label), index)
              for index, ((_, label), points) in enumerate(zip(models, placed_points))]

    overlap_filtered = cfg.overlap == "filter" or (
        cfg.overlap == "random" and bool(rng.random() < 0.5)
    )
    scene_index = np.arange(len(scene), dtype=np.int64)
    if cfg.region == "replace" and len(scene):
        erased = np.zeros(len(scene), dtype=bool)
        for model in placed:
            erased |= footprint_volume_mask(scene, model.points, cfg.region_margin)
        scene_index = np.flatnonzero(~erased)
    synthetic = [m.points for m in placed if len(m.points)]
    if overlap_filtered and synthetic and len(scene_index):
        tree = cKDTree(np.concatenate(synthetic).astype(np.float64))
        dist, _ = tree.query(scene[scene_index].astype(np.float64), k=1, distance_upper_bound=cfg.overlap_radius)
        scene_index = scene_index[~(dist <= cfg.overlap_radius)]
    out = _assemble(scene[scene_index], scene_index, placed, overlap_filtered)
    for key, value in extras.items():
        out[key] = np.asarray(value)[scene_index]
    if how is not None:
        out["placement"] = np.array(how)
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
