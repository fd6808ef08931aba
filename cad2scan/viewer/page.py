"""Assemble the self-contained HTML page: data JSON + inline CSS and JavaScript, no network.

``build_html(document, max_points, rng)`` subsamples every scene to ``max_points`` (seeded,
logged), packs it (``cad2scan.viewer.data``) and returns the page text; ``write_view``
writes it atomically. A Content-Security-Policy of ``default-src 'none'`` makes the
browser refuse any request the page might try, so it works offline by construction.
"""

from __future__ import annotations

import html
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cad2scan.errors import Cad2ScanError, UnknownClassError
from cad2scan.io.atomic import atomic_write_text
from cad2scan.io.predictions import class_colors
from cad2scan.viewer.data import DEFAULT_MAX_POINTS, ViewScene, check_scene, pack_scene, subsample_indices, take_points
from cad2scan.viewer.script import VIEWER_CSS, VIEWER_JS

log = logging.getLogger(__name__)

MODES = ("prediction", "ground_truth", "probability", "model", "synthetic", "rgb", "height")
BACKGROUND = (24, 24, 28)
UNLABELLED_COLOR = (70, 70, 78)
SCENE_COLOR = (150, 150, 150)
SYNTHETIC_COLOR = (240, 110, 30)
# source-model colours of training samples (distinct from the grey scene points)
MODEL_COLORS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
                (227, 119, 194), (188, 189, 34), (23, 190, 207), (255, 215, 0), (0, 0, 160), (0, 200, 120))
# the browser refuses every request (the page holds all it needs)
CONTENT_SECURITY_POLICY = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:"
_MODE_LAYER = {"prediction": "prediction", "ground_truth": "ground_truth", "probability": "probabilities",
               "model": "model_id", "synthetic": "is_synthetic", "rgb": "color", "height": None}


@dataclass
class ViewDocument:
    """Everything one page shows.

    class_names: C names, targets then background (as in checkpoints).
    scenes: the point clouds (a scene picker appears when there are several).
    mode: initial colour mode (one of MODES; "" picks prediction > ground truth > model > rgb > height).
    class_name: initial class of the probability mode ("" = the first target).
    notes: lines shown under the legend (sources, subsampling).
    """

    title: str
    class_names: list[str]
    scenes: list[ViewScene]
    mode: str = ""
    class_name: str = ""
    notes: list[str] = field(default_factory=list)


def _scene_modes(scene: ViewScene) -> list[str]:
    return [m for m in MODES if _MODE_LAYER[m] is None or getattr(scene, _MODE_LAYER[m]) is not None]


def initial_mode(document: ViewDocument) -> str:
    """The requested mode (checked against the first scene) or the most informative one present."""
    available = _scene_modes(document.scenes[0])
    if document.mode:
        if document.mode not in MODES:
            raise Cad2ScanError(f"unknown colour mode {document.mode!r} (modes: {', '.join(MODES)})")
        if document.mode not in available:
            raise Cad2ScanError(f"colour mode {document.mode!r} needs data this view lacks "
                                f"(available: {', '.join(available)})")
        return document.mode
    for mode in ("prediction", "ground_truth", "model", "rgb", "height"):
        if mode in available:
            return mode
    return "height"


def class_index(document: ViewDocument) -> int:
    """Index of ``document.class_name`` (0 when empty); UnknownClassError lists the names."""
    if not document.class_name:
        return 0
    if document.class_name not in document.class_names:
        raise UnknownClassError(f"class {document.class_name!r} is not one of this view's classes "
                                f"({', '.join(document.class_names)})")
    return document.class_names.index(document.class_name)


def _script_json(value) -> str:
    """JSON safe inside a <script> element (no '</' or '<!--' sequences)."""
    return json.dumps(value, separators=(",", ":")).replace("<", "\\u003c")


