"""PLY reader/writer: round trips in every encoding, the real ScanNet files, malformed files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cad2scan.errors import DataFormatError, EmptyScanError
from cad2scan.io.ply import read_ply, read_ply_header, read_ply_points, write_ply

SCENE = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "scannet" / "scans" / "scene0470_00"


def _cloud(n: int = 50, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "coord": rng.normal(size=(n, 3)).astype(np.float32),
        "color": rng.integers(0, 256, size=(n, 3)).astype(np.uint8),
        "label": rng.integers(0, 41, size=n).astype(np.uint16),
        "faces": rng.integers(0, n, size=(2 * n, 3)),
    }


@pytest.mark.parametrize("binary, big_endian", [(True, False), (True, True), (False, False)])
def test_write_then_read_round_trips_points_colors_labels_faces(tmp_path, binary, big_endian):
    cloud = _cloud()
    path = tmp_path / "cloud.ply"
    write_ply(path, cloud["coord"], cloud["color"], cloud["faces"], {"label": cloud["label"]},
              binary=binary, big_endian=big_endian)
    back = read_ply_points(path)
    np.testing.assert_array_equal(back["coord"], cloud["coord"])  # float32 exact, also in ascii
    np.testing.assert_array_equal(back["color"], cloud["color"])
    np.testing.assert_array_equal(back["label"], cloud["label"].astype(np.int64))
    np.testing.assert_array_equal(back["faces"], cloud["faces"])
    assert back["coord"].dtype == np.float32 and back["label"].dtype == np.int64


def test_writer_uses_scannet_layout_and_property_types(tmp_path):
    n = 4
    path = tmp_path / "typed.ply"
    write_ply(
        path, np.zeros((n, 3)), np.zeros((n, 3), np.uint8), np.array([[0, 1, 2]]),
        {"alpha": np.full(n, 255, np.uint8), "label": np.arange(n, dtype=np.uint16),
         "instance": np.arange(n, dtype=np.int32), "score": np.linspace(0, 1, n, dtype=np.float32),
         "big": np.arange(n, dtype=np.int64), "flag": np.ones(n, bool)},
    )
    header = path.read_bytes().split(b"end_header")[0].decode()
    assert "format binary_little_endian 1.0" in header
    lines = [l for l in header.splitlines() if l.startswith("property")]
    assert lines == [
        "property float x", "property float y", "property float z",
        "property uchar red", "property uchar green", "property uchar blue", "property uchar alpha",
        "property ushort label", "property int instance", "property float score",
        "property int big", "property uchar flag", "property list uchar int vertex_indices",
    ]
    vertex = read_ply(path)["vertex"]
    assert vertex["label"].dtype == np.uint16 and vertex["score"].dtype == np.float32
    np.testing.assert_array_equal(vertex["big"], np.arange(n))


def test_write_is_atomic_and_rejects_bad_shapes(tmp_path):
    with pytest.raises(ValueError):
        write_ply(tmp_path / "bad.ply", np.zeros((3, 2)))
    with pytest.raises(ValueError):
        write_ply(tmp_path / "bad.ply", np.zeros((3, 3)), faces=np.array([[0, 1, 3]]))
    assert list(tmp_path.iterdir()) == []


def test_points_only_file_has_no_faces_or_colors(tmp_path):
    write_ply(tmp_path / "p.ply", np.eye(3), binary=False)
    back = read_ply_points(tmp_path / "p.ply")
    assert set(back) == {"coord"}
    np.testing.assert_array_equal(back["coord"], np.eye(3, dtype=np.float32))


HEADER_ALL_TYPES = (
    "ply\r\nformat ascii 1.0\r\ncomment hello\r\nobj_info made by hand\r\nelement vertex 2\r\n"
    "property float32 x\r\nproperty double y\r\nproperty float z\r\nproperty char a\r\nproperty int8 b\r\n"
    "property short c\r\nproperty uint16 d\r\nproperty int32 e\r\nproperty uint f\r\nproperty uint8 g\r\n"
    "element edge 1\r\nproperty int vertex1\r\nproperty int32 vertex2\r\nend_header\r\n"
)


def test_ascii_with_crlf_comments_all_type_aliases_and_edge_element(tmp_path):
    path = tmp_path / "types.ply"
    path.write_text(HEADER_ALL_TYPES + "1 2 3 -4 -5 -6 7 -8 4000000000 255\r\n0.5 0 0 1 1 1 1 1 1 1\r\n0 1\r\n",
                    newline="")
    elements = read_ply(path)
    vertex = elements["vertex"]
    assert vertex["y"].dtype == np.float64 and vertex["a"].dtype == np.int8
    assert vertex["f"].dtype == np.uint32 and int(vertex["f"][0]) == 4_000_000_000
    assert int(vertex["c"][0]) == -6 and int(vertex["g"][0]) == 255
    np.testing.assert_array_equal(elements["edge"]["vertex2"], [1])
    assert read_ply_header(path, path.read_bytes()).comments == ["hello", "made by hand"]


def test_binary_big_endian_handwritten_file_is_decoded(tmp_path):
    header = b"ply\nformat binary_big_endian 1.0\nelement vertex 2\nproperty float x\nproperty float y\n" \
             b"property float z\nproperty ushort label\nelement face 1\nproperty list uchar uint vertex_indices\nend_header\n"
    vertex = np.array([(1.5, 2, 3, 258), (4, 5, 6, 7)], dtype=[("x", ">f4"), ("y", ">f4"), ("z", ">f4"), ("l", ">u2")])
    face = np.array([(3, [0, 1, 1])], dtype=[("n", "u1"), ("v", ">u4", (3,))])
    path = tmp_path / "be.ply"
    path.write_bytes(header + vertex.tobytes() + face.tobytes())
    back = read_ply_points(path)
    np.testing.assert_array_equal(back["coord"], [[1.5, 2, 3], [4, 5, 6]])
    np.testing.assert_array_equal(back["label"], [258, 7])
    np.testing.assert_array_equal(back["faces"], [[0, 1, 1]])


def _mixed_face_bytes(order: str) -> bytes:
    header = (f"ply\nformat {'binary_little_endian' if order == '<' else 'binary_big_endian'} 1.0\n"
              "element vertex 5\nproperty float x\nproperty float y\nproperty float z\n"
              "element face 2\nproperty uchar flags\nproperty list uchar int vertex_indices\nend_header\n").encode()
    vertices = np.arange(15, dtype=f"{order}f4").tobytes()
    quad = np.array([7, 4], "u1").tobytes() + np.array([0, 1, 2, 3], f"{order}i4").tobytes()
    tri = np.array([9, 3], "u1").tobytes() + np.array([0, 3, 4], f"{order}i4").tobytes()
    return header + vertices + quad + tri


@pytest.mark.parametrize("order", ["<", ">"])
def test_binary_faces_of_mixed_sizes_are_fan_triangulated(tmp_path, order):
    path = tmp_path / "mixed.ply"
    path.write_bytes(_mixed_face_bytes(order))
    face = read_ply(path)["face"]
    np.testing.assert_array_equal(face["flags"], [7, 9])
    assert face["vertex_indices"].dtype == object
    np.testing.assert_array_equal(read_ply_points(path)["faces"], [[0, 1, 2], [0, 2, 3], [0, 3, 4]])


def test_ascii_quads_and_mixed_faces(tmp_path):
    body = "0 0 0\n1 0 0\n1 1 0\n0 1 0\n"
    head = "ply\nformat ascii 1.0\nelement vertex 4\nproperty float x\nproperty float y\nproperty float z\n"
    quads = tmp_path / "quads.ply"
    quads.write_text(head + "element face 1\nproperty list uchar int vertex_indices\nend_header\n" + body + "4 0 1 2 3\n")
    np.testing.assert_array_equal(read_ply(quads)["face"]["vertex_indices"], [[0, 1, 2, 3]])
    np.testing.assert_array_equal(read_ply_points(quads)["faces"], [[0, 1, 2], [0, 2, 3]])
    mixed = tmp_path / "mixed.ply"
    mixed.write_text(head + "element face 2\nproperty list uchar int vertex_indices\nend_header\n" + body
                     + "4 0 1 2 3\n3 0 1 2\n")
    np.testing.assert_array_equal(read_ply_points(mixed)["faces"], [[0, 1, 2], [0, 2, 3], [0, 1, 2]])


def test_float_colors_in_unit_range_are_scaled_to_uint8(tmp_path):
    path = tmp_path / "fc.ply"
    path.write_text("ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\nproperty float z\n"
                    "property float red\nproperty float green\nproperty float blue\nend_header\n0 0 0 1 0.5 0\n")
    np.testing.assert_array_equal(read_ply_points(path)["color"], [[255, 128, 0]])


# ---------------------------------------------------------------- malformed files


def _good_binary(tmp_path: Path, name: str = "scan.ply") -> Path:
    cloud = _cloud(20)
    path = tmp_path / name
    write_ply(path, cloud["coord"], cloud["color"], cloud["faces"], {"label": cloud["label"]})
    return path


def test_truncated_binary_body_is_reported(tmp_path):
    path = _good_binary(tmp_path, "truncated_scan.ply")
    data = path.read_bytes()
    for cut in (len(data) - 5, len(data) - 40 * 13 - 10):  # inside faces, inside vertices
        path.write_bytes(data[:cut])
        with pytest.raises(DataFormatError, match=r"truncated_scan\.ply: truncated binary body"):
            read_ply(path)


def test_truncated_ragged_face_list_is_reported(tmp_path):
    path = tmp_path / "ragged_cut.ply"
    path.write_bytes(_mixed_face_bytes("<")[:-3])
    with pytest.raises(DataFormatError, match=r"ragged_cut\.ply: truncated.*item 1 of 2"):
        read_ply(path)


@pytest.mark.parametrize(
    "data, fragment",
    [
        (b"PLX\nformat ascii 1.0\n", "not a PLY file"),
        (b"OFF\n3 1 0\n", "not a PLY file"),
        (b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\n", "no 'end_header'"),
        (b"ply\nformat ascii 1.0\ncomment \xff\xfe caf\xe9\nelement vertex 1\nproperty float x\nend_header\n1\n", "not valid text"),
        (b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float128 x\nend_header\n1\n", "unknown PLY type 'float128'"),
        (b"ply\nformat binary_middle_endian 1.0\nelement vertex 1\nproperty float x\nend_header\n", "unknown PLY format"),
        (b"ply\nelement vertex 1\nproperty float x\nend_header\n1\n", "no 'format' line"),
        (b"ply\nformat ascii 1.0\nproperty float x\nend_header\n", "property before any element"),
        (b"ply\nformat ascii 1.0\nelement vertex many\nend_header\n", "malformed element"),
        (b"ply\nformat ascii 1.0\nelement vertex 1\nproperty list float int v\nend_header\n", "count type"),
        (b"ply\nformat ascii 1.0\nelment vertex 1\nend_header\n", "unknown keyword"),
    ],
)
def test_malformed_header_raises_data_format_error_naming_file(tmp_path, data, fragment):
    path = tmp_path / "bad_header.ply"
    path.write_bytes(data)
    with pytest.raises(DataFormatError) as info:
        read_ply(path)
    assert "bad_header.ply" in str(info.value) and fragment in str(info.value)


ASCII_HEAD = "ply\nformat ascii 1.0\nelement vertex {n}\nproperty float x\nproperty float y\nproperty float z\n"


@pytest.mark.parametrize(
    "text, fragment",
    [
        (ASCII_HEAD.format(n=3) + "end_header\n0 0 0\n1 1 1\n", "declares 3 'vertex' lines, found 2"),
        (ASCII_HEAD.format(n=2) + "end_header\n0 0 0\n1 1 1\n2 2 2\n", "1 more lines than the header declares"),
        (ASCII_HEAD.format(n=3) + "element face 1\nproperty list uchar int vertex_indices\nend_header\n"
         "0 0 0\n1 1 1\n3 0 1 2\n", "declared count of 3 'vertex' wrong"),
        (ASCII_HEAD.format(n=2) + "end_header\n0 0 0\n1 x 1\n", "'vertex' item 1"),
        (ASCII_HEAD.format(n=2) + "end_header\n0 0 0\n1 1 1 1\n", "'vertex' item 1"),
    ],
)
def test_ascii_wrong_vertex_count_or_bad_line_is_reported(tmp_path, text, fragment):
    path = tmp_path / "bad_count.ply"
    path.write_text(text)
    with pytest.raises(DataFormatError) as info:
        read_ply(path)
    assert "bad_count.ply" in str(info.value) and fragment in str(info.value)


def test_nan_coordinates_are_counted_in_the_error(tmp_path):
    points = np.zeros((10, 3), np.float32)
    points[[1, 4], 0] = np.nan
    points[7, 2] = np.inf
    path = tmp_path / "nan_scan.ply"
    write_ply(path, points)
    with pytest.raises(DataFormatError, match=r"nan_scan\.ply: 3 of 10 vertices have NaN"):
        read_ply_points(path)
    assert np.isnan(read_ply_points(path, check_finite=False)["coord"]).sum() == 2


def test_zero_vertices_raise_empty_scan_error(tmp_path):
    path = tmp_path / "empty_scan.ply"
    write_ply(path, np.zeros((0, 3)))
    with pytest.raises(EmptyScanError, match="empty_scan.ply"):
        read_ply_points(path)


def test_face_index_out_of_range_is_reported(tmp_path):
    path = tmp_path / "bad_faces.ply"
    path.write_text(ASCII_HEAD.format(n=3) + "element face 1\nproperty list uchar int vertex_indices\nend_header\n"
                    "0 0 0\n1 1 1\n2 2 2\n3 0 1 3\n")
    with pytest.raises(DataFormatError, match=r"bad_faces\.ply: 1 face\(s\) use vertex indices outside 0..2"):
        read_ply_points(path)


def test_missing_file_and_missing_vertex_element(tmp_path):
    with pytest.raises(DataFormatError, match="nowhere.ply: file not found"):
        read_ply(tmp_path / "nowhere.ply")
    path = tmp_path / "no_vertex.ply"
    path.write_text("ply\nformat ascii 1.0\nelement point 1\nproperty float x\nend_header\n1\n")
    with pytest.raises(DataFormatError, match="no_vertex.ply: PLY file has no 'vertex' element"):
        read_ply_points(path)


# ---------------------------------------------------------------- real ScanNet files


def _scannet(name: str) -> Path:
    path = SCENE / name
    if not path.exists():
        pytest.skip(f"shared ScanNet sample data not found at {path}")
    return path


def test_scannet_labels_ply_has_documented_counts_and_histogram():
    scan = read_ply_points(_scannet("scene0470_00_vh_clean_2.labels.ply"))
    assert scan["coord"].shape == (67465, 3) and scan["coord"].dtype == np.float32
    assert scan["faces"].shape == (127003, 3) and scan["faces"].max() < 67465
    assert scan["color"].dtype == np.uint8
    ids, counts = np.unique(scan["label"], return_counts=True)
    histogram = dict(zip(ids.tolist(), counts.tolist()))
    assert histogram == {0: 767, 1: 24353, 2: 14939, 5: 15712, 7: 2572, 8: 2777,
                         9: 1924, 30: 3172, 37: 251, 39: 998}


def test_scannet_mesh_and_labels_files_share_vertices_and_layout():
    mesh_path = _scannet("scene0470_00_vh_clean_2.ply")
    mesh = read_ply(mesh_path)
    labels = read_ply(_scannet("scene0470_00_vh_clean_2.labels.ply"))
    assert list(mesh["vertex"]) == ["x", "y", "z", "red", "green", "blue", "alpha"]
    for axis in "xyz":
        np.testing.assert_array_equal(mesh["vertex"][axis], labels["vertex"][axis])
    header = read_ply_header(mesh_path, mesh_path.read_bytes())
    assert header.format == "binary_little_endian"


def test_rewriting_scannet_file_reproduces_its_header_layout(tmp_path):
    source = _scannet("scene0470_00_vh_clean_2.labels.ply")
    scan = read_ply(source)
    vertex = scan["vertex"]
    out = tmp_path / "copy.ply"
    write_ply(out, np.stack([vertex[a] for a in "xyz"], 1), np.stack([vertex[c] for c in ("red", "green", "blue")], 1),
              scan["face"]["vertex_indices"], {"alpha": vertex["alpha"], "label": vertex["label"]})
    original = read_ply_header(source, source.read_bytes())
    written = read_ply_header(out, out.read_bytes())
    describe = lambda h: [(e.name, e.count, [(p.name, p.dtype, p.count_dtype) for p in e.properties]) for e in h.elements]
    assert describe(written) == describe(original)
    assert out.read_bytes()[written.body_offset:] == source.read_bytes()[original.body_offset:]
