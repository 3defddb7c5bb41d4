"""Tests for samkit.io's mask formats: SA-1B, COCO, the amg.py PNG folder, label maps, YOLO-seg.

Every writer is run against real files in tmp_path with masks drawn by hand, read back with
our reader, and where a reference reader exists (pycocotools) with that too.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from samkit.io import _records
from samkit.io.coco import CocoWriter, annotation_to_mask, read_coco
from samkit.io.png import (
    METADATA_HEADER,
    read_label_map,
    read_png_folder,
    write_label_map,
    write_png_folder,
)
from samkit.io.sa1b import read_sa1b, sa1b_masks, write_sa1b
from samkit.io.yolo import read_yolo, write_yolo, yolo_masks
from samkit.masks import encode_coco_rle

# pycocotools 2.0 with numpy 2 warns inside its own decode; nothing samkit can change.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

H, W = 40, 50
IMAGE = {"image_id": 7, "width": W, "height": H, "file_name": "sa_7.jpg"}


def disc(cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[:H, :W]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def rect(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((H, W), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def ring() -> np.ndarray:
    return disc(27, 25, 10) & ~disc(27, 25, 4)


def record(mask: np.ndarray, i: int) -> dict[str, Any]:
    """A record as AMG returns it (ints in bbox and crop_box, floats elsewhere)."""
    ys, xs = np.nonzero(mask)
    bbox = [0, 0, 0, 0]
    if xs.size:
        bbox = [int(xs.min()), int(ys.min()), int(xs.max() - xs.min()), int(ys.max() - ys.min())]
    return {
        "segmentation": mask,
        "area": int(mask.sum()),
        "bbox": bbox,
        "predicted_iou": 0.9123456789 - i / 100,
        "point_coords": [[10.5 + i, 20.25]],
        "stability_score": 0.987654321,
        "crop_box": [0, 0, W, H],
    }


def masks() -> list[np.ndarray]:
    return [disc(12, 14, 8), rect(4, 16, 30, 46), ring(), np.zeros((H, W), dtype=bool)]


def records() -> list[dict[str, Any]]:
    return [record(m, i) for i, m in enumerate(masks())]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def temp_files(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


# ---- SA-1B ---------------------------------------------------------------------------------


def test_sa1b_round_trip_schema_and_masks(tmp_path: Path) -> None:
    path = tmp_path / "sa_7.json"
    write_sa1b(path, records(), image=IMAGE, first_id=100)
    raw = json.loads(path.read_text())
    assert set(raw) == {"image", "annotations"}
    assert raw["image"] == IMAGE
    ann = raw["annotations"][1]
    assert set(ann) == {
        "id", "segmentation", "bbox", "area", "predicted_iou", "stability_score", "crop_box",
        "point_coords",
    }  # fmt: skip
    assert ann["id"] == 101 and isinstance(ann["area"], int)
    assert ann["bbox"] == [30.0, 4.0, 15.0, 11.0] and all(isinstance(v, float) for v in ann["bbox"])
    assert ann["point_coords"] == [[11.5, 20.25]] and ann["crop_box"] == [0.0, 0.0, W, H]
    assert ann["segmentation"]["size"] == [H, W] and isinstance(ann["segmentation"]["counts"], str)

    info, anns = read_sa1b(path)
    assert info == IMAGE and len(anns) == 4
    for got, want in zip(sa1b_masks(anns), masks(), strict=True):
        np.testing.assert_array_equal(got, want)
    for a, want in zip(anns, masks(), strict=True):  # the counts are real COCO RLE
        np.testing.assert_array_equal(mask_utils.decode(a["segmentation"]).astype(bool), want)


def test_sa1b_accepts_rle_records(tmp_path: Path) -> None:
    rle_records = [{**r, "segmentation": encode_coco_rle(r["segmentation"])} for r in records()]
    write_sa1b(tmp_path / "a.json", records(), image=IMAGE)
    write_sa1b(tmp_path / "b.json", rle_records, image=IMAGE)
    assert (tmp_path / "a.json").read_text() == (tmp_path / "b.json").read_text()


def test_sa1b_writer_rejects_bad_records(tmp_path: Path) -> None:
    bad = records()
    del bad[2]["stability_score"]
    with pytest.raises(ValueError, match=r"record 2.*'stability_score'"):
        write_sa1b(tmp_path / "x.json", bad, image=IMAGE)
    with pytest.raises(ValueError, match=r"does not match|image is"):
        write_sa1b(tmp_path / "x.json", records(), image={**IMAGE, "width": W + 1})
    with pytest.raises(ValueError, match="'file_name'"):
        write_sa1b(tmp_path / "x.json", records(), image={"image_id": 1, "width": W, "height": H})
    assert not list(tmp_path.iterdir())


def test_sa1b_reader_rejects_malformed(tmp_path: Path) -> None:
    path = tmp_path / "sa.json"
    path.write_text('{"image": {"image_id": 1,')
    with pytest.raises(ValueError, match=r"sa\.json: not valid JSON"):
        read_sa1b(path)
    path.write_text(json.dumps({"image": IMAGE}))
    with pytest.raises(ValueError, match=r"sa\.json.*'annotations'"):
        read_sa1b(path)
    write_sa1b(path, records(), image=IMAGE)
    doc = json.loads(path.read_text())
    del doc["annotations"][3]["predicted_iou"]
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=r"annotation 3.*'predicted_iou'"):
        read_sa1b(path)
    doc = json.loads(path.read_text())
    doc["annotations"][3]["predicted_iou"] = 0.5
    doc["annotations"][0]["segmentation"]["size"] = [H, W + 1]
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="does not match"):
        read_sa1b(path)


def test_sa1b_masks_rejects_bad_rle() -> None:
    good = encode_coco_rle(rect(1, 5, 1, 5))
    sa1b_masks([{"segmentation": good}])
    with pytest.raises(ValueError, match="bad RLE"):
        sa1b_masks([{"segmentation": {"size": [H, W], "counts": good["counts"] + "zz9"}}])
    with pytest.raises(ValueError, match="bad RLE"):
        sa1b_masks([{"segmentation": {"size": [H, W], "counts": [5, 3]}}])  # sums to 8, not H*W
    with pytest.raises(ValueError, match="'counts'"):
        sa1b_masks([{"segmentation": {"size": [H, W], "counts": 12}}])


def test_atomic_write_keeps_old_file_on_failure(tmp_path: Path, monkeypatch: Any) -> None:
    path = tmp_path / "sa.json"
    write_sa1b(path, records(), image=IMAGE)
    before = path.read_bytes()
    assert temp_files(tmp_path) == []

    def boom(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(_records.json, "dump", boom)
    with pytest.raises(OSError, match="disk full"):
        write_sa1b(path, records()[:1], image=IMAGE)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["sa.json"]


# ---- COCO ----------------------------------------------------------------------------------


def test_coco_rle_round_trip_and_pycocotools(tmp_path: Path) -> None:
    writer = CocoWriter()
    first = writer.add_image("a.jpg", W, H, records())
    second = writer.add_image("b.jpg", W, H, records()[:2])
    path = tmp_path / "instances.json"
    writer.write(path)
    assert (first, second) == (1, 2)
    assert temp_files(tmp_path) == []

    ds = read_coco(path)
    assert sorted(ds.images) == [1, 2] and ds.categories == {1: {"id": 1, "name": "object"}}
    anns = ds.annotations[1]
    assert [a["id"] for a in anns] == [1, 2, 3, 4] and [a["id"] for a in ds.annotations[2]] == [
        5,
        6,
    ]
    assert all(a["iscrowd"] == 0 and a["category_id"] == 1 for a in anns)
    assert [a["area"] for a in anns] == [int(m.sum()) for m in masks()]
    for got, want in zip(ds.masks(1), masks(), strict=True):
        np.testing.assert_array_equal(got, want)

    coco = COCO(str(path))
    assert sorted(coco.getImgIds()) == [1, 2]
    for ann_id, want in zip(coco.getAnnIds(imgIds=[1]), masks(), strict=True):
        np.testing.assert_array_equal(coco.annToMask(coco.anns[ann_id]).astype(bool), want)


def test_coco_polygons(tmp_path: Path) -> None:
    writer = CocoWriter(segmentation="polygon")
    writer.add_image("a.jpg", W, H, records())
    path = tmp_path / "poly.json"
    writer.write(path)
    ds = read_coco(path)
    disc_ann, rect_ann, ring_ann, empty_ann = ds.annotations[1]
    for ann in (disc_ann, rect_ann):
        assert isinstance(ann["segmentation"], list)
        assert all(len(r) >= 6 and len(r) % 2 == 0 for r in ann["segmentation"])
    # Holes and empty masks cannot be COCO polygons: they are written as RLE, exactly.
    assert isinstance(ring_ann["segmentation"], dict)
    assert isinstance(empty_ann["segmentation"], dict)
    speck = rect(20, 30, 5, 15)
    speck[35, 40] = True  # a 1-pixel piece has no outline: the whole mask goes as RLE
    writer.add_image("b.jpg", W, H, [{"segmentation": speck}, {"segmentation": speck[:, ::-1]}])
    assert isinstance(writer.to_dict()["annotations"][-1]["segmentation"], dict)
    got = ds.masks(1)
    np.testing.assert_array_equal(got[1], masks()[1])  # a rectangle survives exactly
    assert iou(got[0], masks()[0]) > 0.9
    np.testing.assert_array_equal(got[2], masks()[2])
    assert not got[3].any()
    # Rings are written on pixel edges (COCO's convention), so pycocotools does not shrink
    # them by half a pixel: a rectangle comes back exactly, a disc almost so.
    coco = COCO(str(path))
    ref = [coco.annToMask(coco.anns[i]).astype(bool) for i in coco.getAnnIds(imgIds=[1])]
    np.testing.assert_array_equal(ref[1], masks()[1])
    assert iou(ref[0], masks()[0]) > 0.97
    np.testing.assert_array_equal(ref[2], masks()[2])
    assert not ref[3].any()
    xs = np.array(rect_ann["segmentation"][0][0::2])
    assert (xs.min(), xs.max()) == (30.0, 46.0)  # pixel columns 30..45 span x in [30, 46]


def test_coco_uncompressed_rle_and_categories(tmp_path: Path) -> None:
    m = ring()
    flat = m.T.reshape(-1).astype(np.int8)  # column-major, as COCO RLE counts run
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]])
    counts = np.diff(bounds).tolist()
    counts = [0, *counts] if flat[0] else counts  # runs start with zeros
    seg = {"size": [H, W], "counts": counts}
    ann = dict(id=9, image_id=3, category_id=5, iscrowd=1, area=int(m.sum()), segmentation=seg)
    doc = {
        "images": [{"id": 3, "file_name": "c.jpg", "width": W, "height": H}],
        "annotations": [ann],
        "categories": [{"id": 5, "name": "crowd"}],
    }
    path = tmp_path / "crowd.json"
    path.write_text(json.dumps(doc))
    ref = COCO(str(path)).annToMask(doc["annotations"][0]).astype(bool)
    np.testing.assert_array_equal(ref, m)  # the hand-made counts are right
    ds = read_coco(path)
    np.testing.assert_array_equal(annotation_to_mask(ds.annotations[3][0], H, W), m)
    assert ds.categories[5]["name"] == "crowd"

    writer = CocoWriter(categories=[{"id": 4, "name": "cell"}])
    writer.add_image("d.jpg", W, H, records()[:1], category_id=4)
    assert writer.to_dict()["annotations"][0]["category_id"] == 4
    with pytest.raises(ValueError, match="category_id 1"):
        writer.add_image("e.jpg", W, H, records()[:1])


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.pop("images"), "'images'"),
        (lambda d: d["annotations"][0].pop("segmentation"), r"annotations\[0\].*'segmentation'"),
        (lambda d: d["annotations"][0].update(image_id=99), "'image_id' 99"),
        (lambda d: d["annotations"][0].update(segmentation=[[1, 2, 3, 4]]), "polygon 0"),
        (lambda d: d["annotations"][0].update(segmentation=[[1, 2, 3, "x", 5, 6]]), "polygon 0"),
        (lambda d: d["annotations"][0]["segmentation"].update(size=[1, 2]), "does not match"),
        (lambda d: d["images"].append(dict(d["images"][0])), "duplicate image id"),
        (lambda d: d["images"][0].pop("width"), r"images\[0\].*'width'"),
    ],
)
def test_coco_reader_rejects_malformed(tmp_path: Path, edit: Any, message: str) -> None:
    writer = CocoWriter()
    writer.add_image("a.jpg", W, H, records())
    doc = writer.to_dict()
    edit(doc)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=message):
        read_coco(path)


def test_coco_bad_json_and_bad_rle(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text("[1, 2")
    with pytest.raises(ValueError, match=r"broken\.json: not valid JSON"):
        read_coco(path)
    ann = {"id": 1, "segmentation": {"size": [H, W], "counts": "\x01\x02"}}
    with pytest.raises(ValueError, match="bad RLE"):
        annotation_to_mask(ann, H, W)
    with pytest.raises(ValueError, match="must be a list of polygons or an RLE"):
        annotation_to_mask({"segmentation": "abc"}, H, W)


@settings(max_examples=40, deadline=None)
@given(arrays(np.bool_, st.tuples(st.integers(1, 9), st.integers(1, 9))))
def test_coco_rle_property(mask: np.ndarray) -> None:
    h, w = mask.shape
    writer = CocoWriter()
    writer.add_image("p.jpg", w, h, [{"segmentation": mask}])
    ann = json.loads(json.dumps(writer.to_dict()))["annotations"][0]
    np.testing.assert_array_equal(annotation_to_mask(ann, h, w), mask)
    np.testing.assert_array_equal(mask_utils.decode(ann["segmentation"]).astype(bool), mask)


@settings(max_examples=60, deadline=None)
@given(arrays(np.bool_, st.tuples(st.integers(1, 12), st.integers(1, 12))))
def test_coco_polygon_property(mask: np.ndarray) -> None:
    """Polygon mode is exact: in our reader, and in pycocotools when polygons were written."""
    h, w = mask.shape
    writer = CocoWriter(segmentation="polygon")
    writer.add_image("p.jpg", w, h, [{"segmentation": mask}])
    ann = json.loads(json.dumps(writer.to_dict()))["annotations"][0]
    np.testing.assert_array_equal(annotation_to_mask(ann, h, w), mask)
    seg = ann["segmentation"]
    if isinstance(seg, list):  # else RLE: a hole, a thin piece, or empty
        ref = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(seg, h, w)))
        np.testing.assert_array_equal(ref.astype(bool), mask)


def test_coco_from_sa1b_annotations(tmp_path: Path) -> None:
    write_sa1b(tmp_path / "sa.json", records(), image=IMAGE)
    info, anns = read_sa1b(tmp_path / "sa.json")
    writer = CocoWriter()
    writer.add_image(info["file_name"], info["width"], info["height"], anns)
    out = writer.to_dict()["annotations"]
    assert [a["segmentation"] for a in out] == [a["segmentation"] for a in anns]
    assert [a["bbox"] for a in out] == [a["bbox"] for a in anns]
    assert out[0]["predicted_iou"] == anns[0]["predicted_iou"]


# ---- PNG folder and label map --------------------------------------------------------------


def official_metadata(recs: list[dict[str, Any]]) -> str:
    """What Meta's scripts/amg.py `write_masks_to_folder` writes to metadata.csv."""
    rows = [METADATA_HEADER]
    for i, r in enumerate(recs):
        values = [i, r["area"], *r["bbox"], *r["point_coords"][0], r["predicted_iou"]]
        values += [r["stability_score"], *r["crop_box"]]
        rows.append(",".join(str(v) for v in values))
    return "\n".join(rows)


