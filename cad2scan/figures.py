"""The paper's figures for one scan: ground truth vs prediction per class (Fig. 4) and
activation maps of convex-hull prototypes (Fig. 3B).

Points are drawn by :mod:`cad2scan.render` (numpy z-buffer splatting); matplotlib (Agg
backend, never a GUI) only lays the panels out with titles and legends. Class colours are
those of the prediction PLY files (:func:`cad2scan.io.predictions.class_colors`).

Each view is rasterised once (which point every pixel shows); every colouring of that view
(classes, one highlighted class, one prototype's coefficients) is then a table lookup.
"""

from __future__ import annotations

import io
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cad2scan.errors import Cad2ScanError, ConfigError, DataFormatError
from cad2scan.io.atomic import atomic_write_bytes, atomic_write_text
from cad2scan.io.predictions import class_colors
from cad2scan.render import WHITE, Camera, oblique_camera, rasterize_indices, top_down_camera

log = logging.getLogger(__name__)

OTHER_COLOR = np.array([205, 205, 205], dtype=np.uint8)  # points not of the highlighted class
IGNORED_COLOR = np.array([120, 120, 120], dtype=np.uint8)  # ground-truth points without a class
HEAT_COLORMAP = "viridis"
DEFAULT_NUM_PROTOTYPES = 4


# ------------------------------------------------------------------------ network outputs
@dataclass
class NetworkOutputs:
    """One forward pass over a whole scan.

    point_to_voxel: (N,) int64, voxel row of each point.
    probabilities: (M, C) float32, softmax of the logits per voxel.
    coefficients: (M, K) float32, convex-hull coefficients a_k per voxel (rows sum to 1), or
        None for a network without the hull.
    """

    point_to_voxel: np.ndarray
    probabilities: np.ndarray
    coefficients: np.ndarray | None

    def point_probabilities(self) -> np.ndarray:
        """(N, C) float32 class probabilities per point."""
        return self.probabilities[self.point_to_voxel]


@torch.no_grad()
def network_outputs(net: torch.nn.Module, coord: np.ndarray, voxel_size: float,
                    device: torch.device | str = "cpu") -> NetworkOutputs:
    """Run ``net`` (in eval mode) on a whole scan, voxelised as ``cad2scan.predict`` does.

    coord: (N, 3) float, metres, z up. No tiling: memory grows with the scan's voxel count
    (about 3 KB per voxel on CPU); probabilities equal ``predict_probabilities`` without tiles.
    """
    from cad2scan.geometry.voxel import voxelise
    from cad2scan.model.backbone import make_sparse_input

    coord = np.asarray(coord)
    if coord.ndim != 2 or coord.shape[0] == 0 or coord.shape[1] != 3:
        raise ValueError(f"need a non-empty (N, 3) point array, got shape {coord.shape}")
    grid = voxelise(coord, voxel_size)
    voxel_coords = grid.voxel_coords - grid.voxel_coords.min(axis=0)  # same shift as predict.py
    was_training = net.training
    net.eval()
    try:
        out = net(make_sparse_input([voxel_coords], None, torch.device(device)))
    finally:
        net.train(was_training)
    probabilities = torch.softmax(out["logits"].float(), dim=1).cpu().numpy()
    coefficients = out.get("coefficients")
    if coefficients is not None:
        coefficients = coefficients.float().cpu().numpy()
    return NetworkOutputs(grid.point_to_voxel, probabilities, coefficients)


def require_coefficients(outputs: NetworkOutputs, source: str = "the network") -> np.ndarray:
    """(M, K) hull coefficients, or Cad2ScanError saying the checkpoint has no hull."""
    if outputs.coefficients is None:
        raise Cad2ScanError(f"{source} has no convex-hull module (model.use_hull=false): prototype activation maps "
                            f"need a checkpoint trained with feature alignment (model.use_hull=true)")
    return outputs.coefficients


def point_coefficients(net: torch.nn.Module, coord: np.ndarray, voxel_size: float,
                       device: torch.device | str = "cpu", prototypes: list[int] | None = None) -> np.ndarray:
    """Convex-hull coefficient a_k of every point: (N, 3) float metres -> (N, P) float32.

    P = K (all prototypes) or ``len(prototypes)`` (those columns, in that order). Points
    sharing a voxel share its coefficients. Raises Cad2ScanError for a network without hull
    and ConfigError for a prototype index outside 0..K-1.
    """
    outputs = network_outputs(net, coord, voxel_size, device)
    coefficients = require_coefficients(outputs)
    if prototypes is not None:
        check_prototypes(prototypes, coefficients.shape[1])
        coefficients = coefficients[:, list(prototypes)]
    return coefficients[outputs.point_to_voxel]


