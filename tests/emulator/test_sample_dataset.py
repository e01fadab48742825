"""The generated sample dataset: layout, answer key, determinism, and that the boxes are really drawn."""

from __future__ import annotations

import colorsys
import json
from pathlib import Path

import pytest
from PIL import Image

from emulator.sample_dataset import class_hues, generate_sample_dataset, main


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_sample_dataset(tmp_path_factory.mktemp("sample"), n_images=40, seed=3)


def _key(out: Path) -> dict:
    return json.loads((out / "answer_key.json").read_text())


def test_answer_key_lists_every_image_with_its_real_size(dataset: Path) -> None:
    key = _key(dataset)
    assert key["classes"] == ["blue_box", "yellow_box"]
    files = sorted(p.name for p in (dataset / "images").iterdir())
    assert files == sorted(key["images"])
    assert len(files) == 40
    for name, entry in key["images"].items():
        with Image.open(dataset / "images" / name) as img:
            assert img.size == (entry["width"], entry["height"])
            assert img.format == ("PNG" if name.endswith(".png") else "JPEG")


def test_images_vary_in_size_orientation_and_format(dataset: Path) -> None:
    key = _key(dataset)
    sizes = {(e["width"], e["height"]) for e in key["images"].values()}
    assert len(sizes) >= 3
    assert any(w > h for w, h in sizes) and any(w < h for w, h in sizes)
    assert all(w != h for w, h in sizes)
    assert any(n.endswith(".png") for n in key["images"]) and any(n.endswith(".jpg") for n in key["images"])


def test_boxes_lie_inside_their_image_and_cover_both_classes(dataset: Path) -> None:
    key = _key(dataset)
    labels = []
    for entry in key["images"].values():
        for obj in entry["objects"]:
            assert obj["left"] >= 0 and obj["top"] >= 0
            assert obj["width"] >= 8 and obj["height"] >= 8
            assert obj["left"] + obj["width"] <= entry["width"]
            assert obj["top"] + obj["height"] <= entry["height"]
            labels.append(obj["label"])
    assert set(labels) == {"blue_box", "yellow_box"}
    assert len(labels) >= 40


def _mean_hue_share(img: Image.Image, box: dict, hue: float) -> float:
    """Share of the box's pixels whose hue is within 0.06 of `hue` (saturated pixels only)."""
    crop = img.crop((box["left"], box["top"], box["left"] + box["width"], box["top"] + box["height"]))
    crop = crop.convert("RGB").resize((24, 24))
    near = 0
    pixels = list(crop.getdata())
    for r, g, b in pixels:
        h, s, v = colorsys.rgb_to_hsv(r / 255, g / 255, b / 255)
        gap = min(abs(h - hue), 1 - abs(h - hue))
        if s > 0.25 and v > 0.15 and gap < 0.06:
            near += 1
    return near / len(pixels)


def test_each_labelled_box_is_painted_in_its_class_colour(dataset: Path) -> None:
    key = _key(dataset)
    hues = class_hues(key["classes"])
    for name, entry in key["images"].items():
        with Image.open(dataset / "images" / name) as img:
            for obj in entry["objects"]:
                own = _mean_hue_share(img, obj, hues[obj["label"]])
                other = next(h for c, h in hues.items() if c != obj["label"])
                assert own > 0.35, (name, obj, own)
                assert _mean_hue_share(img, obj, other) < 0.05, (name, obj)


def test_same_seed_gives_identical_files_and_another_seed_differs(tmp_path: Path) -> None:
    a = generate_sample_dataset(tmp_path / "a", n_images=4, seed=7)
    b = generate_sample_dataset(tmp_path / "b", n_images=4, seed=7)
    c = generate_sample_dataset(tmp_path / "c", n_images=4, seed=8)
    assert (a / "answer_key.json").read_bytes() == (b / "answer_key.json").read_bytes()
    for p in (a / "images").iterdir():
        assert p.read_bytes() == (b / "images" / p.name).read_bytes()
    assert (a / "answer_key.json").read_bytes() != (c / "answer_key.json").read_bytes()


def test_custom_classes_get_distinct_colours(tmp_path: Path) -> None:
    out = generate_sample_dataset(tmp_path, n_images=12, classes=("apple", "pear", "plum"), seed=1)
    key = _key(out)
    assert key["classes"] == ["apple", "pear", "plum"]
    assert len(set(class_hues(key["classes"]).values())) == 3
    assert {o["label"] for e in key["images"].values() for o in e["objects"]} <= {"apple", "pear", "plum"}


@pytest.mark.parametrize("classes", [[], ["a", "a"], ["a", ""]])
def test_bad_classes_are_refused(tmp_path: Path, classes: list[str]) -> None:
    with pytest.raises(ValueError, match="classes"):
        generate_sample_dataset(tmp_path, n_images=1, classes=classes)


def test_command_line_writes_the_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "out"), "--n", "3", "--seed", "2", "--classes", "red_box,green_box"]) == 0
    key = _key(tmp_path / "out")
    assert key["classes"] == ["red_box", "green_box"] and len(key["images"]) == 3
    assert "answer_key.json" in capsys.readouterr().out
    assert main([str(tmp_path / "bad"), "--n", "0"]) == 2
