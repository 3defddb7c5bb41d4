"""Synthetic scenes: determinism, exact masks, parts and groups."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from samkit.data import Scene, SyntheticScenes, make_scene
from samkit.data.synthetic import MAX_FRACTION, MIN_AREA


@pytest.fixture(scope="module")
def scenes() -> list[Scene]:
    return list(SyntheticScenes(seed=5, n=12, size=128))


def test_same_seed_same_scene() -> None:
    a, b = make_scene(3, 7, 96), SyntheticScenes(seed=3, n=8, size=96)[7]
    assert np.array_equal(a.image, b.image)
    assert np.array_equal(a.masks, b.masks)
    assert a.parts == b.parts and a.groups == b.groups


def test_other_seed_or_index_other_scene() -> None:
    base = make_scene(3, 7, 96).image
    assert not np.array_equal(base, make_scene(4, 7, 96).image)
    assert not np.array_equal(base, make_scene(3, 8, 96).image)


def test_scene_format(scenes: list[Scene]) -> None:
    for scene in scenes:
        assert scene.image.shape == (128, 128, 3) and scene.image.dtype == np.uint8
        assert scene.masks.shape == (len(scene.objects), 128, 128)
        assert scene.masks.dtype == bool
        areas = scene.masks.sum(axis=(1, 2))
        assert (areas >= MIN_AREA).all() and (areas <= MAX_FRACTION * 128 * 128).all()


def test_flat_objects_show_exactly_their_colour(scenes: list[Scene]) -> None:
    checked = 0
    for scene in scenes:
        wholes = {w for _, w in scene.parts}
        for i, obj in enumerate(scene.objects):
            if obj.texture == "flat" and obj.kind != "group" and i not in wholes:
                assert (scene.image[obj.mask] == obj.colour).all()
                checked += 1
    assert checked >= 10


def test_visible_regions_do_not_overlap(scenes: list[Scene]) -> None:
    for scene in scenes:
        wholes = {w for _, w in scene.parts}
        leaves = [
            o.mask for i, o in enumerate(scene.objects) if o.kind != "group" and i not in wholes
        ]
        assert np.stack(leaves).sum(axis=0).max() <= 1


def test_parts_and_groups_are_consistent(scenes: list[Scene]) -> None:
    assert sum(len(s.parts) for s in scenes) >= 3
    assert sum(len(s.groups) for s in scenes) >= 3
    for scene in scenes:
        for part, whole in scene.parts:
            p, w = scene.objects[part], scene.objects[whole]
            assert p.kind == "part" and w.kind == "object"
            assert not (p.mask & ~w.mask).any()  # part within whole
            assert p.mask.sum() < w.mask.sum()
        for group, members in scene.groups:
            assert scene.objects[group].kind == "group" and len(members) >= 2
            union = np.logical_or.reduce([scene.objects[m].mask for m in members])
            assert np.array_equal(scene.objects[group].mask, union)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31), index=st.integers(0, 10**6))
def test_invariants_hold_for_any_seed(seed: int, index: int) -> None:
    scene = make_scene(seed, index, 64)
    for part, whole in scene.parts:
        assert not (scene.objects[part].mask & ~scene.objects[whole].mask).any()
    for group, members in scene.groups:
        union = np.logical_or.reduce([scene.objects[m].mask for m in members])
        assert np.array_equal(scene.objects[group].mask, union)


def test_bad_arguments() -> None:
    with pytest.raises(IndexError):
        SyntheticScenes(seed=0, n=2)[2]
    with pytest.raises(ValueError, match="size"):
        SyntheticScenes(seed=0, n=2, size=8)
