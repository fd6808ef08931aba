"""OFF reader/writer: round trips, ModelNet quirks, and every malformed case."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from cad2scan.errors import DataFormatError, EmptyScanError
from cad2scan.geometry.mesh import Mesh
from cad2scan.io.off import fan_triangulate, read_off, write_off

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "modelnet40"


def _cube() -> Mesh:
    vertices = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], dtype=np.float64)
    faces = np.array(
        [[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
         [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]]
    )
    return Mesh(vertices * 0.1 + 1 / 3, faces)


def _write(tmp_path: Path, text: str, name: str = "mesh.off") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_write_then_read_returns_identical_mesh(tmp_path):
    mesh = _cube()
    write_off(tmp_path / "cube.off", mesh)
    back = read_off(tmp_path / "cube.off")
    np.testing.assert_array_equal(back.vertices, mesh.vertices)  # 17 digits: exact float64
    np.testing.assert_array_equal(back.faces, mesh.faces)
    assert (tmp_path / "cube.off").read_text().startswith("OFF\n8 12 0\n")


def test_write_leaves_no_temporary_files(tmp_path):
    write_off(tmp_path / "cube.off", _cube())
    assert [p.name for p in tmp_path.iterdir()] == ["cube.off"]


def test_merged_header_comments_and_blank_lines_are_accepted(tmp_path):
    path = _write(
        tmp_path,
        "OFF4 2 0  # merged header, trailing comment\n\n# a comment line\n"
        "0 0 0\n1 0 0 # trailing\n1 1 0\n\n0 1 0\n3 0 1 2\n3 0 2 3\n",
    )
    mesh = read_off(path)
    assert mesh.vertices.shape == (4, 3)
    np.testing.assert_array_equal(mesh.faces, [[0, 1, 2], [0, 2, 3]])


def test_quads_are_split_into_two_triangles_each(tmp_path):
    path = _write(tmp_path, "OFF\n4 1 0\n0 0 0\n1 0 0\n1 1 0\n0 1 0\n4 0 1 2 3\n")
    mesh = read_off(path)
    np.testing.assert_array_equal(mesh.faces, [[0, 1, 2], [0, 2, 3]])
    assert mesh.surface_area() == pytest.approx(1.0)


def test_mixed_ngons_are_fan_triangulated_and_face_colours_ignored(tmp_path):
    path = _write(
        tmp_path,
        "OFF\n6 2 0\n0 0 0\n1 0 0\n2 1 0\n1 2 0\n0 1 0\n5 5 5\n"
        "5 0 1 2 3 4 255 0 0\n3 0 1 5\n",
    )
    mesh = read_off(path)
    np.testing.assert_array_equal(mesh.faces, [[0, 1, 2], [0, 2, 3], [0, 3, 4], [0, 1, 5]])


def test_fan_triangulate_counts_k_minus_two_triangles_per_polygon():
    tris = fan_triangulate([np.arange(5), np.arange(10, 13), np.arange(20, 24)])
    assert tris.shape == (3 + 1 + 2, 3)
    np.testing.assert_array_equal(tris[3], [10, 11, 12])
    np.testing.assert_array_equal(tris[4:], [[20, 21, 22], [20, 22, 23]])


def test_coff_extra_vertex_columns_are_dropped(tmp_path):
    path = _write(tmp_path, "COFF\n3 1 0\n0 0 0 255 0 0 255\n1 0 0 0 255 0 255\n0 1 0 0 0 255 255\n3 0 1 2\n")
    mesh = read_off(path)
    np.testing.assert_array_equal(mesh.vertices, [[0, 0, 0], [1, 0, 0], [0, 1, 0]])


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("OFF\n3 1\n0 0 0\n1 0 0\n0 1 0\n3 0 1 5\n", "outside 0..2"),  # index out of range
        ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 -1 2\n", "outside 0..2"),  # negative index
        ("OFF\n4 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n", "declares 4 vertices"),  # too few lines
        ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n3 0 1 2\n", "more data lines"),  # too many
        ("OFF\n3 x 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n", "line 2"),  # non-numeric counts
        ("OFF\n-3 1 0\n", "counts"),
        ("OFF\n3 1 0\n0 0 nan\n1 0 0\n0 1 0\n3 0 1 2\n", "1 vertices have NaN"),
        ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1\n3 0 1 2\n", "line 5"),  # short vertex line
        ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1\n", "declares 3 vertices but lists 2"),
        ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n2 0 1\n", "face with 2 vertices"),
        ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 b\n", "non-integer"),
        ("PLY\n3 1 0\n", "expected an 'OFF' header"),
        ("OFF\n", "missing the 'V F E' counts"),
    ],
)
def test_malformed_off_raises_data_format_error_naming_file(tmp_path, text, fragment):
    path = _write(tmp_path, text, "broken_mesh.off")
    with pytest.raises(DataFormatError) as info:
        read_off(path)
    assert "broken_mesh.off" in str(info.value)
    assert fragment in str(info.value)


@pytest.mark.parametrize("text", ["", "# only a comment\n\n", "OFF\n0 0 0\n", "OFF\n3 0 0\n0 0 0\n1 0 0\n0 1 0\n"])
def test_empty_off_raises_empty_scan_error(tmp_path, text):
    path = _write(tmp_path, text, "empty_mesh.off")
    with pytest.raises(EmptyScanError, match="empty_mesh.off"):
        read_off(path)


def test_binary_garbage_and_missing_file_raise_data_format_error(tmp_path):
    path = tmp_path / "garbage.off"
    path.write_bytes(b"OFF\n\xff\xfe\x00\x01")
    with pytest.raises(DataFormatError, match="garbage.off.*UTF-8"):
        read_off(path)
    with pytest.raises(DataFormatError, match="absent.off: file not found"):
        read_off(tmp_path / "absent.off")


def test_hundred_thousand_face_file_reads_fast(tmp_path):
    rng = np.random.default_rng(0)
    vertices = rng.normal(size=(50_000, 3))
    faces = rng.integers(0, 50_000, size=(100_000, 3))
    write_off(tmp_path / "big.off", Mesh(vertices, faces))
    start = time.perf_counter()
    mesh = read_off(tmp_path / "big.off")
    elapsed = time.perf_counter() - start
    np.testing.assert_array_equal(mesh.faces, faces)
    assert elapsed < 1.5, f"read_off took {elapsed:.2f} s on 100k faces"


def _modelnet(relative: str) -> Path:
    path = DATA / relative
    if not path.exists():
        pytest.skip(f"shared ModelNet sample data not found at {path}")
    return path


def test_modelnet_merged_header_file_matches_two_line_copy():
    merged = read_off(_modelnet("ModelNet40/bathtub/train/bathtub_0001.off"))  # "OFF3514 3546 0"
    two_line = read_off(_modelnet("ModelNet10/bathtub/train/bathtub_0001.off"))
    assert merged.vertices.shape == (3514, 3) and merged.faces.shape == (3546, 3)
    np.testing.assert_array_equal(merged.vertices, two_line.vertices)
    np.testing.assert_array_equal(merged.faces, two_line.faces)


def test_every_shared_modelnet_file_reads_with_positive_area():
    if not DATA.exists():
        pytest.skip(f"shared ModelNet sample data not found at {DATA}")
    files = sorted(DATA.rglob("*.off"))
    assert len(files) == 27
    for file in files:
        mesh = read_off(file)
        assert mesh.faces.max() < len(mesh.vertices)
        assert mesh.surface_area() > 0, file
