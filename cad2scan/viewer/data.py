"""What the HTML viewer shows, and its compact encoding inside the page.

A page holds one or more :class:`ViewScene` point clouds (a scan, or mixed training
samples) sharing one class list. Each is packed into a JSON-able dict of base64 strings:

* ``coord``: (n, 3) uint16 little-endian, point-major, quantised on the scene's bounding
  box: ``metres = origin + q * step`` (error at most ``step / 2`` per axis, i.e.
  extent / 131070: 0.08 mm for a 10 m room).
* ``prediction`` / ``ground_truth``: (n,) uint8 class index, ``NO_VALUE`` (255) for
  ignored or unlabelled points.
* ``probability``: (n, C) uint8, point-major, ``round(p * 255)`` (error at most 1/510).
* ``model``: (n,) uint8 source model of a training sample, ``NO_VALUE`` for scene points.
* ``synthetic``: (n,) uint8, 1 for CAD-model points.  ``rgb``: (n, 3) uint8 scan colours.

:func:`unpack_scene` decodes a packed scene back into arrays (used by the tests and for
checking a page).
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass, field

import numpy as np

from cad2scan.errors import Cad2ScanError, ConfigError

log = logging.getLogger(__name__)

NO_VALUE = 255  # uint8 marker: no class / scene point
MAX_CLASSES = 255  # class indices must fit below NO_VALUE
MAX_MODELS = 255
QUANT_LEVELS = 65535  # uint16 coordinate steps across the bounding box
DEFAULT_MAX_POINTS = 300_000


@dataclass
class ViewScene:
    """One point cloud of the page and its per-point layers (all optional but ``coord``).

    coord:         (N, 3) float, metres, z up.
    prediction:    (N,) int class index in 0..C-1.
    ground_truth:  (N,) int class index, -1 for ignored / unlabelled points.
    probabilities: (N, C) float in [0, 1].
    model_id:      (N,) int source model of a training sample, -1 for scene points.
    model_labels:  {model id: class index} of the models in ``model_id`` (for the legend).
    is_synthetic:  (N,) bool, True for CAD-model points.
    color:         (N, 3) uint8 scan colours.
    """

    name: str
    coord: np.ndarray
    prediction: np.ndarray | None = None
    ground_truth: np.ndarray | None = None
    probabilities: np.ndarray | None = None
    model_id: np.ndarray | None = None
    model_labels: dict[int, int] = field(default_factory=dict)
    is_synthetic: np.ndarray | None = None
    color: np.ndarray | None = None

    def layers(self) -> list[str]:
        """Names of the per-point arrays present, besides ``coord``."""
        return [name for name in _LAYER_FIELDS if getattr(self, name) is not None]


_LAYER_FIELDS = ("prediction", "ground_truth", "probabilities", "model_id", "is_synthetic", "color")


def check_scene(scene: ViewScene, num_classes: int) -> None:
    """Raise Cad2ScanError naming the scene and the array when shapes or values do not fit."""
    coord = np.asarray(scene.coord)
    if coord.ndim != 2 or coord.shape[1] != 3:
        raise Cad2ScanError(f"view scene {scene.name!r}: coord must be (N, 3), got shape {coord.shape}")
    n = len(coord)
    if n == 0:
        raise Cad2ScanError(f"view scene {scene.name!r}: no points to show")
    if not np.isfinite(coord).all():
        raise Cad2ScanError(f"view scene {scene.name!r}: coordinates contain NaN or infinite values")
    if num_classes > MAX_CLASSES:
        raise ConfigError(f"the viewer shows at most {MAX_CLASSES} classes, got {num_classes}")
    for name in _LAYER_FIELDS:
        value = getattr(scene, name)
        if value is not None and len(value) != n:
            raise Cad2ScanError(f"view scene {scene.name!r}: {name} has {len(value)} rows for {n} points")
    for name, low in (("prediction", 0), ("ground_truth", -1)):
        value = getattr(scene, name)
        if value is not None and len(value) and (value.min() < low or value.max() >= num_classes):
            raise Cad2ScanError(f"view scene {scene.name!r}: {name} values {value.min()}..{value.max()} "
                                f"outside {low}..{num_classes - 1}")
    if scene.probabilities is not None and np.asarray(scene.probabilities).shape != (n, num_classes):
        raise Cad2ScanError(f"view scene {scene.name!r}: probabilities must be ({n}, {num_classes}), "
                            f"got {np.asarray(scene.probabilities).shape}")
    if scene.model_id is not None and len(scene.model_id) and scene.model_id.max() >= MAX_MODELS:
        raise Cad2ScanError(f"view scene {scene.name!r}: at most {MAX_MODELS} source models per scene")
    if scene.color is not None and np.asarray(scene.color).shape != (n, 3):
        raise Cad2ScanError(f"view scene {scene.name!r}: color must be ({n}, 3)")


def subsample_indices(num_points: int, max_points: int, rng: np.random.Generator) -> np.ndarray:
    """(m,) int64 sorted indices of a uniform random subset of size ``min(num_points, max_points)``."""
    if max_points < 1:
        raise ConfigError(f"max_points must be a positive integer, got {max_points}")
    if num_points <= max_points:
        return np.arange(num_points, dtype=np.int64)
    return np.sort(rng.choice(num_points, size=max_points, replace=False)).astype(np.int64)


def take_points(scene: ViewScene, rows: np.ndarray) -> ViewScene:
    """The scene restricted to ``rows`` (every layer alike)."""
    kept = {name: None if getattr(scene, name) is None else np.asarray(getattr(scene, name))[rows]
            for name in _LAYER_FIELDS}
    return ViewScene(scene.name, np.asarray(scene.coord)[rows], model_labels=dict(scene.model_labels), **kept)


def _b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")


def _class_bytes(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.int64)
    return np.where(values < 0, NO_VALUE, values).astype(np.uint8)


def quantise_coords(coord: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, 3) float metres -> ((N, 3) uint16, origin (3,) float64, step (3,) float64 metres)."""
    coord = np.asarray(coord, dtype=np.float64)
    origin = coord.min(axis=0)
    extent = coord.max(axis=0) - origin
    step = np.where(extent > 0, extent / QUANT_LEVELS, 1.0)
    quantised = np.clip(np.rint((coord - origin) / step), 0, QUANT_LEVELS).astype("<u2")
    return quantised, origin, step


