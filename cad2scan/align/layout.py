"""Layout-aware placement of CAD models in a scan: free floor space, walls, supports, neighbours.

The scan is first analysed on a 2D grid of ``cell`` metres (``analyse_scene``):

* floor cells: observed floor (points within the floor tolerance of the floor height);
* occupied cells: points between ``clearance`` above the floor and 2 m;
* wall cells: tall vertical structure (points in most 10 cm height slices from 0.3 to 1.8 m);
* support cells: a dense horizontal layer 0.4 - 1.1 m above the floor (tables, desks,
  counters), grouped into surfaces of one height each.

A model is placed by trying positions (and, for class rules, orientations) and keeping the
first whose footprint fits: its points rasterised on a grid of ``cell / 2`` give columns
from a little above its base up to 2 m (on a support: 30 cm above its top), as a scan only
shows surfaces and the space under a scanned top is not free; a position is valid when at most
``overlap_tolerance`` of those columns hold a scene point (or a point of a model placed
before it), no wall crosses it, and the footprint stands on floor (or on the support).  Class rules
(``configs/layout_rules.yaml``) put some classes against walls, some on supports and some
near tables.  Models are rotated about z only, about their xy centre.

Every function is deterministic given its ``numpy.random.Generator``.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from scipy import ndimage
from scipy.spatial import cKDTree

from cad2scan.errors import ConfigError

log = logging.getLogger(__name__)

RULES_DIR = Path(__file__).resolve().parents[1] / "configs"

_FLOOR_CLEARANCE = 0.08  # metres above the local floor from which scene points count as obstacles
_SUPPORT_CLEARANCE = 0.04  # same, above a support surface
_TOP_MARGIN = 0.02  # metres above the model's top still counted as its volume
_SUPPORT_HEADROOM = 0.3  # metres above a model on a support that must be free too
_MAX_HEIGHT = 2.0  # metres above the floor below which points are occupancy
_WALL_BAND = (0.3, 1.8)  # metres above the floor where wall cells must be filled
_WALL_SLICE = 0.1
_WALL_FILL = 0.6  # fraction of the slices of the band that a wall cell fills
_SUPPORT_BIN = 0.02
_SUPPORT_SHARE = 0.4  # a support layer holds this share of the cell's points above the floor
_SUPPORT_MIN_POINTS = 2
_SUPPORT_MIN_AREA = 0.06  # m^2: smaller horizontal patches (seats of stools, books) are no support
_SUPPORT_FIT = 0.6  # fraction of a model's footprint that must be on the support
_FLOOR_FIT = 0.8  # fraction of a model's footprint that must be on (observed or hole-filled) floor
_NEAR_WALL = 0.6  # metres: floor cells this close to a wall are candidate against-wall spots
_WALL_FIT_RADIUS = 0.5  # metres of wall around a spot used to fit the wall line
_WALL_STRAIGHTNESS = 0.1  # largest ratio of the wall points' spread across / along the line
_FOOTPRINT_POINTS = 1024  # model points used to rasterise a footprint
_KEY_OFFSET = 1 << 20
_KEY_BASE = 1 << 21

RULE_KINDS = ("against_wall", "on_support", "neighbour", "free")


# ------------------------------------------------------------------ rules (data)


@dataclass(frozen=True)
class LayoutRules:
    """Which classes go where (see ``configs/layout_rules.yaml``); classes are CAD names."""

    against_wall: frozenset[str] = frozenset()
    on_support: frozenset[str] = frozenset()
    neighbours: dict[str, tuple[str, ...]] = field(default_factory=dict)
    wall_gap: tuple[float, float] = (0.01, 0.05)
    neighbour_distance: tuple[float, float] = (0.3, 1.0)
    support_height: tuple[float, float] = (0.4, 1.1)

    def rule_of(self, cad_class: str | None) -> str:
        """One of ``RULE_KINDS`` for a class (``free`` for None or an unlisted class)."""
        if cad_class is None:
            return "free"
        if cad_class in self.against_wall:
            return "against_wall"
        if cad_class in self.on_support:
            return "on_support"
        if cad_class in self.neighbours:
            return "neighbour"
        return "free"


def _name_list(raw: dict, key: str, source: str) -> frozenset[str]:
    value = raw.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{source}: key {key!r} must be a list of class names, got {value!r}")
    return frozenset(value)


def _range(raw: dict, key: str, default: tuple[float, float], source: str) -> tuple[float, float]:
    value = raw.get(key, list(default))
    ok = (isinstance(value, (list, tuple)) and len(value) == 2
          and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
          and 0 <= value[0] <= value[1])
    if not ok:
        raise ConfigError(f"{source}: key {key!r} must be [low, high] metres with 0 <= low <= high, got {value!r}")
    return float(value[0]), float(value[1])


def layout_rules_from_dict(raw: dict, source: str = "<dict>") -> LayoutRules:
    """Validate a rules mapping (the YAML file's content); errors name ``source`` and the key."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: layout rules must be a mapping, got {type(raw).__name__}")
    known = {"name", "against_wall", "on_support", "neighbours", "wall_gap", "neighbour_distance", "support_height"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    neighbours_raw = raw.get("neighbours", {}) or {}
    if not isinstance(neighbours_raw, dict):
        raise ConfigError(f"{source}: key 'neighbours' must map a class to a list of classes")
    neighbours = {}
    for name, near in neighbours_raw.items():
        if not isinstance(near, list) or not near or not all(isinstance(v, str) for v in near):
            raise ConfigError(f"{source}: neighbours.{name} must be a non-empty list of class names, got {near!r}")
        neighbours[str(name)] = tuple(near)
    rules = LayoutRules(
        against_wall=_name_list(raw, "against_wall", source),
        on_support=_name_list(raw, "on_support", source),
        neighbours=neighbours,
        wall_gap=_range(raw, "wall_gap", LayoutRules.wall_gap, source),
        neighbour_distance=_range(raw, "neighbour_distance", LayoutRules.neighbour_distance, source),
        support_height=_range(raw, "support_height", LayoutRules.support_height, source),
    )
    groups = [("against_wall", rules.against_wall), ("on_support", rules.on_support),
              ("neighbours", frozenset(rules.neighbours))]
    for i, (name_a, a) in enumerate(groups):
        for name_b, b in groups[i + 1:]:
            if a & b:
                raise ConfigError(f"{source}: class(es) {', '.join(sorted(a & b))} in both {name_a} and {name_b}")
    return rules


@functools.lru_cache(maxsize=8)
def load_layout_rules(name_or_path: str = "layout_rules") -> LayoutRules:
    """Rules from ``configs/<name>.yaml`` (a preset name) or a YAML file path (cached)."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = RULES_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise ConfigError(f"layout rules {name_or_path!r}: no file {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: not valid YAML ({error})") from None
    return layout_rules_from_dict(raw, str(path))


# ------------------------------------------------------------------ scene analysis


@dataclass
class SceneLayout:
    """Occupancy analysis of a scan on a 2D grid; grids are (nx, ny), cell (i, j) covers
    ``origin + [i, i+1) * cell`` x ``origin + [j, j+1) * cell``.

    points: (S, 3) float64 scene points.  floor: observed floor cells (holes of one cell
    filled).  floor_height: per-cell mean floor height (NaN where none).  occupied: points
    between the clearance and 2 m above the floor.  wall: tall vertical structure.
    support_height: height (metres, absolute z) of the support surface on a cell, NaN where
    none.  support_id: its surface index (-1 where none).
    fine_keys / fine_order: scene points sorted by their ``cell / 2`` grid key (collision tests).
    placed_*: points of models placed so far, by fine key (obstacles for later models), and
    placed_cells: {cad class: (nx, ny) bool} footprints of placed models.
    cache: derived grids shared by the placements in this scene.
    """

    points: np.ndarray
    floor_z: float
    origin: np.ndarray
    cell: float
    floor: np.ndarray
    floor_height: np.ndarray
    occupied: np.ndarray
    wall: np.ndarray
    support_height: np.ndarray
    support_id: np.ndarray
    fine_keys: np.ndarray
    fine_order: np.ndarray
    wall_points: np.ndarray
    placed_keys: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    placed_low: np.ndarray = field(default_factory=lambda: np.zeros(0))
    placed_high: np.ndarray = field(default_factory=lambda: np.zeros(0))
    placed_cells: dict = field(default_factory=dict)
    cache: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        return self.floor.shape

    @property
    def fine(self) -> float:
        return self.cell / 2

    def cell_of(self, xy: np.ndarray) -> np.ndarray:
        """(..., 2) int64 grid indices of xy positions (may fall outside the grid)."""
        return np.floor((np.asarray(xy) - self.origin) / self.cell).astype(np.int64)

    def centre_of(self, ij: np.ndarray) -> np.ndarray:
        """(..., 2) float64 xy centres of grid cells."""
        return self.origin + (np.asarray(ij) + 0.5) * self.cell


def _fine_keys(xy: np.ndarray, origin: np.ndarray, fine: float) -> np.ndarray:
    ij = np.floor((xy - origin) / fine).astype(np.int64) + _KEY_OFFSET
    return ij[:, 0] * _KEY_BASE + ij[:, 1]


def analyse_scene(
    points: np.ndarray,
    floor_z: float,
    cell: float = 0.1,
    floor_tolerance: float = 0.05,
    support_band: tuple[float, float] = (0.4, 1.1),
) -> SceneLayout:
    """Occupancy grid of a scan (see ``SceneLayout``).

    points: (S, 3) float, metres, z up, S >= 1.  floor_z: floor height (metres).
    cell: grid cell size (metres).  floor_tolerance: height band around the floor that is
    floor.  support_band: heights above the floor where support surfaces are looked for.
    """
    xyz = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    xyz = xyz[np.all(np.isfinite(xyz), axis=1)]
    if len(xyz) == 0:
        xyz = np.zeros((1, 3)) + [0.0, 0.0, floor_z]
    origin = xyz[:, :2].min(axis=0) - cell
    ij = np.floor((xyz[:, :2] - origin) / cell).astype(np.int64)
    shape = tuple(int(v) for v in ij.max(axis=0) + 2)
    flat = ij[:, 0] * shape[1] + ij[:, 1]
    n_cells = shape[0] * shape[1]
    height = xyz[:, 2] - floor_z

    on_floor = np.abs(height) <= floor_tolerance
    floor_count = np.bincount(flat[on_floor], minlength=n_cells)
    floor_sum = np.bincount(flat[on_floor], weights=xyz[on_floor, 2], minlength=n_cells)
    floor_height = np.where(floor_count > 0, floor_sum / np.maximum(floor_count, 1), np.nan).reshape(shape)
    observed = floor_count.reshape(shape) > 0
    floor = observed | ndimage.binary_closing(observed, np.ones((3, 3), bool), border_value=0)

    above = (height > _FLOOR_CLEARANCE) & (height < _MAX_HEIGHT)
    above_count = np.bincount(flat[above], minlength=n_cells)
    occupied = (above_count >= 2).reshape(shape)

    in_band = (height >= _WALL_BAND[0]) & (height < _WALL_BAND[1])
    n_slices = int(round((_WALL_BAND[1] - _WALL_BAND[0]) / _WALL_SLICE))
    slices = np.minimum(((height[in_band] - _WALL_BAND[0]) / _WALL_SLICE).astype(np.int64), n_slices - 1)
    filled = np.unique(flat[in_band] * n_slices + slices) // n_slices
    wall = (np.bincount(filled, minlength=n_cells) >= _WALL_FILL * n_slices).reshape(shape)

    support_height, support_id = _find_supports(flat, xyz[:, 2], height, above_count, wall, shape,
                                                support_band, cell)
    fine_keys = _fine_keys(xyz[:, :2], origin, cell / 2)
    fine_order = np.argsort(fine_keys, kind="stable")
    wall_mask = wall.reshape(-1)[flat] & in_band
    return SceneLayout(
        points=xyz, floor_z=float(floor_z), origin=origin, cell=float(cell), floor=floor,
        floor_height=floor_height, occupied=occupied, wall=wall, support_height=support_height,
        support_id=support_id, fine_keys=fine_keys[fine_order], fine_order=fine_order,
        wall_points=xyz[wall_mask, :2],
    )


def _find_supports(flat, z, height, above_count, wall, shape, band, cell):
    """Per-cell support height (NaN where none) and surface id (-1), see ``analyse_scene``."""
    n_cells = shape[0] * shape[1]
    low, high = band
    in_band = (height >= low - _SUPPORT_BIN) & (height <= high + _SUPPORT_BIN)
    n_bins = int(np.ceil((high - low) / _SUPPORT_BIN)) + 3
    bins = np.clip(((height[in_band] - low) / _SUPPORT_BIN).astype(np.int64) + 1, 0, n_bins - 1)
    cells = flat[in_band]
    used, inverse = np.unique(cells, return_inverse=True)
    histogram = np.zeros((len(used), n_bins))
    np.add.at(histogram, (inverse, bins), 1.0)
    smooth = histogram.copy()
    smooth[:, 1:] += histogram[:, :-1]
    smooth[:, :-1] += histogram[:, 1:]
    peak_bin = smooth.argmax(axis=1)
    peak = smooth[np.arange(len(used)), peak_bin]
    total = above_count[used]
    peak_height = low + (peak_bin - 1 + 0.5) * _SUPPORT_BIN
    good = ((peak >= _SUPPORT_MIN_POINTS) & (peak >= _SUPPORT_SHARE * total)
            & (peak_height >= low) & (peak_height <= high) & ~wall.reshape(-1)[used])
    # Refine: mean height of the points within one bin of the peak.
    sums = np.zeros(len(used))
    counts = np.zeros(len(used))
    near = np.abs(bins - peak_bin[inverse]) <= 1
    np.add.at(sums, inverse[near], z[in_band][near])
    np.add.at(counts, inverse[near], 1.0)
    cell_height = np.full(n_cells, np.nan)
    cell_height[used[good]] = sums[good] / np.maximum(counts[good], 1)
    cell_height = cell_height.reshape(shape)

    labels, count = ndimage.label(np.isfinite(cell_height), np.ones((3, 3), bool))
    support_height = np.full(shape, np.nan)
    support_id = np.full(shape, -1, dtype=np.int64)
    next_id = 0
    for component in range(1, count + 1):
        mask = labels == component
        level = float(np.median(cell_height[mask]))
        mask &= np.abs(cell_height - level) <= 0.05
        if mask.sum() * cell * cell < _SUPPORT_MIN_AREA:
            continue
        support_height[mask] = level
        support_id[mask] = next_id
        next_id += 1
    return support_height, support_id


# ------------------------------------------------------------------ footprints and collisions


def _rotate(points: np.ndarray, angle: float) -> np.ndarray:
    cos, sin = np.cos(angle), np.sin(angle)
    out = points.copy()
    out[:, 0] = cos * points[:, 0] - sin * points[:, 1]
    out[:, 1] = sin * points[:, 0] + cos * points[:, 1]
    return out


def _footprint_subset(points: np.ndarray) -> np.ndarray:
    if len(points) <= _FOOTPRINT_POINTS:
        return points
    return points[:: int(np.ceil(len(points) / _FOOTPRINT_POINTS))]


def overlap_fraction(
    layout: SceneLayout, model_points: np.ndarray, base_z: float, clearance: float, headroom: float,
    exclude: tuple[np.ndarray, np.ndarray, float] | None = None,
) -> float:
    """Share of a placed model's footprint columns that hold a scene or placed-model point.

    model_points: (P, 3) float, scene coordinates with its bottom at ``base_z``.  The
    model's columns are the ``cell / 2`` grid cells its points fall in; each spans heights
    from ``base_z + clearance`` to ``base_z + headroom`` or to the column's highest model
    point + 2 cm, whichever is higher (scans are surfaces: the space under a scanned top
    is no free space, so the column reaches up to ``headroom``).  exclude: (origin (2,),
    normal (2,), offset): scene points with ``(xy - origin) . normal < offset`` are ignored
    (the wall a model is set against).  Returns a fraction in [0, 1] (0 for no points).
    """
    if len(model_points) == 0:
        return 0.0
    keys = _fine_keys(model_points[:, :2], layout.origin, layout.fine)
    unique, inverse = np.unique(keys, return_inverse=True)
    top = np.full(len(unique), -np.inf)
    np.maximum.at(top, inverse, model_points[:, 2])
    low_z, high_z = base_z + clearance, np.maximum(top + _TOP_MARGIN, base_z + headroom)
    hit = np.zeros(len(unique), dtype=bool)

    start = np.searchsorted(layout.fine_keys, unique, side="left")
    stop = np.searchsorted(layout.fine_keys, unique, side="right")
    counts = stop - start
    if counts.sum():
        column = np.repeat(np.arange(len(unique)), counts)
        position = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts) + np.repeat(start, counts)
        scene = layout.points[layout.fine_order[position]]
        inside = (scene[:, 2] > low_z) & (scene[:, 2] < high_z[column])
        if exclude is not None:
            origin, normal, offset = exclude
            inside &= (scene[:, :2] - origin) @ normal >= offset
        hit[column[inside]] = True
        # A wall (or other tall structure) through the footprint is never tolerated.
        coarse = np.column_stack([unique // _KEY_BASE, unique % _KEY_BASE]) - _KEY_OFFSET
        if np.any(hit & _grid_values(layout.wall, coarse // 2, False)):
            return 1.0
    if len(layout.placed_keys):
        where = np.searchsorted(layout.placed_keys, unique)
        where = np.minimum(where, len(layout.placed_keys) - 1)
        same = layout.placed_keys[where] == unique
        hit |= same & (layout.placed_low[where] < high_z) & (layout.placed_high[where] > low_z)
    return float(hit.mean())


def _footprint_cells(layout: SceneLayout, model_points: np.ndarray) -> np.ndarray:
    """(K, 2) int64 unique grid cells under a placed model's points."""
    cells = layout.cell_of(model_points[:, :2]) + _KEY_OFFSET
    keys = np.unique(cells[:, 0] * _KEY_BASE + cells[:, 1])
    return np.column_stack([keys // _KEY_BASE, keys % _KEY_BASE]) - _KEY_OFFSET


def _grid_values(grid: np.ndarray, cells: np.ndarray, fill):
    inside = np.all((cells >= 0) & (cells < np.array(grid.shape)), axis=1)
    values = np.full(len(cells), fill, dtype=grid.dtype)
    values[inside] = grid[cells[inside, 0], cells[inside, 1]]
    return values


def add_placed_model(layout: SceneLayout, points: np.ndarray, cad_class: str | None) -> None:
    """Record a placed model (scene coordinates, (P, 3)) as an obstacle for the next ones."""
    if len(points) == 0:
        return
    keys = np.concatenate([layout.placed_keys, _fine_keys(points[:, :2], layout.origin, layout.fine)])
    low = np.concatenate([layout.placed_low, points[:, 2]])
    high = np.concatenate([layout.placed_high, points[:, 2]])
    unique, inverse = np.unique(keys, return_inverse=True)
    layout.placed_low = np.full(len(unique), np.inf)
    layout.placed_high = np.full(len(unique), -np.inf)
    np.minimum.at(layout.placed_low, inverse, low)
    np.maximum.at(layout.placed_high, inverse, high)
    layout.placed_keys = unique
    if cad_class is not None:
        cells = _footprint_cells(layout, points)
        inside = np.all((cells >= 0) & (cells < np.array(layout.shape)), axis=1)
        mask = layout.placed_cells.setdefault(cad_class, np.zeros(layout.shape, dtype=bool))
        mask[cells[inside, 0], cells[inside, 1]] = True


# ------------------------------------------------------------------ orientation of a model


def back_direction(points: np.ndarray) -> np.ndarray:
    """(2,) unit xy vector from a model's centre towards its back.

    points: (P, 3) float, model coordinates (xy centre at 0).  The footprint's sides are
    those of its smallest-area bounding rectangle; the back is the side its tall parts
    lean to (a headboard, a toilet tank, a backrest): the side of the rectangle's axis
    along which the points of the top 15 % of its height lie farthest off centre (by
    more than 15 % of the extent along it); when they are centred, a long side.
    """
    points = _footprint_subset(np.asarray(points, dtype=np.float64))
    xy = points[:, :2]
    if len(xy) < 3:
        return np.array([1.0, 0.0])
    angles = np.linspace(0.0, np.pi / 2, 18, endpoint=False)
    u = xy @ np.stack([np.cos(angles), np.sin(angles)])  # (P, A) coordinates along each candidate axis
    v = xy @ np.stack([-np.sin(angles), np.cos(angles)])
    areas = np.ptp(u, axis=0) * np.ptp(v, axis=0)
    angle = float(angles[int(np.argmin(areas))])
    axes = np.array([[np.cos(angle), np.sin(angle)], [-np.sin(angle), np.cos(angle)]])
    along = xy @ axes.T  # (P, 2) coordinates in the rectangle's frame
    low, high = along.min(axis=0), along.max(axis=0)
    extent = np.maximum(high - low, 1e-9)
    z = points[:, 2]
    tall = z >= z.max() - 0.15 * max(float(np.ptp(z)), 1e-9)
    lean = (along[tall].mean(axis=0) - (low + high) / 2) / extent  # (2,) relative offset per axis
    axis = int(np.argmax(np.abs(lean)))
    if abs(lean[axis]) > 0.15:
        return axes[axis] * np.sign(lean[axis])
    # no side is taller: a long side (its normal is the rectangle's short axis)
    return axes[int(np.argmin(extent))]


def turn_back_towards(points: np.ndarray, back: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Rotate model points about z (through the xy origin) so ``back`` points along ``direction``."""
    angle = np.arctan2(direction[1], direction[0]) - np.arctan2(back[1], back[0])
    return _rotate(np.asarray(points, dtype=np.float64), float(angle))


# ------------------------------------------------------------------ placement strategies


@dataclass
class PlacementSettings:
    """Knobs of layout placement (from ``MixConfig``): tolerance, tries, rules."""

    rules: LayoutRules
    overlap_tolerance: float = 0.05
    tries: int = 30


def _local_floor(layout: SceneLayout, cells: np.ndarray) -> float:
    heights = _grid_values(layout.floor_height, cells, np.nan)
    heights = heights[np.isfinite(heights)]
    return float(np.median(heights)) if len(heights) else layout.floor_z


def _floor_fit(layout: SceneLayout, cells: np.ndarray) -> float:
    return float(_grid_values(layout.floor, cells, False).mean()) if len(cells) else 0.0


def _try_floor_spot(layout, points, xy, settings, exclude=None):
    """Model points (P, 3) moved to xy on the local floor if the spot is free, else None."""
    sub = _footprint_subset(points) + np.array([xy[0], xy[1], 0.0])
    cells = _footprint_cells(layout, sub)
    if _floor_fit(layout, cells) < _FLOOR_FIT:
        return None
    base = _local_floor(layout, cells)
    sub[:, 2] += base
    if overlap_fraction(layout, sub, base, _FLOOR_CLEARANCE, _MAX_HEIGHT, exclude) > settings.overlap_tolerance:
        return None
    return points + np.array([xy[0], xy[1], base])


def _random_cells(mask: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    cells = np.argwhere(mask)
    if len(cells) == 0:
        return cells
    return cells[rng.integers(0, len(cells), size=count)]


def _jittered_centres(layout: SceneLayout, cells: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return layout.origin + (cells + rng.random(cells.shape)) * layout.cell


def place_free(layout, points, rng, settings) -> np.ndarray | None:
    """A free floor spot for the model (its orientation kept); None when none is found."""
    centres = _jittered_centres(layout, _random_cells(layout.floor & ~layout.occupied, settings.tries, rng), rng)
    for xy in centres:
        moved = _try_floor_spot(layout, points, xy, settings)
        if moved is not None:
            return moved
    return None


def _wall_frame(layout, spot_xy, wall_cell, tree):
    """(origin on the wall's inner face, unit normal into the room, unit wall direction)."""
    centre = layout.centre_of(wall_cell)
    near = tree.query_ball_point(centre, _WALL_FIT_RADIUS)
    if len(near) < 5:
        return None
    local = layout.wall_points[near]
    mean = local.mean(axis=0)
    _, spread, vt = np.linalg.svd(local - mean, full_matrices=False)
    if spread[1] > _WALL_STRAIGHTNESS * spread[0]:
        return None  # a corner or a pillar, not one straight wall
    direction = vt[0]
    normal = np.array([-direction[1], direction[0]])
    if (spot_xy - mean) @ normal < 0:
        normal = -normal
    face = float(np.quantile((local - mean) @ normal, 0.9))
    return mean + face * normal, normal, direction


def place_against_wall(layout, points, rng, settings) -> np.ndarray | None:
    """The model's back within ``rules.wall_gap`` of a wall, facing into the room; or None."""
    if not layout.wall.any() or len(layout.wall_points) < 5:
        return None
    if "wall" not in layout.cache:  # the same for every model of the scene
        distance, nearest = ndimage.distance_transform_edt(~layout.wall, return_indices=True)
        spots = layout.floor & ~layout.wall & (distance * layout.cell <= _NEAR_WALL)
        layout.cache["wall"] = (spots, nearest, cKDTree(layout.wall_points))
    spots, nearest, tree = layout.cache["wall"]
    cells = _random_cells(spots, settings.tries, rng)
    if len(cells) == 0:
        return None
    back = back_direction(points)
    gap_low, gap_high = settings.rules.wall_gap
    for cell in cells:
        wall_cell = nearest[:, cell[0], cell[1]]
        spot = layout.centre_of(cell)
        frame = _wall_frame(layout, spot, wall_cell, tree)
        if frame is None:
            continue
        face, normal, direction = frame
        turned = turn_back_towards(points, back, -normal)
        depth_behind = float(np.max(turned[:, :2] @ -normal))
        gap = float(rng.uniform(gap_low, gap_high))
        along = float((spot - face) @ direction) + float(rng.uniform(-0.5, 0.5)) * layout.cell
        xy = face + normal * (gap + depth_behind) + direction * along
        moved = _try_floor_spot(layout, turned, xy, settings, exclude=(face, normal, gap + layout.fine / 2))
        if moved is not None:
            return moved
    return None


def place_on_support(layout, points, rng, settings) -> np.ndarray | None:
    """The model standing on a support surface of the scan, at its height; or None."""
    cells = _random_cells(layout.support_id >= 0, settings.tries, rng)
    for cell, xy in zip(cells, _jittered_centres(layout, cells, rng)):
        level = float(layout.support_height[cell[0], cell[1]])
        surface = layout.support_id[cell[0], cell[1]]
        offset = np.array([xy[0], xy[1], level])
        sub = _footprint_subset(points) + offset
        under = _footprint_cells(layout, sub)
        if (_grid_values(layout.support_id, under, -1) == surface).mean() < _SUPPORT_FIT:
            continue
        headroom = float(np.ptp(points[:, 2])) + _SUPPORT_HEADROOM if len(points) else 0.0
        if overlap_fraction(layout, sub, level, _SUPPORT_CLEARANCE, headroom) > settings.overlap_tolerance:
            continue
        return points + offset
    return None


def place_near(layout, points, rng, settings, near_classes) -> np.ndarray | None:
    """The model on free floor within ``rules.neighbour_distance`` of a table / support, facing
    it (its back turned away); or None when there is no such target or spot."""
    target = layout.support_id >= 0
    for name in near_classes:
        if name in layout.placed_cells:
            target = target | layout.placed_cells[name]
    if not target.any():
        return None
    distance, nearest = ndimage.distance_transform_edt(~target, return_indices=True)
    distance = distance * layout.cell
    low, high = settings.rules.neighbour_distance
    ring = layout.floor & ~target & (distance >= low) & (distance <= high)
    cells = _random_cells(ring, settings.tries, rng)
    back = back_direction(points)
    for cell, xy in zip(cells, _jittered_centres(layout, cells, rng)):
        towards = layout.centre_of(nearest[:, cell[0], cell[1]]) - xy
        norm = float(np.linalg.norm(towards))
        if norm == 0:
            continue
        turned = turn_back_towards(points, back, -towards / norm)
        moved = _try_floor_spot(layout, turned, xy, settings)
        if moved is not None:
            return moved
    return None


def place_model(layout, points, cad_class, rng, settings) -> tuple[np.ndarray | None, str]:
    """Place one model by its class rule, else in free space.

    points: (P, 3) float64 model coordinates (xy centre at 0, bottom at z = 0).
    Returns (placed points (P, 3) float64 or None, the strategy that placed it: a rule
    kind, or "none").  The placed model is recorded as an obstacle for later models.
    """
    rule = settings.rules.rule_of(cad_class)
    placed = None
    if rule == "against_wall":
        placed = place_against_wall(layout, points, rng, settings)
    elif rule == "on_support":
        placed = place_on_support(layout, points, rng, settings)
    elif rule == "neighbour":
        placed = place_near(layout, points, rng, settings, settings.rules.neighbours[cad_class])
    if placed is None and rule != "free":
        log.debug("layout: no %s spot for a %s model; trying free floor space", rule, cad_class)
    if placed is None:
        placed = place_free(layout, points, rng, settings)
        rule = "free" if placed is not None else "none"
    if placed is not None:
        add_placed_model(layout, placed, cad_class)
    return placed, rule


def placement_order(classes: list[str | None], rules: LayoutRules) -> list[int]:
    """Model indices in placement order: models with a neighbour rule last (so the tables
    they stand near are placed first), otherwise the given order."""
    late = [i for i, name in enumerate(classes) if rules.rule_of(name) == "neighbour"]
    return [i for i in range(len(classes)) if i not in set(late)] + late