def page_data(document: ViewDocument, max_points: int = DEFAULT_MAX_POINTS,
              rng: np.random.Generator | None = None) -> dict:
    """The JSON object embedded in the page (scenes subsampled to ``max_points`` each)."""
    if not document.scenes:
        raise Cad2ScanError("nothing to view: no scan or training sample was given")
    if not document.class_names:
        raise Cad2ScanError("a view needs at least one class name")
    rng = rng if rng is not None else np.random.default_rng(0)
    num_classes = len(document.class_names)
    notes = list(document.notes)
    packed = []
    for scene in document.scenes:
        check_scene(scene, num_classes)
        total = len(scene.coord)
        rows = subsample_indices(total, max_points, rng)
        if len(rows) < total:
            log.info("%s: showing a random %d of %d points (max_points %d)", scene.name, len(rows), total, max_points)
            scene = take_points(scene, rows)
        packed.append(pack_scene(scene, num_classes, total_points=total))
    colors = class_colors(num_classes)
    return {
        "format": "cad2scan-view-1",
        "title": document.title,
        "classes": [{"name": name, "color": [int(c) for c in colors[i]]}
                    for i, name in enumerate(document.class_names)],
        "model_colors": [list(c) for c in MODEL_COLORS],
        "background": list(BACKGROUND),
        "unlabelled_color": list(UNLABELLED_COLOR),
        "scene_color": list(SCENE_COLOR),
        "synthetic_color": list(SYNTHETIC_COLOR),
        "initial": {"mode": initial_mode(document), "class_index": class_index(document)},
        "notes": notes,
        "scenes": packed,
    }


def render_html(data: dict) -> str:
    """The page for a :func:`page_data` object."""
    title = html.escape(data["title"])
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>{title}</title>
<style>{VIEWER_CSS}</style>
</head>
<body>
<div id="stage"></div>
<div id="panel">
<h1>{title}</h1>
<label>colour <select id="mode"></select></label>
<label>class <select id="class"></select></label>
<label>scan <select id="scene"></select></label>
<label>point size <input id="size" type="range" min="1" max="6" step="1" value="2"></label>
<div id="legend"></div>
<div id="info"></div>
<div id="status">loading (needs JavaScript)</div>
<div id="help">drag: orbit &middot; shift- or right-drag: pan &middot; wheel: zoom &middot; double-click: reset</div>
</div>
<script type="application/json" id="c2s-data">{_script_json(data)}</script>
<script>{VIEWER_JS}</script>
</body>
</html>
"""


def build_html(document: ViewDocument, max_points: int = DEFAULT_MAX_POINTS,
               rng: np.random.Generator | None = None) -> str:
    """The whole page for ``document`` (see :func:`page_data`)."""
    return render_html(page_data(document, max_points, rng))


def write_view(path: str | Path, document: ViewDocument, max_points: int = DEFAULT_MAX_POINTS,
               rng: np.random.Generator | None = None) -> dict:
    """Write the page atomically; returns ``{"path", "bytes", "scenes": [(name, shown, total)]}``."""
    data = page_data(document, max_points, rng)
    text = render_html(data)
    atomic_write_text(path, text)
    return {"path": str(path), "bytes": len(text.encode("utf-8")),
            "scenes": [(s["name"], s["count"], s["total"]) for s in data["scenes"]]}


_DATA_RE = re.compile(r'<script type="application/json" id="c2s-data">(.*?)</script>', re.S)
_SCRIPT_RE = re.compile(r"<script>(.*?)</script>", re.S)


def read_page_data(text: str) -> dict:
    """The embedded data object of a page written by :func:`render_html`."""
    match = _DATA_RE.search(text)
    if match is None:
        raise Cad2ScanError("not a cad2scan view page: no c2s-data element")
    return json.loads(match.group(1))


def page_script(text: str) -> str:
    """The inline JavaScript of a page written by :func:`render_html`."""
    match = _SCRIPT_RE.search(text)
    if match is None:
        raise Cad2ScanError("not a cad2scan view page: no inline script")
    return match.group(1)
