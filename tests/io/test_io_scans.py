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


@pytest.mark.parametrize("suffix", [".las", ".laz"])
def test_las_without_laspy_says_what_to_install(tmp_path, monkeypatch, suffix):
    monkeypatch.setitem(sys.modules, "laspy", None)  # import laspy -> ImportError
    (tmp_path / f"s{suffix}").write_bytes(b"LASF")
    with pytest.raises(DataFormatError, match=rf"s\{suffix}: reading \.las/\.laz needs .*pip install laspy"):
        read_scan(tmp_path / f"s{suffix}")


# ------------------------------------------------------------------ LAS / LAZ written by laspy itself

LAS_SCALE = 0.001
LAS_OFFSET = np.array([10.0, -20.0, 0.5])
# on the 1 mm LAS grid, not integers: a reader that skips scale/offset returns raw ints
LAS_POINTS = np.array([[10.123, -19.877, 0.501], [11.5, -18.25, 2.999], [12.007, -17.5, 1.234], [10.0, -20.0, 0.5]])
LAS_COLORS = np.array([[255, 0, 0], [0, 128, 0], [1, 2, 3], [254, 255, 127]], dtype=np.uint8)


def _write_las(path, points, *, point_format=3, version="1.2", colors16=None, scale=LAS_SCALE, offset=LAS_OFFSET):
    """Write (N, 3) float64 points [and (N, 3) 16-bit colours] with laspy (skips if it is absent)."""
    laspy = pytest.importorskip("laspy")
    header = laspy.LasHeader(point_format=point_format, version=version)
    header.scales = np.full(3, scale)
    header.offsets = np.asarray(offset, dtype=np.float64)
    las = laspy.LasData(header)
    las.x, las.y, las.z = points[:, 0], points[:, 1], points[:, 2]
    if colors16 is not None:
        las.red, las.green, las.blue = colors16[:, 0], colors16[:, 1], colors16[:, 2]
    las.write(str(path))
    return las


@pytest.mark.parametrize(
    "version, point_format, has_rgb",
    [("1.2", 0, False), ("1.2", 1, False), ("1.2", 2, True), ("1.2", 3, True),
     ("1.4", 6, False), ("1.4", 7, True), ("1.4", 8, True)],
)
def test_las_point_formats_read_scaled_coordinates_and_colours(tmp_path, version, point_format, has_rgb):
    colors16 = LAS_COLORS.astype(np.uint16) * 257 if has_rgb else None
    las = _write_las(tmp_path / "s.las", LAS_POINTS, point_format=point_format, version=version, colors16=colors16)
    assert not np.allclose(np.asarray(las.X), LAS_POINTS[:, 0])  # stored ints differ from metres
    scan = read_scan(tmp_path / "s.las")
    assert scan["coord"].dtype == np.float32 and scan["coord"].shape == (len(LAS_POINTS), 3)
    np.testing.assert_allclose(scan["coord"], LAS_POINTS, atol=LAS_SCALE / 100)
    if has_rgb:
        np.testing.assert_array_equal(scan["color"], LAS_COLORS)
        assert scan["color"].dtype == np.uint8
    else:
        assert "color" not in scan


def test_las_off_grid_coordinates_are_quantised_to_the_las_scale(tmp_path):
    rng = np.random.default_rng(0)
    points = rng.uniform(-5.0, 5.0, size=(200, 3))
    _write_las(tmp_path / "q.las", points, point_format=0, scale=0.01, offset=[0.0, 0.0, 0.0])
    coord = read_scan(tmp_path / "q.las")["coord"]
    error = np.abs(coord - points)
    assert coord.shape == (200, 3) and error.max() <= 0.005 + 1e-6
    assert error.max() > 1e-4  # really quantised: the file stores centimetres


@pytest.mark.parametrize("to_16bit", [lambda c: c * 257, lambda c: c * 256, lambda c: c], ids=["x257", "x256", "8bit"])
def test_las_16bit_colour_conventions_all_give_the_8bit_values(tmp_path, to_16bit):
    _write_las(tmp_path / "c.las", LAS_POINTS, colors16=to_16bit(LAS_COLORS.astype(np.uint16)))
    np.testing.assert_array_equal(read_scan(tmp_path / "c.las")["color"], LAS_COLORS)