def check_prototypes(prototypes: list[int], num_prototypes: int) -> None:
    """ConfigError naming the bad index when a prototype is outside 0..K-1."""
    bad = [k for k in prototypes if not 0 <= int(k) < num_prototypes]
    if bad:
        raise ConfigError(f"prototype index(es) {bad} out of range: this checkpoint has K={num_prototypes} "
                          f"prototypes (0..{num_prototypes - 1})")


def most_used_prototypes(coefficients: np.ndarray, count: int, weights: np.ndarray | None = None) -> list[int]:
    """The ``count`` prototypes that are the argmax of the most rows (ties: lower index first).

    coefficients: (M, K) float. weights: (M,) number of points per row (default 1 each).
    """
    winners = np.argmax(coefficients, axis=1)
    usage = np.bincount(winners, weights=weights, minlength=coefficients.shape[1])
    order = np.lexsort((np.arange(usage.size), -usage))
    return [int(k) for k in order[:count]]


# ------------------------------------------------------------------------------ the scan
@dataclass
class RenderScan:
    """A scan to draw: ``coord`` (N, 3) float32 metres; ``scene_label`` (N,) int64 scene label
    ids (-1 unlabelled) or None; ``name``; ``source`` (how it was read)."""

    coord: np.ndarray
    scene_label: np.ndarray | None
    name: str
    source: str


def load_render_scan(path: str | Path, labels: str | Path | None = None, units: str | None = None) -> RenderScan:
    """Read a scan with its ground truth when there is one.

    path: a prepared scene (folder with ``item.json``, or a scene ``.npz`` with ``coord`` and
    ``label``), a ScanNet scene folder (``sceneXXXX_XX/``, NYU40 labels), an S3DIS room
    folder (``Annotations/``), or any scan file ``cad2scan predict`` reads (no labels).
    labels: optional per-point scene label ids for the scan (``.npy``, ``.txt`` one per
    line, or a PLY with a vertex ``label`` property); overrides labels found with the scan.
    """
    from cad2scan.io.scannet import SCENE_PATTERN
    from cad2scan.io.scans import npz_has_keys, read_point_labels

    path = Path(path)
    if not path.exists():
        raise DataFormatError(path, "scan not found")
    folder = path.parent if path.name == "item.json" else path
    if folder.is_dir() and (folder / "item.json").is_file():
        from cad2scan.prepare import load_scene

        scene = load_scene(folder)
        scan = RenderScan(np.asarray(scene["coord"], np.float32), np.asarray(scene["label"], np.int64),
                          str(scene["scene_id"]), "prepared scene")
    elif path.is_file() and path.suffix.lower() == ".npz" and npz_has_keys(path, ("coord", "label")):
        with np.load(path, allow_pickle=False) as data:
            scan = RenderScan(np.asarray(data["coord"], np.float32), np.asarray(data["label"], np.int64).reshape(-1),
                              path.stem, "scene npz")
    elif path.is_dir() and (path / "Annotations").is_dir():
        from cad2scan.io.s3dis import read_s3dis_room

        room = read_s3dis_room(path)
        scan = RenderScan(room["coord"], np.asarray(room["label"], np.int64), path.name, "S3DIS room")
    elif path.is_dir() and SCENE_PATTERN.match(path.name):
        from cad2scan.io.scannet import read_scannet_scene

        scene = read_scannet_scene(path, labels=True)
        label = scene.get("label")
        scan = RenderScan(scene["coord"], None if label is None else np.asarray(label, np.int64), path.name,
                          "ScanNet scene")
    elif path.is_dir():
        raise DataFormatError(path, "folder is neither a prepared scene (item.json), a ScanNet scene folder "
                                    "(sceneXXXX_XX) nor an S3DIS room (Annotations/)")
    else:
        from cad2scan.io.scans import read_scan

        scan = RenderScan(read_scan(path, units=units)["coord"], None, path.stem, "scan file")
    if scan.scene_label is not None and scan.scene_label.shape != (scan.coord.shape[0],):
        raise DataFormatError(path, f"{scan.scene_label.shape} labels for {scan.coord.shape[0]} points")
    if labels is not None:
        scan.scene_label = read_point_labels(labels, scan.coord.shape[0])
    return scan


