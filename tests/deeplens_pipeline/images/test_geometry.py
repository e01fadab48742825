"""Orientation and square transforms: checked against Pillow's own pixels and by property tests."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image, ImageOps

from deeplens_pipeline.images.geometry import (
    Transform,
    orient_point,
    oriented_size,
    plan_square,
)


def _white_pixel_after_exif_transpose(w: int, h: int, px: int, py: int, orientation: int) -> tuple[int, int]:
    im = Image.new("L", (w, h), 0)
    im.putpixel((px, py), 255)
    exif = Image.Exif()
    exif[0x0112] = orientation
    im.info["exif"] = exif.tobytes()
    im.getexif()[0x0112] = orientation
    out = ImageOps.exif_transpose(im)
    box = out.getbbox()
    assert box is not None
    return box[0], box[1]


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orient_point_matches_pillow_exif_transpose(orientation):
    w, h = 7, 5
    for px, py in [(0, 0), (6, 0), (2, 3), (6, 4)]:
        x, y = orient_point(px + 0.5, py + 0.5, w, h, orientation)
        assert (math.floor(x), math.floor(y)) == _white_pixel_after_exif_transpose(w, h, px, py, orientation)


@pytest.mark.parametrize(("orientation", "expected"), [(1, (7, 5)), (3, (7, 5)), (6, (5, 7)), (8, (5, 7))])
def test_oriented_size_swaps_axes_for_quarter_turns(orientation, expected):
    assert oriented_size(7, 5, orientation) == expected


@pytest.mark.parametrize("bad", [0, 9, -1])
def test_invalid_orientation_is_refused(bad):
    with pytest.raises(ValueError, match="1-8"):
        orient_point(0, 0, 5, 5, bad)


def test_letterbox_landscape_centres_vertically():
    t = plan_square(1920, 1080, 512, "letterbox")
    assert t.scale == pytest.approx(512 / 1920)
    assert (t.dx, t.dy) == (0.0, 112.0)
    assert t.content_box() == (0, 112, 512, 400)


def test_letterbox_portrait_centres_horizontally():
    t = plan_square(3024, 4032, 300, "letterbox", orientation=6)
    assert (t.dx, t.dy) == (37.0, 0.0)
    assert t.apply(3024, 4032) == pytest.approx((262.0, 300.0))  # 225 px wide, from x=37
    assert t.orientation == 6


def test_crop_gives_negative_offsets_and_covers_the_square():
    t = plan_square(1920, 1080, 512, "crop")
    assert t.scale == pytest.approx(512 / 1080)
    assert t.dx < 0 and t.dy == 0
    assert t.apply(960, 540) == pytest.approx((256, 256))
    assert t.content_box() == (0, 0, 512, 512)


@pytest.mark.parametrize(
    ("args", "message"),
    [((0, 10, 512), "positive"), ((10, 10, 0), "positive"), ((10, 10, 512, "stretch"), "square mode")],
)
def test_plan_square_refuses_bad_arguments(args, message):
    with pytest.raises(ValueError, match=message):
        plan_square(*args)


def test_transform_metadata_is_compact_json_and_round_trips():
    t = plan_square(4032, 3024, 512, "crop", orientation=6)
    text = t.to_metadata()
    assert " " not in text
    assert list(__import__("json").loads(text)) == ["w", "h", "orientation", "scale", "dx", "dy", "size"]
    assert Transform.from_metadata(text) == t


sizes = st.integers(min_value=16, max_value=9000)


@given(w=sizes, h=sizes, size=st.sampled_from([300, 480, 512]), orientation=st.integers(1, 8))
def test_letterbox_keeps_the_whole_image_inside_the_square(w, h, size, orientation):
    t = plan_square(w, h, size, "letterbox", orientation)
    x0, y0 = t.apply(0, 0)
    x1, y1 = t.apply(w, h)
    assert x0 >= -1e-9 and y0 >= -1e-9 and x1 <= size + 1e-9 and y1 <= size + 1e-9
    assert max(x1 - x0, y1 - y0) == pytest.approx(size)  # the long side fills the square
    assert abs((x0 + x1) / 2 - size / 2) <= 1 and abs((y0 + y1) / 2 - size / 2) <= 1  # centred
    assert t.dx == int(t.dx) and t.dy == int(t.dy)  # whole-pixel padding


@given(w=sizes, h=sizes, size=st.sampled_from([300, 480, 512]))
def test_crop_fills_the_square_with_the_centre(w, h, size):
    t = plan_square(w, h, size, "crop")
    x0, y0 = t.apply(0, 0)
    x1, y1 = t.apply(w, h)
    assert x0 <= 1e-6 and y0 <= 1e-6 and x1 >= size - 1e-6 and y1 >= size - 1e-6
    assert min(x1 - x0, y1 - y0) == pytest.approx(size)
    assert t.apply(w / 2, h / 2) == pytest.approx((size / 2, size / 2))
    sx0, sy0, sx1, sy1 = t.source_box()
    assert t.apply(sx0, sy0) == pytest.approx((0, 0), abs=1e-6)
    assert t.apply(sx1, sy1) == pytest.approx((size, size), abs=1e-6)


@given(
    w=st.integers(1, 5000),
    h=st.integers(1, 5000),
    x=st.floats(0, 1),
    y=st.floats(0, 1),
    orientation=st.integers(1, 8),
)
def test_orientation_maps_the_image_onto_the_oriented_frame(w, h, x, y, orientation):
    ow, oh = oriented_size(w, h, orientation)
    px, py = orient_point(x * w, y * h, w, h, orientation)
    assert -1e-9 <= px <= ow + 1e-9 and -1e-9 <= py <= oh + 1e-9
    # corners go to corners
    corners = {orient_point(cx, cy, w, h, orientation) for cx in (0, w) for cy in (0, h)}
    assert corners == {(0, 0), (ow, 0), (0, oh), (ow, oh)}


@pytest.mark.parametrize(("first", "then"), [(6, 8), (8, 6), (3, 3), (2, 2), (4, 4), (5, 5), (7, 7)])
def test_inverse_orientations_compose_to_identity(first, then):
    w, h = 40, 30
    x, y = orient_point(11.5, 7.25, w, h, first)
    ow, oh = oriented_size(w, h, first)
    assert orient_point(x, y, ow, oh, then) == pytest.approx((11.5, 7.25))
