"""A small point-splatting rasteriser with a z-buffer, cameras, and a PNG writer (numpy + zlib).

Everything here is plain numpy: fast enough for a million points (two sorts per image) and
deterministic (a pixel shows its nearest point; equal depths go to the lower point index).

Camera convention (OpenCV-like): camera axes are ``right`` (image x, columns), ``down``
(image y, rows) and ``forward`` (depth). A point at camera coordinates ``(x, y, z)`` lands at
pixel column ``floor(cx + f * x)`` and row ``floor(cy + f * y)`` under the orthographic
projection (``f`` pixels per metre), or ``floor(cx + f * x / z)`` and ``floor(cy + f * y / z)``
under the perspective projection (``f`` focal length in pixels; points with ``z <= near``
are dropped). The pixel ``(row, col)`` covers ``[col, col + 1) x [row, row + 1)``.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cad2scan.io.atomic import atomic_write_bytes

PROJECTIONS = ("orthographic", "perspective")
WHITE = (255, 255, 255)


@dataclass(frozen=True)
class Camera:
    """Where a view looks from and how it projects.

    rotation: (3, 3) float64, rows = the camera's right, down and forward axes in world
        coordinates (a proper rotation).
    eye: (3,) float64, camera centre, metres (for the orthographic projection only the depth
        origin).
    focal: pixels per metre (orthographic) or focal length in pixels (perspective).
    center: (cx, cy), the pixel position of the optical axis.
    width, height: image size in pixels.
    projection: ``"orthographic"`` or ``"perspective"``.
    near: metres; perspective points closer than this (or behind the camera) are dropped.
    """

    rotation: np.ndarray
    eye: np.ndarray
    focal: float
    center: tuple[float, float]
    width: int
    height: int
    projection: str = "orthographic"
    near: float = 1e-3

    def __post_init__(self) -> None:
        if self.projection not in PROJECTIONS:
            raise ValueError(f"projection must be one of {PROJECTIONS}, got {self.projection!r}")
        if self.width < 1 or self.height < 1:
            raise ValueError(f"image size must be positive, got {self.width} x {self.height}")
        if not self.focal > 0:
            raise ValueError(f"focal must be > 0, got {self.focal}")


def look_rotation(forward: np.ndarray, up: np.ndarray = (0.0, 0.0, 1.0)) -> np.ndarray:
    """(3, 3) rotation whose rows are right, down, forward for a camera looking along ``forward``.

    ``up`` is the world direction that should point up in the image; it must not be parallel
    to ``forward``.
    """
    forward = np.asarray(forward, dtype=np.float64)
    forward = forward / np.linalg.norm(forward)
    right = np.cross(forward, np.asarray(up, dtype=np.float64))
    norm = np.linalg.norm(right)
    if norm < 1e-9:
        raise ValueError(f"up {tuple(up)} is parallel to the viewing direction {tuple(forward)}")
    right /= norm
    down = np.cross(forward, right)
    return np.stack([right, down, forward])


def project(points: np.ndarray, camera: Camera) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel positions and depths of points.

    points: (N, 3) float, metres. Returns ``u`` (N,) float64 column coordinate, ``v`` (N,)
    float64 row coordinate, ``depth`` (N,) float64 metres along the viewing direction
    (``nan`` for points a perspective camera cannot see).
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    local = (points - np.asarray(camera.eye, dtype=np.float64)) @ np.asarray(camera.rotation, dtype=np.float64).T
    x, y, depth = local[:, 0], local[:, 1], local[:, 2]
    if camera.projection == "perspective":
        visible = depth > camera.near
        with np.errstate(divide="ignore", invalid="ignore"):
            x = np.where(visible, x / depth, np.nan)
            y = np.where(visible, y / depth, np.nan)
        depth = np.where(visible, depth, np.nan)
    return camera.center[0] + camera.focal * x, camera.center[1] + camera.focal * y, depth


def splat_offsets(point_size: int) -> np.ndarray:
    """(S*S, 2) int64 (row, col) offsets of a square point of ``point_size`` pixels, centred on its pixel."""
    if point_size < 1:
        raise ValueError(f"point_size must be >= 1 pixel, got {point_size}")
    steps = np.arange(point_size, dtype=np.int64) - (point_size - 1) // 2
    rows, cols = np.meshgrid(steps, steps, indexing="ij")
    return np.stack([rows.reshape(-1), cols.reshape(-1)], axis=1)


def rasterize_indices(points: np.ndarray, camera: Camera, point_size: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Which point each pixel shows, with a z-buffer.

    points: (N, 3) float, metres. point_size: edge of the square drawn per point, pixels.

    Returns ``index`` (H, W) int64, the nearest point covering each pixel (-1: none), and
    ``depth`` (H, W) float64, its depth (``inf`` where empty). Equal depths go to the lower
    point index, so the result does not depend on anything but the input.
    """
    u, v, depth = project(points, camera)
    height, width = camera.height, camera.width
    index = np.full(height * width, -1, dtype=np.int64)
    zbuffer = np.full(height * width, np.inf)
    ok = np.isfinite(u) & np.isfinite(v) & np.isfinite(depth)
    point_ids = np.flatnonzero(ok)
    if point_ids.size == 0:
        return index.reshape(height, width), zbuffer.reshape(height, width)
    # Rank the visible points by (depth, index) once; a pixel keeps its lowest-ranked point.
    point_ids = point_ids[np.argsort(depth[point_ids], kind="stable")]
    num = np.int64(point_ids.size)
    pad = point_size + 1  # far-off points are clipped just outside the image (no int overflow)
    col0 = np.floor(np.clip(u[point_ids], -pad, width + pad)).astype(np.int64)
    row0 = np.floor(np.clip(v[point_ids], -pad, height + pad)).astype(np.int64)
    ranks = np.arange(num, dtype=np.int64)
    keys = []
    for d_row, d_col in splat_offsets(point_size):
        rows, cols = row0 + d_row, col0 + d_col
        inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
        keys.append((rows[inside] * width + cols[inside]) * num + ranks[inside])
    keys = np.sort(np.concatenate(keys))  # by pixel, then rank
    if keys.size:
        pixels = keys // num
        first = np.ones(keys.size, dtype=bool)
        first[1:] = pixels[1:] != pixels[:-1]
        winners = point_ids[keys[first] % num]
        index[pixels[first]] = winners
        zbuffer[pixels[first]] = depth[winners]
    return index.reshape(height, width), zbuffer.reshape(height, width)


