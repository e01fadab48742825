"""Letterbox and crop: the pixels land where the transform says, the padding has the pad colour."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from deeplens_pipeline.images.decode import Decoded, decode_image
from deeplens_pipeline.images.square import parse_colour, square_image


def marked(size: tuple[int, int], box: tuple[int, int, int, int]) -> Image.Image:
    """Mid-grey image with one white rectangle."""
    im = Image.new("RGB", size, (90, 90, 90))
    ImageDraw.Draw(im).rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=(255, 255, 255))
    return im


def white_bbox(im: Image.Image) -> tuple[int, int, int, int]:
    mask = im.convert("L").point(lambda v: 255 if v > 200 else 0)
    box = mask.getbbox()
    assert box is not None
    return box


def expected_box(t, box):
    x0, y0 = t.apply(box[0], box[1])
    x1, y1 = t.apply(box[2], box[3])
    return x0, y0, x1, y1


@pytest.mark.parametrize("mode", ["letterbox", "crop"])
@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
@pytest.mark.parametrize("source_size", [(2400, 1600), (1600, 2400), (900, 900)])
def test_marked_rectangle_lands_where_the_transform_says(tmp_path, make, mode, orientation, source_size):
    """Through reduced-size JPEG decoding, EXIF rotation, padding or cropping and resampling."""
    oriented = marked(source_size, (700, 500, 860, 640))
    # store it the way a camera would: raw pixels rotated back, EXIF saying how to turn them
    inverse = {
        1: None,
        3: Image.Transpose.ROTATE_180,
        6: Image.Transpose.ROTATE_90,
        8: Image.Transpose.ROTATE_270,
    }
    raw = oriented.transpose(inverse[orientation]) if inverse[orientation] else oriented
    path = make.write_jpeg(tmp_path / "m.jpg", raw, orientation=orientation, quality=95)
    decoded = decode_image(path, min_long_side=300)
    assert decoded.size == source_size
    out, t = square_image(decoded, 300, mode)
    assert out.size == (300, 300) and out.mode == "RGB" and out.info == {}
    want = expected_box(t, (700, 500, 860, 640))
    got = white_bbox(out)
    assert all(abs(g - w) <= 1.5 for g, w in zip(got, want, strict=True)), (got, want, t)


def test_letterbox_padding_has_the_pad_colour(make):
    d = Decoded(
        image=make.scene((400, 200)),
        raw_size=(400, 200),
        size=(400, 200),
        orientation=1,
        reduction=1.0,
        format="PNG",
    )
    out, t = square_image(d, 300, "letterbox", pad_colour=(10, 200, 30))
    assert t.content_box() == (0, 75, 300, 225)
    assert out.getpixel((5, 5)) == (10, 200, 30)
    assert out.getpixel((295, 295)) == (10, 200, 30)
    assert out.getpixel((150, 150)) != (10, 200, 30)


def test_square_source_needs_no_padding(make):
    d = Decoded(
        image=make.scene((600, 600)),
        raw_size=(600, 600),
        size=(600, 600),
        orientation=1,
        reduction=1.0,
        format="PNG",
    )
    out, t = square_image(d, 300, "letterbox", pad_colour=(255, 0, 255))
    assert (t.dx, t.dy, t.scale) == (0.0, 0.0, 0.5)
    assert out.getpixel((0, 0)) != (255, 0, 255)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("#7f7f7f", (127, 127, 127)),
        ("gray", (128, 128, 128)),
        ("10, 20, 30", (10, 20, 30)),
        ("(1,2,3)", (1, 2, 3)),
        ([4, 5, 6], (4, 5, 6)),
        ((0, 0, 0), (0, 0, 0)),
    ],
)
def test_pad_colour_forms(value, expected):
    assert parse_colour(value) == expected


@pytest.mark.parametrize("value", ["#12", "no-such-colour", [1, 2], [0, 0, 300], "a,b,c", 7])
def test_bad_pad_colours_name_the_value(value):
    with pytest.raises(ValueError, match="colour"):
        parse_colour(value)


@settings(max_examples=60, deadline=None)
@given(
    w=st.integers(16, 700),
    h=st.integers(16, 700),
    size=st.sampled_from([300, 480, 512]),
    mode=st.sampled_from(["letterbox", "crop"]),
    reduction=st.sampled_from([1.0, 2.0]),
)
def test_any_size_squares_without_touching_the_padding(w, h, size, mode, reduction):
    """Regression: rounding the content size once asked Pillow for a box outside the image."""
    decoded_size = (math.ceil(w / reduction), math.ceil(h / reduction))
    d = Decoded(
        image=Image.new("RGB", decoded_size, (255, 255, 255)),
        raw_size=(w, h),
        size=(w, h),
        orientation=1,
        reduction=reduction,
        format="PNG",
    )
    out, t = square_image(d, size, mode, pad_colour=(0, 0, 0))
    assert out.size == (size, size)
    x0, y0, x1, y1 = t.content_box()
    if mode == "crop":
        assert (x0, y0, x1, y1) == (0, 0, size, size)
        assert out.getextrema() == ((255, 255),) * 3
    else:
        assert max(x1 - x0, y1 - y0) == size
        inside = out.crop((x0, y0, x1, y1))
        assert inside.getextrema()[0][0] > 200  # white up to the content edge
        if y1 < size:
            assert out.getpixel((size // 2, y1)) == (0, 0, 0)  # first padding row untouched
        if x1 < size:
            assert out.getpixel((x1, size // 2)) == (0, 0, 0)