def test_png_folder_round_trip(tmp_path: Path) -> None:
    folder = tmp_path / "img"
    recs = records()
    write_png_folder(folder, recs)
    assert sorted(p.name for p in folder.iterdir()) == [
        "0.png", "1.png", "2.png", "3.png", "metadata.csv"
    ]  # fmt: skip
    assert (folder / "metadata.csv").read_text() == official_metadata(recs)
    assert METADATA_HEADER.split(",")[2:6] == ["bbox_x0", "bbox_y0", "bbox_w", "bbox_h"]
    png = np.asarray(Image.open(folder / "1.png"))
    assert png.dtype == np.uint8 and set(np.unique(png)) == {0, 255}

    back = read_png_folder(folder)
    assert len(back) == len(recs)
    for got, want in zip(back, recs, strict=True):
        np.testing.assert_array_equal(got.pop("segmentation"), want.pop("segmentation"))
        assert got == want


def test_png_folder_rejects_bad_folders(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"no metadata\.csv"):
        read_png_folder(tmp_path)
    write_png_folder(tmp_path, records()[:2])
    (tmp_path / "1.png").unlink()
    with pytest.raises(ValueError, match=r"1\.png: missing"):
        read_png_folder(tmp_path)
    (tmp_path / "metadata.csv").write_text("id,area\n0,5")
    with pytest.raises(ValueError, match="header must be"):
        read_png_folder(tmp_path)
    (tmp_path / "metadata.csv").write_text(f"{METADATA_HEADER}\n0,5,1,2")
    with pytest.raises(ValueError, match="expected 14 fields"):
        read_png_folder(tmp_path)
    with pytest.raises(ValueError, match=r"record 0.*'crop_box'"):
        write_png_folder(tmp_path / "new", [{"segmentation": rect(0, 2, 0, 2), "area": 4}])