# ------------------------------------------------------------------------------- views
@dataclass
class View:
    """One rasterised view: ``name``, its ``camera`` and ``index`` (H, W) int64, the point each
    pixel shows (-1: empty)."""

    name: str
    camera: Camera
    index: np.ndarray

    def paint(self, colors: np.ndarray, background=WHITE) -> np.ndarray:
        """(N, 3) uint8 point colours -> (H, W, 3) uint8 image of this view."""
        image = np.empty((*self.index.shape, 3), dtype=np.uint8)
        image[...] = np.asarray(background, dtype=np.uint8)
        hit = self.index >= 0
        image[hit] = colors[self.index[hit]]
        return image


FRAME_TRIM = 0.001  # views frame the scan without its 0.1 % most outlying points per axis


def standard_views(coord: np.ndarray, width: int = 640, height: int = 480, point_size: int = 2) -> list[View]:
    """A top-down orthographic view and an oblique perspective view of the scan (stray points
    beyond the 0.1 % / 99.9 % quantiles may fall outside the picture)."""
    views = []
    for name, camera in (("top-down", top_down_camera(coord, width, height, trim=FRAME_TRIM)),
                         ("oblique", oblique_camera(coord, width, height, trim=FRAME_TRIM))):
        views.append(View(name, camera, rasterize_indices(coord, camera, point_size)[0]))
    return views


