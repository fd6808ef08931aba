"""Tests for the real-style room generator."""

import numpy as np
import pytest

from cad2scan.errors import ConfigError
from cad2scan.synth.primitives import is_closed_outward
from cad2scan.synth.rooms import (
    FLOOR_STANDING_LABELS,
    ROOM_TYPES,
    WALL_THICKNESS,
    Room,
    make_room,
)

ALLOWED_LABELS = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 14, 16, 18, 29, 33, 34, 35, 36, 37, 39, 40}
TARGET_LABELS = {"bathtub": 36, "bed": 4, "bookshelf": 10, "chair": 5, "curtain": 16, "desk": 14,
                 "door": 8, "sink": 34, "sofa": 6, "table": 7, "toilet": 33}


@pytest.fixture(scope="module")
def rooms() -> list[Room]:
    """18 rooms, each type three times (like the demo's 12 + 6)."""
    return [make_room(np.random.default_rng(seed), ROOM_TYPES[seed % len(ROOM_TYPES)]) for seed in range(18)]


def test_rooms_have_four_walls_a_floor_and_only_nyu40_labels(rooms):
    for room in rooms:
        labels = [label for _, label in room.parts]
        assert labels.count(1) == 4
        assert labels.count(2) == 1
        assert set(labels) <= ALLOWED_LABELS
        assert len(set(labels) - {1, 2}) >= 3, room.room_type


def test_room_sizes_are_plausible(rooms):
    for room in rooms:
        sx, sy, height = room.size
        assert 1.9 <= min(sx, sy) and max(sx, sy) <= 7.5
        assert 2.3 <= height <= 3.1


def test_floor_top_is_z0_and_walls_stand_on_it(rooms):
    for room in rooms:
        for mesh, label in room.parts:
            lo, hi = mesh.bounds()
            if label == 2:
                assert hi[2] == pytest.approx(0.0)
            elif label == 1:
                assert lo[2] == pytest.approx(0.0) and hi[2] == pytest.approx(room.size[2])


def test_furniture_stands_on_the_floor_inside_the_room(rooms):
    checked = 0
    for room in rooms:
        sx, sy, height = room.size
        for mesh, label in room.parts:
            lo, hi = mesh.bounds()
            if label in FLOOR_STANDING_LABELS:
                assert abs(lo[2]) < 0.005, f"{room.room_type}: label {label} floats at {lo[2]:.3f} m"
                checked += 1
            if label not in (1, 2, 8, 9):  # doors and windows sit in the wall openings
                assert lo[0] > -0.005 and lo[1] > -0.005 and hi[0] < sx + 0.005 and hi[1] < sy + 0.005
                assert lo[2] > -0.005 and hi[2] <= height
            if label in (8, 9):
                assert lo[0] > -WALL_THICKNESS - 0.1 and hi[0] < sx + WALL_THICKNESS + 0.1
    assert checked > 50


def test_every_part_is_a_closed_mesh(rooms):
    for room in rooms[:6]:
        for mesh, label in room.parts:
            assert is_closed_outward(mesh), (room.room_type, label)


def test_every_target_class_occurs_in_several_rooms(rooms):
    for name, label in TARGET_LABELS.items():
        count = sum(label in room.labels() for room in rooms)
        assert count >= 2, f"{name} occurs in only {count} of {len(rooms)} rooms"


def test_room_types_have_their_typical_furniture(rooms):
    for room in rooms:
        labels = room.labels()
        assert 8 in labels  # every room has a door
        if room.room_type == "bathroom":
            assert {33, 34} <= labels
        if room.room_type == "bedroom":
            assert 4 in labels
        if room.room_type == "living_room":
            assert 6 in labels
        if room.room_type in ("office",):
            assert 14 in labels
        if room.room_type == "conference_room":
            assert {5, 7} <= labels


def test_same_seed_gives_the_same_room_and_other_seeds_differ():
    a = make_room(np.random.default_rng(7), "office")
    b = make_room(np.random.default_rng(7), "office")
    c = make_room(np.random.default_rng(8), "office")
    assert [l for _, l in a.parts] == [l for _, l in b.parts]
    for (ma, _), (mb, _) in zip(a.parts, b.parts):
        np.testing.assert_array_equal(ma.vertices, mb.vertices)
    assert a.size != c.size


def test_random_room_type_and_unknown_type():
    room = make_room(np.random.default_rng(0))
    assert room.room_type in ROOM_TYPES
    with pytest.raises(ConfigError, match="garage"):
        make_room(np.random.default_rng(0), "garage")