def test_label_map_paints_small_masks_on_top(tmp_path: Path) -> None:
    big, small, other = rect(2, 30, 2, 40), disc(15, 20, 5), rect(32, 38, 44, 49)
    path = tmp_path / "labels.png"
    shapes = {"small": small, "big": big, "other": other}
    for order in (["small", "big", "other"], ["big", "small", "other"]):
        write_label_map(path, [{"segmentation": shapes[k]} for k in order], H, W)
        assert Image.open(path).mode == "I;16"
        labels = read_label_map(path)
        assert labels.dtype == np.uint16 and labels.shape == (H, W)
        i_small, i_big = order.index("small") + 1, order.index("big") + 1
        assert (labels[small] == i_small).all()
        assert (labels[big & ~small] == i_big).all()
        assert (labels[other] == 3).all()
        assert (labels[~(big | small | other)] == 0).all()
    assert temp_files(tmp_path) == []


def test_label_map_is_16_bit(tmp_path: Path) -> None:
    h, w = 20, 20
    pixels = np.eye(h * w, dtype=bool)[:300].reshape(300, h, w)  # 300 one-pixel masks
    write_label_map(tmp_path / "l.png", [{"segmentation": m} for m in pixels], h, w)
    labels = read_label_map(tmp_path / "l.png")
    expected = np.zeros(h * w, dtype=np.uint16)
    expected[:300] = np.arange(1, 301)
    np.testing.assert_array_equal(labels.reshape(-1), expected)
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match="single-channel"):
        read_label_map(tmp_path / "rgb.png")