def pack_scene(scene: ViewScene, num_classes: int, total_points: int | None = None) -> dict:
    """JSON-able dict of the scene: metadata and base64 layers (see the module docstring).

    total_points: points of the scene before subsampling (default: its point count).
    """
    check_scene(scene, num_classes)
    quantised, origin, step = quantise_coords(scene.coord)
    packed = {
        "name": scene.name,
        "count": int(len(quantised)),
        "total": int(total_points if total_points is not None else len(quantised)),
        "origin": [float(v) for v in origin],
        "step": [float(v) for v in step],
        "coord": _b64(quantised),
        "layers": {},
        "models": [],
    }
    layers = packed["layers"]
    if scene.prediction is not None:
        layers["prediction"] = _b64(_class_bytes(scene.prediction))
    if scene.ground_truth is not None:
        layers["ground_truth"] = _b64(_class_bytes(scene.ground_truth))
    if scene.probabilities is not None:
        probabilities = np.clip(np.asarray(scene.probabilities, dtype=np.float64), 0.0, 1.0)
        layers["probability"] = _b64(np.rint(probabilities * 255).astype(np.uint8))
    if scene.model_id is not None:
        layers["model"] = _b64(_class_bytes(scene.model_id))
        present = sorted(int(m) for m in np.unique(scene.model_id) if m >= 0)
        packed["models"] = [{"id": m, "label": int(scene.model_labels.get(m, -1))} for m in present]
    if scene.is_synthetic is not None:
        layers["synthetic"] = _b64(np.asarray(scene.is_synthetic, dtype=bool).astype(np.uint8))
    if scene.color is not None:
        layers["rgb"] = _b64(np.asarray(scene.color, dtype=np.uint8))
    return packed


def _unb64(text: str, dtype, shape) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype=dtype).reshape(shape)


def unpack_scene(packed: dict, num_classes: int) -> dict[str, np.ndarray]:
    """Decode :func:`pack_scene`'s output: ``coord`` (n, 3) float64 metres, and the layers
    present among ``prediction``, ``ground_truth`` (n,) int64 (-1 = none), ``probabilities``
    (n, C) float64, ``model_id`` (n,) int64 (-1 = scene), ``is_synthetic`` (n,) bool,
    ``color`` (n, 3) uint8."""
    n = packed["count"]
    quantised = _unb64(packed["coord"], "<u2", (n, 3)).astype(np.float64)
    out = {"coord": np.asarray(packed["origin"]) + quantised * np.asarray(packed["step"])}
    layers = packed["layers"]

    def classes(key):
        values = _unb64(layers[key], np.uint8, (n,)).astype(np.int64)
        return np.where(values == NO_VALUE, -1, values)

    if "prediction" in layers:
        out["prediction"] = classes("prediction")
    if "ground_truth" in layers:
        out["ground_truth"] = classes("ground_truth")
    if "probability" in layers:
        out["probabilities"] = _unb64(layers["probability"], np.uint8, (n, num_classes)) / 255.0
    if "model" in layers:
        out["model_id"] = classes("model")
    if "synthetic" in layers:
        out["is_synthetic"] = _unb64(layers["synthetic"], np.uint8, (n,)).astype(bool)
    if "rgb" in layers:
        out["color"] = _unb64(layers["rgb"], np.uint8, (n, 3)).copy()
    return out