def rasterize(points: np.ndarray, colors: np.ndarray, camera: Camera, point_size: int = 1,
              background: tuple[int, int, int] = WHITE) -> np.ndarray:
    """Render coloured points: (N, 3) float metres + (N, 3) uint8 RGB -> (H, W, 3) uint8 image."""
    colors = np.asarray(colors)
    points = np.asarray(points)
    if colors.shape != (points.shape[0], 3):
        raise ValueError(f"colors must be ({points.shape[0]}, 3) RGB, got {colors.shape}")
    index, _ = rasterize_indices(points, camera, point_size)
    image = np.empty((camera.height, camera.width, 3), dtype=np.uint8)
    image[...] = np.asarray(background, dtype=np.uint8)
    hit = index >= 0
    image[hit] = colors[index[hit]].astype(np.uint8, copy=False)
    return image


# ------------------------------------------------------------------------------ cameras
def _extent(points: np.ndarray, trim: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Per-axis (lo, hi) of the points; with ``trim`` > 0 the ``trim`` and ``1 - trim`` quantiles
    (so that a few stray points do not shrink the scan in the picture)."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    if points.shape[0] == 0:
        raise ValueError("cannot frame an empty point set")
    if not 0.0 <= trim < 0.5:
        raise ValueError(f"trim must be in [0, 0.5), got {trim}")
    if trim == 0.0:
        return points.min(axis=0), points.max(axis=0)
    return np.quantile(points, trim, axis=0), np.quantile(points, 1.0 - trim, axis=0)


def top_down_camera(points: np.ndarray, width: int, height: int, margin: float = 0.04, trim: float = 0.0) -> Camera:
    """Orthographic view straight down (+y up in the image), framing all ``points``.

    margin: fraction of the image left empty on each side. trim: frame only the points
    between the ``trim`` and ``1 - trim`` quantiles of each axis (0: all points).
    """
    lo, hi = _extent(points, trim)
    rotation = look_rotation((0.0, 0.0, -1.0), up=(0.0, 1.0, 0.0))
    centre = (lo + hi) / 2
    span_x, span_y = max(hi[0] - lo[0], 1e-6), max(hi[1] - lo[1], 1e-6)
    focal = (1 - 2 * margin) * min(width / span_x, height / span_y)
    eye = np.array([centre[0], centre[1], hi[2] + 1.0])
    return Camera(rotation, eye, float(focal), (width / 2, height / 2), int(width), int(height), "orthographic")


def oblique_camera(points: np.ndarray, width: int, height: int, azimuth_deg: float = -60.0,
                   elevation_deg: float = 40.0, fov_deg: float = 40.0, margin: float = 0.04,
                   max_fit_points: int = 20000, trim: float = 0.0) -> Camera:
    """Perspective view from above one side of the scan, looking at its centre, framing all ``points``.

    azimuth_deg: direction the camera stands in, counter-clockwise from +x (seen from above).
    elevation_deg: angle of the line of sight below the horizon. fov_deg: vertical field of
    view before fitting. The camera backs off until every point (of an evenly strided subset
    of at most ``max_fit_points``) projects inside the margins, then the focal length and the
    principal point are adjusted so that those points fill the image, centred. trim: fit
    only the points between the ``trim`` and ``1 - trim`` quantiles of each axis.
    """
    lo, hi = _extent(points, trim)
    fit = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    fit = fit[:: max(1, -(-fit.shape[0] // max_fit_points))]
    fit = fit[np.all((fit >= lo) & (fit <= hi), axis=1)]
    if fit.shape[0] == 0:
        fit = np.stack([lo, hi])
    target = (lo + hi) / 2
    azimuth, elevation = np.radians(azimuth_deg), np.radians(elevation_deg)
    towards_camera = np.array([np.cos(azimuth) * np.cos(elevation), np.sin(azimuth) * np.cos(elevation),
                               np.sin(elevation)])
    rotation = look_rotation(-towards_camera)
    focal = (height / 2) / np.tan(np.radians(fov_deg) / 2)
    local = (fit - target) @ rotation.T
    radius = float(np.linalg.norm(hi - lo)) / 2 + 1e-6
    # Smallest distance at which every point projects inside the margins (depth = local z + distance).
    half_w, half_h = (1 - 2 * margin) * width / 2, (1 - 2 * margin) * height / 2
    need = np.maximum(np.abs(local[:, 0]) * focal / half_w, np.abs(local[:, 1]) * focal / half_h) - local[:, 2]
    distance = max(float(need.max()), radius + 0.1)
    # Zoom and shift so that the projected points fill the usable area, centred.
    depth = local[:, 2] + distance
    x, y = local[:, 0] / depth, local[:, 1] / depth
    span_x, span_y = max(float(np.ptp(x)), 1e-9), max(float(np.ptp(y)), 1e-9)
    focal = min(2 * half_w / span_x, 2 * half_h / span_y)
    center = (width / 2 - focal * (x.max() + x.min()) / 2, height / 2 - focal * (y.max() + y.min()) / 2)
    eye = target + distance * towards_camera
    return Camera(rotation, eye, float(focal), (float(center[0]), float(center[1])), int(width), int(height),
                  "perspective", near=1e-3)


# --------------------------------------------------------------------------------- PNG
def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of an (H, W, 3) RGB or (H, W) grey uint8 image (8 bit, no interlace)."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise ValueError(f"image must be (H, W) or (H, W, 3|4) uint8, got {image.shape} {image.dtype}")
    height, width = image.shape[:2]
    channels = 1 if image.ndim == 2 else image.shape[2]
    colour_type = {1: 0, 3: 2, 4: 6}[channels]
    rows = np.ascontiguousarray(image).reshape(height, width * channels)
    raw = np.concatenate([np.zeros((height, 1), dtype=np.uint8), rows], axis=1).tobytes()  # filter 0 per row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6))
            + chunk(b"IEND", b""))


def write_png(path: str | Path, image: np.ndarray) -> None:
    """Write an (H, W, 3) / (H, W) uint8 image as PNG, atomically."""
    atomic_write_bytes(path, encode_png(image))