def test_empty_las_raises_empty_scan_error_naming_the_file(tmp_path):
    _write_las(tmp_path / "none.las", np.zeros((0, 3)), point_format=2, colors16=np.zeros((0, 3), np.uint16))
    with pytest.raises(EmptyScanError, match=r"none\.las: scan has no points"):
        read_scan(tmp_path / "none.las")


def test_corrupt_las_files_raise_data_format_error_naming_the_file(tmp_path):
    _write_las(tmp_path / "good.las", LAS_POINTS, point_format=3, colors16=LAS_COLORS.astype(np.uint16) * 257)
    data = (tmp_path / "good.las").read_bytes()
    point_size = 34  # LAS point format 3 record length
    cases = {
        "garbage.las": (b"hello garbage " * 40, r"not a readable LAS/LAZ file \(LaspyException: Invalid file signature"),
        "short_header.las": (data[:100], r"not a readable LAS/LAZ file \(LaspyException: .*small"),
        "half_point.las": (data[:-10], r"not a readable LAS/LAZ file \(ValueError"),
        "lost_point.las": (data[:-point_size], r"truncated LAS file: header declares 4 points, file holds 3"),
        "zero_bytes.las": (b"", r"not a readable LAS/LAZ file"),
    }
    for name, (content, reason) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(DataFormatError, match=name.replace(".", r"\.") + ": " + reason):
            read_scan(tmp_path / name)


def test_laz_round_trip_with_an_installed_backend(tmp_path):
    laspy = pytest.importorskip("laspy")
    if not laspy.LazBackend.detect_available():
        pytest.skip("no LAZ backend (pip install lazrs) to write and read .laz")
    _write_las(tmp_path / "s.laz", LAS_POINTS, point_format=3, colors16=LAS_COLORS.astype(np.uint16) * 256)
    assert (tmp_path / "s.laz").read_bytes()[104] & 0x80  # the points really are compressed
    scan = read_scan(tmp_path / "s.laz")
    np.testing.assert_allclose(scan["coord"], LAS_POINTS, atol=LAS_SCALE / 100)
    np.testing.assert_array_equal(scan["color"], LAS_COLORS)
    (tmp_path / "cut.laz").write_bytes((tmp_path / "s.laz").read_bytes()[:-20])
    with pytest.raises(DataFormatError, match=r"cut\.laz: not a readable LAS/LAZ file"):
        read_scan(tmp_path / "cut.laz")


def test_laz_without_a_backend_says_what_to_install(tmp_path, monkeypatch):
    laspy = pytest.importorskip("laspy")
    _write_las(tmp_path / "plain.las", LAS_POINTS, point_format=3)
    data = bytearray((tmp_path / "plain.las").read_bytes())
    data[104] |= 0x80  # point-format byte with the "compressed" bit set, as in every .laz
    (tmp_path / "s.laz").write_bytes(bytes(data))
    monkeypatch.setattr(laspy.LazBackend, "detect_available", classmethod(lambda cls: ()))
    with pytest.raises(DataFormatError, match=r"s\.laz: LAZ-compressed points need a LAZ backend .*pip install lazrs"):
        read_scan(tmp_path / "s.laz")


def test_georeferenced_las_warns_about_float32_precision(tmp_path, caplog):
    utm = LAS_POINTS + np.array([500000.0, 4000000.0, 0.0])
    _write_las(tmp_path / "utm.las", utm, point_format=0, offset=[500000.0, 4000000.0, 0.0])
    with caplog.at_level(logging.WARNING, logger="cad2scan.io.scans"):
        scan = read_scan(tmp_path / "utm.las", units="m")
    assert "utm.las: points lie up to 3999982 m from the origin" in caplog.text
    assert "rounded to about 0.250 m" in caplog.text and "re-centre" in caplog.text
    np.testing.assert_allclose(scan["coord"], utm, atol=0.5)  # float32 keeps only ~0.25 m here


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
