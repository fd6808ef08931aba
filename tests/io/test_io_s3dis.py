"""S3DIS room reader on the real fixture and on rooms with the dataset's known corruptions."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from cad2scan.errors import DataFormatError, EmptyScanError, UnknownClassError
from cad2scan.io.s3dis import S3DIS_CLASSES, list_rooms, read_points_txt, read_s3dis_room, s3dis_class_index

S3DIS = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "s3dis"


def _room(tmp_path: Path, files: dict[str, bytes], name: str = "office_1", area: int = 5) -> Path:
    room = tmp_path / f"Area_{area}" / name
    (room / "Annotations").mkdir(parents=True)
    for filename, content in files.items():
        (room / "Annotations" / filename).write_bytes(content)
    return room


def _lines(rows) -> bytes:
    return "".join(" ".join(str(v) for v in row) + "\n" for row in rows).encode()


def test_class_list_order_and_stairs_alias():
    assert S3DIS_CLASSES == ("ceiling", "floor", "wall", "beam", "column", "window", "door",
                             "table", "chair", "sofa", "bookcase", "board", "clutter")
    assert s3dis_class_index("stairs") == S3DIS_CLASSES.index("clutter") == 12
    assert s3dis_class_index("chair") == 8


def test_room_concatenates_annotations_with_labels_and_instances(tmp_path):
    room = _room(tmp_path, {
        "chair_1.txt": _lines([[1.0, 2.0, 0.5, 10, 20, 30], [1.1, 2.0, 0.5, 11, 21, 31]]),
        "stairs_1.txt": _lines([[0, 0, 0, 0, 0, 0]]),
        "wall_2.txt": _lines([[3, 3, 3, 255, 255, 255]]),
    })
    scan = read_s3dis_room(room)
    assert scan["room"] == "Area_5/office_1"
    np.testing.assert_array_equal(scan["label"], [8, 8, 12, 2])
    np.testing.assert_array_equal(scan["instance"], [0, 0, 1, 2])
    np.testing.assert_allclose(scan["coord"][1], [1.1, 2.0, 0.5], rtol=1e-6)
    np.testing.assert_array_equal(scan["color"][0], [10, 20, 30])
    assert scan["coord"].dtype == np.float32 and scan["color"].dtype == np.uint8 and scan["label"].dtype == np.int64


def test_nul_byte_inside_a_line_is_read_as_space_and_reported(tmp_path):
    content = b"1 2 3 185\x00187 182\n4 5 6 1 2 3\n"  # Area_5/hallway_6 ceiling_1.txt corruption
    room = _room(tmp_path, {"ceiling_1.txt": content}, "hallway_6")
    with pytest.warns(UserWarning, match=r"ceiling_1\.txt: 1 NUL byte\(s\) read as spaces \(line\(s\) 1\)"):
        scan = read_s3dis_room(room)
    np.testing.assert_array_equal(scan["color"], [[185, 187, 182], [1, 2, 3]])


def test_lines_with_wrong_field_count_are_skipped_with_file_and_line(tmp_path):
    content = _lines([[0, 0, 0, 1, 1, 1]]) + b"9 9 9 9\n" + _lines([[1, 1, 1, 2, 2, 2]]) + b"1 2 3 x 5 6\n"
    room = _room(tmp_path, {"floor_1.txt": content})
    with pytest.warns(UserWarning, match=r"floor_1\.txt: skipped 2 line\(s\) without 6 numbers \(line\(s\) 2, 4\)"):
        scan = read_s3dis_room(room)
    np.testing.assert_array_equal(scan["coord"], [[0, 0, 0], [1, 1, 1]])


def test_duplicate_copy_file_is_detected_by_content_and_skipped(tmp_path):
    wall = _lines([[0, 0, 0, 1, 1, 1], [0, 1, 0, 1, 1, 1]])
    other = _lines([[5, 5, 5, 1, 1, 1], [5, 6, 5, 1, 1, 1]])  # same size, different content
    room = _room(tmp_path, {"wall_3 (1).txt": wall, "wall_3.txt": wall, "wall_4.txt": other}, "office_36")
    with pytest.warns(UserWarning, match=r"wall_3 \(1\)\.txt: identical to wall_3\.txt; skipped"):
        scan = read_s3dis_room(room)
    assert len(scan["coord"]) == 4
    np.testing.assert_array_equal(scan["instance"], [0, 0, 1, 1])


def test_unknown_class_in_file_name_names_the_file(tmp_path):
    room = _room(tmp_path, {"chair_1.txt": _lines([[0] * 6]), "lamp_1.txt": _lines([[0] * 6])})
    with pytest.raises(UnknownClassError, match=r"lamp_1\.txt: unknown S3DIS class 'lamp'"):
        read_s3dis_room(room)


def test_empty_annotations_folder_is_a_clear_error(tmp_path):
    room = _room(tmp_path, {}, "empty_room")
    with pytest.raises(DataFormatError, match=r"empty_room/Annotations: Annotations folder has no"):
        read_s3dis_room(room)
    (room / "Annotations" / "wall_1.txt").write_bytes(b"\n")
    with pytest.raises(EmptyScanError, match=r"empty_room/Annotations: every annotation file is empty"), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        read_s3dis_room(room)


def test_bad_annotation_file_name_and_missing_room(tmp_path):
    room = _room(tmp_path, {"wall.txt": _lines([[0] * 6])})
    with pytest.raises(DataFormatError, match=r"wall\.txt: annotation file name is not <class>_<k>\.txt"):
        read_s3dis_room(room)
    with pytest.raises(DataFormatError, match=r"nowhere: S3DIS room folder not found"):
        read_s3dis_room(tmp_path / "nowhere")


def test_room_without_annotations_reads_room_file_unlabelled(tmp_path):
    room = tmp_path / "Area_6" / "lounge_1"
    room.mkdir(parents=True)
    (room / "lounge_1.txt").write_bytes(_lines([[0, 0, 0, 1, 2, 3], [1, 1, 1, 4, 5, 6]]))
    scan = read_s3dis_room(room)
    np.testing.assert_array_equal(scan["label"], [-1, -1])
    np.testing.assert_array_equal(scan["instance"], [-1, -1])
    (room / "lounge_1.txt").unlink()
    with pytest.raises(DataFormatError, match=r"lounge_1: neither an Annotations folder nor lounge_1\.txt"):
        read_s3dis_room(room)


def test_nan_coordinates_are_an_error(tmp_path):
    room = _room(tmp_path, {"wall_1.txt": b"nan 0 0 1 1 1\n0 0 0 1 1 1\n"})
    with pytest.raises(DataFormatError, match=r"Annotations: 1 points have NaN"):
        read_s3dis_room(room)


def test_points_txt_parses_crlf_and_tabs_without_warnings(tmp_path):
    path = tmp_path / "p.txt"
    path.write_bytes(b"1\t2\t3\t4\t5\t6\r\n7 8 9 10 11 12\r\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(read_points_txt(path), [[1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12]])


def test_list_rooms_sorted_by_area_and_missing_area_reported(tmp_path):
    for area, name in ((1, "office_2"), (1, "hallway_1"), (3, "WC_1")):
        (tmp_path / f"Area_{area}" / name).mkdir(parents=True)
    assert [f"{p.parent.name}/{p.name}" for p in list_rooms(tmp_path, [3, 1])] == \
        ["Area_3/WC_1", "Area_1/hallway_1", "Area_1/office_2"]
    with pytest.raises(DataFormatError, match=r"Area_2: S3DIS area 2 not found"):
        list_rooms(tmp_path, [2])


# ---------------------------------------------------------------- the real fixture


def _shared_room(relative: str) -> Path:
    room = S3DIS / relative
    if not room.exists():
        pytest.skip(f"shared S3DIS sample data not found at {room}")
    return room


def test_real_hallway_has_the_documented_chair():
    scan = read_s3dis_room(_shared_room("Area_1/hallway_1"))
    counts = np.bincount(scan["label"], minlength=13)
    assert counts[S3DIS_CLASSES.index("chair")] == 19370
    assert counts[S3DIS_CLASSES.index("ceiling")] == 50000
    assert len(scan["coord"]) == 69370 and np.isfinite(scan["coord"]).all()
    first = np.array([-17.428, 1.143, 0.061], np.float32)  # first line of chair_1.txt
    chair = scan["coord"][scan["label"] == 8]
    np.testing.assert_allclose(chair[0], first, atol=1e-6)
    np.testing.assert_array_equal(scan["color"][scan["label"] == 8][0], [40, 36, 25])


def test_all_real_rooms_read_without_warnings():
    if not S3DIS.exists():
        pytest.skip(f"shared S3DIS sample data not found at {S3DIS}")
    rooms = list_rooms(S3DIS, [1, 5])
    assert [p.name for p in rooms] == ["conferenceRoom_1", "hallway_1", "copyRoom_1"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sizes = [len(read_s3dis_room(room)["coord"]) for room in rooms]
    assert sizes == [120000, 69370, 70904]