def label_colors(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(N,) class ids (-1 = no class) -> (N, 3) uint8 colours of the prediction PLYs."""
    palette = np.concatenate([class_colors(num_classes), IGNORED_COLOR[None]], axis=0)
    return palette[np.where(labels < 0, num_classes, labels)]


def highlight_colors(labels: np.ndarray, class_index: int, num_classes: int) -> np.ndarray:
    """Points of ``class_index`` in its class colour, every other point light grey."""
    colors = np.empty((labels.shape[0], 3), dtype=np.uint8)
    colors[...] = OTHER_COLOR
    colors[labels == class_index] = class_colors(num_classes)[class_index]
    return colors


def heat_colors(values: np.ndarray, vmin: float, vmax: float, colormap: str = HEAT_COLORMAP) -> np.ndarray:
    """(N,) float -> (N, 3) uint8 colours of a matplotlib colormap spanning [vmin, vmax]."""
    from matplotlib import colormaps

    scale = max(float(vmax) - float(vmin), 1e-12)
    scaled = np.clip((np.asarray(values, dtype=np.float64) - float(vmin)) / scale, 0.0, 1.0)
    return (colormaps[colormap](scaled)[:, :3] * 255 + 0.5).astype(np.uint8)


# ----------------------------------------------------------------------------- figures
def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path, dpi: int = 100) -> None:
    """Save a matplotlib figure as PNG atomically and close it (no timestamp in the file)."""
    plt = _pyplot()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def panel_figure(panels: list[list[tuple[str, np.ndarray]]], title: str, legend: list[tuple[str, np.ndarray]] = (),
                 colorbar: tuple[str, float, float] | None = None):
    """A figure of image panels: ``panels[row][col] = (caption, (H, W, 3) uint8 image)``.

    legend: (label, RGB uint8) patches shown under the panels. colorbar: (label, vmin, vmax)
    of a ``HEAT_COLORMAP`` scale.
    """
    plt = _pyplot()
    from matplotlib.patches import Patch

    rows, cols = len(panels), max(len(r) for r in panels)
    height, width = panels[0][0][1].shape[:2]
    dpi = 100
    extra = 0.9 if (legend or colorbar) else 0.3
    fig = plt.figure(figsize=(cols * width / dpi, rows * (height / dpi + 0.3) + extra + 0.4), dpi=dpi)
    fig.suptitle(title, fontsize=11)
    grid = fig.add_gridspec(rows, cols, left=0.01, right=0.99, top=1 - 0.5 / fig.get_figheight(),
                            bottom=extra / fig.get_figheight(), wspace=0.02, hspace=0.12)
    for r, row in enumerate(panels):
        for c, (caption, image) in enumerate(row):
            ax = fig.add_subplot(grid[r, c])
            ax.imshow(image, interpolation="nearest")
            ax.set_title(caption, fontsize=9)
            ax.set_axis_off()
    if legend:
        handles = [Patch(facecolor=np.asarray(rgb) / 255.0, edgecolor="black", linewidth=0.3, label=label)
                   for label, rgb in legend]
        fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 7), fontsize=8, frameon=False)
    if colorbar is not None:
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import Normalize

        label, vmin, vmax = colorbar
        ax = fig.add_axes([0.25, 0.25 * extra / fig.get_figheight(), 0.5, 0.25 * extra / fig.get_figheight()])
        fig.colorbar(ScalarMappable(Normalize(vmin, vmax), HEAT_COLORMAP), cax=ax, orientation="horizontal",
                     label=label)
    return fig


def _file_stem(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)


def class_figures(views: list[View], predicted: np.ndarray, truth: np.ndarray | None, class_names: list[str],
                  classes: list[int], out_dir: Path, scan_name: str) -> list[str]:
    """Fig. 4: an overview (every class coloured) and one figure per class in ``classes``
    (that class highlighted), ground truth left and prediction right, one row per view.

    predicted, truth: (N,) int64 class ids (truth -1 = no class; None = prediction only).
    Returns the written file names.
    """
    num_classes = len(class_names)
    written = []

    def columns(colour_of) -> list[list[tuple[str, np.ndarray]]]:
        rows = []
        for view in views:
            row = [] if truth is None else [(f"ground truth, {view.name}", view.paint(colour_of(truth)))]
            row.append((f"prediction, {view.name}", view.paint(colour_of(predicted))))
            rows.append(row)
        return rows

    legend = [(name, rgb) for name, rgb in zip(class_names, class_colors(num_classes))]
    if truth is not None and (truth < 0).any():
        legend.append(("no label", IGNORED_COLOR))
    fig = panel_figure(columns(lambda labels: label_colors(labels, num_classes)), f"{scan_name}: all classes",
                       legend)
    save_figure(fig, out_dir / "classes.png")
    written.append("classes.png")
    for index in classes:
        name = class_names[index]
        fig = panel_figure(columns(lambda labels: highlight_colors(labels, index, num_classes)),
                           f"{scan_name}: {name}", [(name, class_colors(num_classes)[index]), ("other", OTHER_COLOR)])
        file_name = f"class_{_file_stem(name)}.png"
        save_figure(fig, out_dir / file_name)
        written.append(file_name)
    return written


def prototype_figures(views: list[View], coefficients: np.ndarray, prototypes: list[int], usage: np.ndarray,
                      out_dir: Path, scan_name: str) -> list[str]:
    """Fig. 3B: for each prototype k, the per-point coefficient a_k as a heat map in every view
    (colour scale from the smallest to the largest a_k in the scan).

    coefficients: (N, P) float32 per-point coefficients of ``prototypes`` (column j is
    prototype ``prototypes[j]``). usage: (P,) fraction of points whose largest coefficient is
    that prototype. Returns the written file names.
    """
    written = []
    for column, k in enumerate(prototypes):
        values = coefficients[:, column]
        vmin, vmax = float(values.min()), float(values.max())
        colors = heat_colors(values, vmin, vmax)
        panels = [[(view.name, view.paint(colors)) for view in views]]
        fig = panel_figure(panels, f"{scan_name}: prototype {k} (argmax of {100 * usage[column]:.1f}% of points)",
                           colorbar=(f"coefficient a_{k}", vmin, vmax))
        file_name = f"prototype_{k:03d}.png"
        save_figure(fig, out_dir / file_name)
        written.append(file_name)
    return written


# --------------------------------------------------------------------------- top level
def _parse_class_selection(selection: list[str] | None, class_names: list[str], predicted: np.ndarray,
                           truth: np.ndarray | None) -> list[int]:
    targets = class_names[:-1]
    if selection:
        unknown = [name for name in selection if name not in targets]
        if unknown:
            raise ConfigError(f"unknown class(es) {unknown}; this checkpoint's classes: {', '.join(targets)}")
        return [targets.index(name) for name in selection]
    present = truth if truth is not None else predicted
    return [c for c in range(len(targets)) if np.any(present == c)]


def render_scan(checkpoint: str | Path, scan: str | Path, out_dir: str | Path, *, labels: str | Path | None = None,
                labels_as: str = "scene", units: str | None = None, kinds: tuple[str, ...] | None = None,
                classes: list[str] | None = None, prototypes: list[int] | None = None,
                num_prototypes: int = DEFAULT_NUM_PROTOTYPES, width: int = 640, height: int = 480,
                point_size: int = 2, device: str | torch.device = "cpu") -> dict:
    """Write the figures of one scan into ``out_dir`` and a ``render.json`` manifest.

    kinds: ``"classes"`` (Fig. 4: ``classes.png`` and ``class_<name>.png``) and/or
    ``"prototypes"`` (Fig. 3B: ``prototype_<k>.png``; a checkpoint without the hull is an
    error). None: classes, and prototypes when the checkpoint has the hull.
    classes: target class names to draw (default: those present in the ground truth, else
    in the prediction). prototypes: indices to draw (default: the ``num_prototypes`` most
    used). Ground truth is drawn when the scan has labels: scene label ids mapped by the
    checkpoint's category set, or with ``labels_as="class"`` a ``labels`` file of class
    indices (-1 = none). Returns the manifest.
    """
    from cad2scan.classes import load_category_set
    from cad2scan.train.checkpoint import load_checkpoint

    if labels_as not in ("scene", "class"):
        raise ConfigError(f"labels_as must be 'scene' or 'class', got {labels_as!r}")
    unknown = sorted(set(kinds or ()) - {"classes", "prototypes"})
    if unknown or (kinds is not None and not kinds):
        raise ConfigError(f"figure kinds must be 'classes' and/or 'prototypes', got {list(kinds)}")
    started = time.perf_counter()
    loaded = load_checkpoint(checkpoint, device)
    if kinds is None:
        kinds = ("classes", "prototypes") if loaded.net.hull is not None else ("classes",)
    if "prototypes" in kinds and loaded.net.hull is None:
        raise Cad2ScanError(f"{checkpoint}: this checkpoint has no convex-hull module (model.use_hull=false): "
                            f"prototype activation maps need a checkpoint trained with feature alignment")
    if prototypes is not None and loaded.net.hull is not None:
        check_prototypes(prototypes, loaded.config.model.hull.num_prototypes)
    data = load_render_scan(scan, labels, units)
    truth = None
    if labels is not None and labels_as == "class":
        num_classes = len(loaded.class_names)
        bad = (data.scene_label < -1) | (data.scene_label >= num_classes)
        if bad.any():
            raise DataFormatError(Path(labels), f"class indices must lie in -1..{num_classes - 1}, found "
                                                f"{int(data.scene_label[bad][0])}")
        truth = data.scene_label
    elif data.scene_label is not None and np.any(data.scene_label >= 0):
        categories = load_category_set(loaded.config.data.categories)
        if categories.names != loaded.class_names:
            raise Cad2ScanError(f"{checkpoint}: classes {loaded.class_names} differ from its category set "
                                f"{loaded.config.data.categories!r}; cannot map the scan's labels")
        truth = categories.map_scene_labels(data.scene_label)

    outputs = network_outputs(loaded.net, data.coord, loaded.config.data.voxel_size, device)
    predicted = outputs.probabilities.argmax(axis=1)[outputs.point_to_voxel]
    views = standard_views(data.coord, width, height, point_size)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = {"checkpoint": str(checkpoint), "scan": str(scan), "scan_source": data.source,
                "points": int(data.coord.shape[0]), "voxels": int(outputs.probabilities.shape[0]),
                "ground_truth": truth is not None, "class_names": loaded.class_names, "files": []}
    if "classes" in kinds:
        selected = _parse_class_selection(classes, loaded.class_names, predicted, truth)
        manifest["classes"] = [loaded.class_names[c] for c in selected]
        manifest["files"] += class_figures(views, predicted, truth, loaded.class_names, selected, out_dir, data.name)
    if "prototypes" in kinds:
        voxel_coefficients = require_coefficients(outputs, str(checkpoint))
        counts = np.bincount(outputs.point_to_voxel, minlength=voxel_coefficients.shape[0])
        chosen = list(prototypes) if prototypes is not None else most_used_prototypes(
            voxel_coefficients, num_prototypes, counts)
        usage = np.bincount(voxel_coefficients.argmax(axis=1), weights=counts,
                            minlength=voxel_coefficients.shape[1]) / max(int(counts.sum()), 1)
        manifest["prototypes"] = chosen
        manifest["prototype_usage"] = {str(k): round(float(usage[k]), 6) for k in chosen}
        point_values = voxel_coefficients[:, chosen][outputs.point_to_voxel]
        manifest["files"] += prototype_figures(views, point_values, chosen, usage[chosen], out_dir, data.name)
    manifest["seconds"] = round(time.perf_counter() - started, 2)
    atomic_write_text(out_dir / "render.json", json.dumps(manifest, indent=2) + "\n")
    log.info("rendered %d figure(s) of %s into %s", len(manifest["files"]), data.name, out_dir)
    return manifest
