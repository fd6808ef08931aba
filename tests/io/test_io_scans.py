"""read_scan: every supported format, unit handling, invalid and empty scans."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
import pytest

from cad2scan.errors import ConfigError, DataFormatError, EmptyScanError
from cad2scan.io.ply import write_ply
from cad2scan.io.scans import read_scan

SCENE = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "scannet" / "scans" / "scene0470_00"

POINTS = np.array([[0.0, 0.0, 0.0], [1.5, 0.25, 2.0], [3.0, 4.0, 2.5]])
COLORS = np.array([[255, 0, 0], [0, 128, 0], [1, 2, 3]], dtype=np.uint8)


def _check(scan, colors=True):
    np.testing.assert_allclose(scan["coord"], POINTS, atol=1e-6)
    assert scan["coord"].dtype == np.float32
    if colors:
        np.testing.assert_array_equal(scan["color"], COLORS)
        assert scan["color"].dtype == np.uint8
    else:
        assert "color" not in scan


@pytest.mark.parametrize("binary", [True, False])
def test_ply_cloud_and_mesh(tmp_path, binary):
    write_ply(tmp_path / "s.ply", POINTS, COLORS, faces=np.array([[0, 1, 2]]), binary=binary)
    _check(read_scan(tmp_path / "s.ply"))


def test_npy_with_and_without_colours(tmp_path):
    np.save(tmp_path / "rgb.npy", np.concatenate([POINTS, COLORS], axis=1).astype(np.float32))
    _check(read_scan(tmp_path / "rgb.npy"))
    np.save(tmp_path / "xyz.npy", POINTS)
    _check(read_scan(tmp_path / "xyz.npy"), colors=False)
    np.save(tmp_path / "unit_rgb.npy", np.concatenate([POINTS, COLORS / 255.0], axis=1))
    _check(read_scan(tmp_path / "unit_rgb.npy"))


def test_npz_keys(tmp_path):
    np.savez(tmp_path / "a.npz", points=POINTS, colors=COLORS)
    _check(read_scan(tmp_path / "a.npz"))
    np.savez(tmp_path / "b.npz", xyz=POINTS.astype(np.float32))
    _check(read_scan(tmp_path / "b.npz"), colors=False)
    np.savez(tmp_path / "c.npz", verts=POINTS)
    with pytest.raises(DataFormatError, match=r"c\.npz: no 'coord', 'points' or 'xyz' array; keys are \['verts'\]"):
        read_scan(tmp_path / "c.npz")


def test_text_formats_with_header_commas_and_normals(tmp_path):
    rows = np.concatenate([POINTS, COLORS], axis=1)
    (tmp_path / "a.txt").write_text("\n".join(" ".join(f"{v:g}" for v in r) for r in rows) + "\n")
    _check(read_scan(tmp_path / "a.txt"))
    (tmp_path / "b.csv").write_text("X,Y,Z,Red,Green,Blue\n" + "\n".join(",".join(f"{v:g}" for v in r) for r in rows))
    _check(read_scan(tmp_path / "b.csv"))
    (tmp_path / "c.xyz").write_text("//X Y Z R G B\r\n" + "\r\n".join("\t".join(f"{v:g}" for v in r) for r in rows))
    _check(read_scan(tmp_path / "c.xyz"))
    normals = np.array([[0, 0, 1], [0, -1, 0], [1, 0, 0]])
    (tmp_path / "d.xyz").write_text("\n".join(" ".join(f"{v:g}" for v in r) for r in np.c_[POINTS, normals]))
    _check(read_scan(tmp_path / "d.xyz"), colors=False)  # negative values: normals, not colours


def test_leica_pts_with_count_line_and_intensity(tmp_path):
    rows = np.c_[POINTS, [-1200, 30, 5], COLORS]
    (tmp_path / "s.pts").write_text("3\n" + "\n".join(" ".join(f"{v:g}" for v in r) for r in rows) + "\n")
    _check(read_scan(tmp_path / "s.pts"))


def _pcd_header(fields, sizes, types, n, data):
    return (f"# .PCD v0.7\nVERSION 0.7\nFIELDS {fields}\nSIZE {sizes}\nTYPE {types}\nCOUNT {' '.join(['1'] * len(fields.split()))}\n"
            f"WIDTH {n}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {n}\nDATA {data}\n").encode()


def _packed(colors):
    return (colors[:, 0].astype(np.uint32) << 16) | (colors[:, 1].astype(np.uint32) << 8) | colors[:, 2]


def test_pcd_binary_and_ascii_with_packed_rgb(tmp_path):
    records = np.zeros(3, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("rgb", "<f4")])
    for i, a in enumerate("xyz"):
        records[a] = POINTS[:, i]
    records["rgb"] = _packed(COLORS).view(np.float32)
    (tmp_path / "b.pcd").write_bytes(_pcd_header("x y z rgb", "4 4 4 4", "F F F F", 3, "binary") + records.tobytes())
    _check(read_scan(tmp_path / "b.pcd"))
    body = "".join(f"{p[0]:g} {p[1]:g} {p[2]:g} {c}\n" for p, c in zip(POINTS, _packed(COLORS)))  # PCL: rgb as uint
    (tmp_path / "a.pcd").write_bytes(_pcd_header("x y z rgb", "4 4 4 4", "F F F U", 3, "ascii") + body.encode())
    _check(read_scan(tmp_path / "a.pcd"))
    body = "".join(f"{p[0]:g} {p[1]:g} {p[2]:g}\n" for p in POINTS)
    (tmp_path / "xyz.pcd").write_bytes(_pcd_header("x y z", "4 4 4", "F F F", 3, "ascii") + body.encode())
    _check(read_scan(tmp_path / "xyz.pcd"), colors=False)


def test_pcd_truncated_compressed_and_garbage_are_reported(tmp_path):
    path = tmp_path / "cut.pcd"
    path.write_bytes(_pcd_header("x y z", "4 4 4", "F F F", 3, "binary") + b"\x00" * 30)
    with pytest.raises(DataFormatError, match=r"cut\.pcd: truncated binary PCD: 3 points need 36 bytes, file has 30"):
        read_scan(path)
    path = tmp_path / "lzf.pcd"
    path.write_bytes(_pcd_header("x y z", "4 4 4", "F F F", 3, "binary_compressed") + b"\x00" * 40)
    with pytest.raises(DataFormatError, match=r"lzf\.pcd: PCD DATA 'binary_compressed' is not supported"):
        read_scan(path)
    path = tmp_path / "junk.pcd"
    path.write_bytes(b"\xff\xfe\x00junk\n" * 3)
    with pytest.raises(DataFormatError, match=r"junk\.pcd: PCD header is not ASCII"):
        read_scan(path)


def test_explicit_units_scale_to_metres(tmp_path):
    np.save(tmp_path / "s.npy", POINTS * 100)
    np.testing.assert_allclose(read_scan(tmp_path / "s.npy", units="cm")["coord"], POINTS, atol=1e-6)
    np.save(tmp_path / "f.npy", POINTS)
    np.testing.assert_allclose(read_scan(tmp_path / "f.npy", units="ft")["coord"], POINTS * 0.3048, atol=1e-6)
    with pytest.raises(ConfigError, match="units must be one of"):
        read_scan(tmp_path / "f.npy", units="furlong")


@pytest.mark.parametrize("factor, unit", [(1000.0, "mm"), (100.0, "cm")])
def test_millimetre_and_centimetre_rooms_are_detected_and_logged(tmp_path, caplog, factor, unit):
    room = np.array([[0, 0, 0], [6.0, 4.0, 2.8], [3.0, 2.0, 1.0]])  # a 6 m x 4 m room
    np.save(tmp_path / "room.npy", room * factor)
    with caplog.at_level(logging.WARNING, logger="cad2scan.io.scans"):
        scan = read_scan(tmp_path / "room.npy")
    np.testing.assert_allclose(scan["coord"], room, atol=1e-5)
    assert f"assuming {unit}" in caplog.text and "room.npy" in caplog.text


def test_metre_room_is_left_alone_without_warning(tmp_path, caplog):
    np.save(tmp_path / "room.npy", np.array([[0, 0, 0], [30.0, 12.0, 3.0]]))
    with caplog.at_level(logging.WARNING, logger="cad2scan.io.scans"):
        scan = read_scan(tmp_path / "room.npy")
    assert scan["coord"].max() == pytest.approx(30.0) and caplog.text == ""


def test_nan_points_raise_or_are_dropped_on_request(tmp_path):
    points = np.concatenate([POINTS, [[np.nan, 0, 0], [0, np.inf, 0]]])
    colors = np.concatenate([COLORS, [[9, 9, 9], [8, 8, 8]]]).astype(np.uint8)
    write_ply(tmp_path / "holes.ply", points, colors)
    with pytest.raises(DataFormatError, match=r"holes\.ply: 2 of 5 points have NaN or infinite"):
        read_scan(tmp_path / "holes.ply")
    with pytest.warns(UserWarning, match=r"holes\.ply: dropped 2 of 5 points"):
        scan = read_scan(tmp_path / "holes.ply", drop_invalid=True)
    _check(scan)


def test_empty_scans_raise_empty_scan_error(tmp_path):
    np.save(tmp_path / "empty.npy", np.zeros((0, 3)))
    (tmp_path / "empty.txt").write_text("\n\n")
    (tmp_path / "header_only.csv").write_text("x,y,z\n")
    write_ply(tmp_path / "empty.ply", np.zeros((0, 3)))
    for name in ("empty.npy", "empty.txt", "header_only.csv", "empty.ply"):
        with pytest.raises(EmptyScanError, match=name.replace(".", r"\.")):
            read_scan(tmp_path / name)
    np.save(tmp_path / "all_nan.npy", np.full((2, 3), np.nan))
    with pytest.raises(EmptyScanError, match=r"all_nan\.npy: scan has no valid points"), pytest.warns(UserWarning):
        read_scan(tmp_path / "all_nan.npy", drop_invalid=True)


def test_unknown_extension_lists_supported_ones(tmp_path):
    (tmp_path / "scan.obj").write_text("v 0 0 0\n")
    with pytest.raises(DataFormatError, match=r"scan\.obj: unknown scan extension '\.obj'; supported: \.ply, \.npy"):
        read_scan(tmp_path / "scan.obj")


def test_malformed_inputs_name_the_file(tmp_path):
    (tmp_path / "bad.txt").write_text("1 2 3\n4 5\n")
    with pytest.raises(DataFormatError, match=r"bad\.txt: unreadable point rows"):
        read_scan(tmp_path / "bad.txt")
    (tmp_path / "two.txt").write_text("1 2\n4 5\n")
    with pytest.raises(DataFormatError, match=r"two\.txt: rows have 2 column"):
        read_scan(tmp_path / "two.txt")
    (tmp_path / "bin.txt").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xff")
    with pytest.raises(DataFormatError, match=r"bin\.txt: not a text point file"):
        read_scan(tmp_path / "bin.txt")
    (tmp_path / "x.npy").write_bytes(b"not numpy")
    with pytest.raises(DataFormatError, match=r"x\.npy: not a readable \.npy"):
        read_scan(tmp_path / "x.npy")
    np.save(tmp_path / "flat.npy", np.zeros(6))
    with pytest.raises(DataFormatError, match=r"flat\.npy: expected an \(N, >=3\)"):
        read_scan(tmp_path / "flat.npy")
    with pytest.raises(DataFormatError, match=r"absent\.ply: file not found"):
        read_scan(tmp_path / "absent.ply")


def test_las_without_laspy_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "laspy", None)  # import laspy -> ImportError
    (tmp_path / "s.las").write_bytes(b"LASF")
    with pytest.raises(DataFormatError, match=r"s\.las: .*pip install laspy"):
        read_scan(tmp_path / "s.las")


def test_real_scannet_mesh_reads_in_metres():
    path = SCENE / "scene0470_00_vh_clean_2.ply"
    if not path.exists():
        pytest.skip(f"shared ScanNet sample data not found at {path}")
    scan = read_scan(path)
    assert scan["coord"].shape == (67465, 3) and scan["color"].shape == (67465, 3)
    extent = scan["coord"].max(0) - scan["coord"].min(0)
    assert 1.0 < extent.max() < 20.0  # a room, in metres, untouched


def test_text_comment_lines_before_the_header_are_skipped(tmp_path):
    rows = np.concatenate([POINTS, COLORS], axis=1)
    body = "\n".join(" ".join(f"{v:g}" for v in r) for r in rows)
    (tmp_path / "a.txt").write_text("# exported by a scanner app\n# 3 points\n" + body)
    _check(read_scan(tmp_path / "a.txt"))
    (tmp_path / "b.txt").write_text("# exported by a scanner app\nx y z red green blue\n" + body)
    _check(read_scan(tmp_path / "b.txt"))
    (tmp_path / "c.txt").write_text("x y z r g\n" + body)
    with pytest.raises(DataFormatError, match=r"c\.txt: header names 5 columns but rows have 6"):
        read_scan(tmp_path / "c.txt")