# ---- YOLO ----------------------------------------------------------------------------------


def test_yolo_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "labels.txt"
    write_yolo(path, records(), H, W, class_id=[3, 0, 2, 1])
    lines = path.read_text().splitlines()
    assert len(lines) == 3  # disc, rectangle, ring's outer edge; the empty mask has no line
    number = r"(0|1)\.\d{6}"
    for line in lines:
        assert re.fullmatch(rf"\d+( {number} {number}){{3,}}", line), line
    entries = read_yolo(path, H, W)
    assert [c for c, _ in entries] == [3, 0, 2]
    assert all(p.shape[1] == 2 and p[:, 0].max() <= W and p[:, 1].max() <= H for _, p in entries)
    got = yolo_masks(entries, H, W)
    np.testing.assert_array_equal(got[1], masks()[1])
    assert iou(got[0], masks()[0]) > 0.9
    filled = disc(27, 25, 10)  # YOLO-seg has no holes: the ring comes back filled in
    assert iou(got[2], filled) > 0.9 and got[2][27, 25]
    assert temp_files(tmp_path) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0 0.1 0.1 0.5 0.1\n", "even number"),
        ("0 0.1 0.1 0.5 0.1 0.5\n", "even number"),
        ("a 0.1 0.1 0.5 0.1 0.5 0.5\n", "expected 'class"),
        ("\n0 0.1 0.1 1.5 0.1 0.5 0.5\n", r"labels\.txt:2: coordinates"),
        ("-1 0.1 0.1 0.5 0.1 0.5 0.5\n", "non-negative"),
    ],
)
def test_yolo_rejects_malformed(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "labels.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        read_yolo(path, H, W)


def test_yolo_writer_checks_classes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="2 entries for 4 records"):
        write_yolo(tmp_path / "x.txt", records(), H, W, class_id=[0, 1])
    with pytest.raises(ValueError, match="image is"):
        write_yolo(tmp_path / "x.txt", records(), H + 1, W)
    assert not list(tmp_path.iterdir())


def test_yolo_writer_reports_what_it_cannot_write(tmp_path: Path) -> None:
    line = np.zeros((H, W), dtype=bool)
    line[5:30, 20] = True  # 1 pixel wide: no outline of 3 vertices
    two = rect(2, 10, 2, 10) | rect(20, 30, 30, 45)  # two parts: one line each
    path = tmp_path / "labels.txt"
    got = write_yolo(
        path, [record(m, i) for i, m in enumerate([line, two, masks()[3]])], H, W, [4, 7, 1]
    )
    assert [(i, "YOLO-seg cannot hold it" in why) for i, why in got] == [(0, True), (2, False)]
    assert "empty" in got[1][1]
    entries = read_yolo(path, H, W)
    assert [c for c, _ in entries] == [7, 7]
    parts = yolo_masks(entries, H, W)
    assert not (parts[0] & parts[1]).any()
    np.testing.assert_array_equal(parts[0] | parts[1], two)
