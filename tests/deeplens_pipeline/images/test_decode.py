"""Decoding every format a photo folder may hold, and rejecting every kind of bad file."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image, ImageCms, ImageOps

from deeplens_pipeline.images.decode import (
    REJECT_KINDS,
    DecodeLimits,
    ImageRejected,
    decode_image,
    looks_like_heif,
)


def pixel(decoded, xy):
    return decoded.image.getpixel(xy)


def close(a, b, tol=12):
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


# ---------------------------------------------------------------- formats


def test_rgb_jpeg_decodes_at_reduced_size_with_the_reduction_reported(tmp_path, make):
    path = make.write_jpeg(tmp_path / "big.jpg", make.scene((2400, 1600)), orientation=1)
    full = decode_image(path)
    small = decode_image(path, min_long_side=512)
    assert full.reduction == 1 and full.image.size == (2400, 1600)
    assert small.reduction == 4 and small.image.size == (600, 400)
    assert small.size == (2400, 1600) and small.format == "JPEG"


def test_multi_picture_jpeg_from_a_phone_is_drafted_too(tmp_path, make):
    path = tmp_path / "IMG_0002.JPG"
    first, second = make.scene((2400, 1600)), make.scene((2400, 1600), seed=3)
    first.save(path, "MPO", save_all=True, append_images=[second], exif=make.exif_bytes(6))
    decoded = decode_image(path, min_long_side=512)
    assert decoded.format == "MPO" and decoded.reduction == 4
    assert decoded.size == (1600, 2400) and decoded.orientation == 6
    assert any("first of 2 frames" in n for n in decoded.notes)


def test_draft_never_goes_below_the_requested_size(tmp_path, make):
    path = make.write_jpeg(tmp_path / "big.jpg", make.scene((2000, 1500)))
    decoded = decode_image(path, min_long_side=512)
    assert max(decoded.image.size) >= 512
    cropped = decode_image(path, min_short_side=512)
    assert min(cropped.image.size) >= 512


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_like_pillow_does(tmp_path, make, orientation):
    im = make.scene((320, 200))
    path = make.write_jpeg(tmp_path / "o.jpg", im, orientation=orientation, quality=95)
    decoded = decode_image(path)
    with Image.open(path) as reference:
        expected = ImageOps.exif_transpose(reference).convert("RGB")
    assert decoded.orientation == orientation
    assert decoded.image.size == expected.size == decoded.size
    assert decoded.image.tobytes() == expected.tobytes()


def test_invalid_orientation_is_noted_and_ignored(tmp_path, make):
    path = make.write_jpeg(tmp_path / "o.jpg", orientation=9)
    decoded = decode_image(path)
    assert decoded.orientation == 1
    assert any("orientation" in n for n in decoded.notes)


def test_greyscale_jpeg_becomes_rgb(tmp_path):
    path = tmp_path / "grey.jpg"
    Image.new("L", (64, 48), 90).save(path)
    decoded = decode_image(path)
    assert decoded.image.mode == "RGB" and close(pixel(decoded, (5, 5)), (90, 90, 90), 2)


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (64, 48), (255, 0, 0, 0)).save(path, quality=95)  # pure cyan
    decoded = decode_image(path)
    assert decoded.image.mode == "RGB"
    assert close(pixel(decoded, (10, 10)), (0, 255, 255), 16)


def test_png_alpha_is_flattened_onto_the_background(tmp_path):
    im = Image.new("RGBA", (64, 64), (255, 0, 0, 255))
    im.paste((0, 0, 0, 0), (0, 0, 32, 64))  # left half transparent
    path = tmp_path / "alpha.png"
    im.save(path)
    decoded = decode_image(path, background=(0, 128, 255))
    assert pixel(decoded, (5, 5)) == (0, 128, 255)
    assert pixel(decoded, (50, 5)) == (255, 0, 0)


def test_grey_with_alpha_is_flattened(tmp_path):
    path = tmp_path / "la.png"
    Image.new("LA", (32, 32), (200, 0)).save(path)
    assert pixel(decode_image(path, background=(10, 20, 30)), (3, 3)) == (10, 20, 30)


def test_palette_png_with_transparency(tmp_path):
    im = Image.new("P", (32, 32), 1)
    im.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    im.paste(0, (0, 0, 16, 32))
    path = tmp_path / "pal.png"
    im.save(path, transparency=0)
    decoded = decode_image(path, background=(255, 255, 255))
    assert pixel(decoded, (2, 2)) == (255, 255, 255)
    assert pixel(decoded, (30, 2)) == (0, 255, 0)


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    im = Image.new("I;16", (32, 32), 32896)  # mid grey on 16 bits
    path = tmp_path / "deep.png"
    im.save(path)
    with Image.open(path) as check:
        assert check.mode.startswith("I")
    decoded = decode_image(path)
    assert close(pixel(decoded, (1, 1)), (128, 128, 128), 1)


def test_sixteen_bit_rgb_png(tmp_path):
    """48-bit colour, as scanners and raw converters write it (built by hand: Pillow cannot save it)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    w, h = 20, 20
    row = b"\x00" + struct.pack(">HHH", 0xC000, 0x4000, 0x8000) * w  # filter byte, then R, G, B
    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(row * h))
        + chunk(b"IEND", b"")
    )
    path = tmp_path / "deep-rgb.png"
    path.write_bytes(png)
    decoded = decode_image(path)
    assert close(pixel(decoded, (3, 3)), (0xC0, 0x40, 0x80), 1)


def test_bilevel_image(tmp_path):
    path = tmp_path / "bw.png"
    Image.new("1", (32, 32), 1).save(path)
    assert pixel(decode_image(path), (0, 0)) == (255, 255, 255)


@pytest.mark.parametrize(("fmt", "suffix"), [("TIFF", ".tif"), ("WEBP", ".webp"), ("BMP", ".bmp")])
def test_other_formats(tmp_path, make, fmt, suffix):
    path = tmp_path / f"photo{suffix}"
    make.scene((120, 90)).save(path, fmt, **({"quality": 95} if fmt == "WEBP" else {}))
    decoded = decode_image(path)
    assert decoded.format == fmt and decoded.image.mode == "RGB" and decoded.size == (120, 90)


def test_animated_gif_uses_the_first_frame(tmp_path):
    frames = [Image.new("P", (40, 30), i) for i in (1, 2)]
    for f in frames:
        f.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255] + [0] * 759)
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100)
    decoded = decode_image(path)
    assert pixel(decoded, (0, 0)) == (255, 0, 0)
    assert any("first of 2 frames" in n for n in decoded.notes)


def test_heic_from_a_phone_is_read_through_pillow_heif(tmp_path, make):
    pillow_heif = pytest.importorskip("pillow_heif")
    heif = pillow_heif.from_pillow(make.scene((160, 120)))
    path = tmp_path / "IMG_0001.HEIC"
    heif.save(path, quality=90)
    assert looks_like_heif(path.read_bytes()[:16])
    decoded = decode_image(path)
    assert decoded.format == "HEIF" and decoded.size == (160, 120) and decoded.image.mode == "RGB"


def test_heic_rotation_is_applied_once(tmp_path, make):
    pillow_heif = pytest.importorskip("pillow_heif")
    im = make.scene((160, 120))
    exif = Image.Exif()
    exif[0x0112] = 6
    heif = pillow_heif.from_pillow(im)
    path = tmp_path / "rotated.heic"
    heif.save(path, quality=90, exif=exif.tobytes())
    decoded = decode_image(path)
    assert decoded.size == (120, 160)  # turned once, by libheif, and not again by us
    assert decoded.orientation == 6 and decoded.raw_size == (160, 120)


def test_srgb_profile_is_left_alone_and_unreadable_profiles_are_noted(tmp_path, make):
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    path = tmp_path / "srgb.jpg"
    make.scene((64, 48)).save(path, icc_profile=srgb)
    assert decode_image(path).notes == []
    bad = tmp_path / "badicc.jpg"
    make.scene((64, 48)).save(bad, icc_profile=b"not a profile at all")
    decoded = decode_image(bad)
    assert any("colour profile" in n for n in decoded.notes)


def test_non_srgb_profile_is_converted_to_srgb(tmp_path, make):
    profile = make.swapped_rgb_profile()
    assert "Swapped" in ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(profile)))
    path = tmp_path / "tagged.jpg"
    Image.new("RGB", (32, 32), (200, 60, 40)).save(path, quality=98, icc_profile=profile)
    decoded = decode_image(path)
    assert decoded.notes == []
    assert close(pixel(decoded, (3, 3)), (40, 60, 200), 25), pixel(decoded, (3, 3))


# ---------------------------------------------------------------- rejects


def test_every_bad_file_is_rejected_with_its_kind(tmp_path, make):
    expected = make.bad_files(tmp_path)
    for name, kind in expected.items():
        with pytest.raises(ImageRejected) as caught:
            decode_image(tmp_path / name)
        assert caught.value.kind == kind, (name, caught.value.reason)
        assert caught.value.reason.startswith(f"{kind}: ")
    assert set(expected.values()) <= set(REJECT_KINDS)


def test_a_header_over_pillows_own_limit_is_a_bomb_too(tmp_path, make):
    path = tmp_path / "huge.png"
    path.write_bytes(make.png_with_size(30_000, 30_000))
    with pytest.raises(ImageRejected) as caught:
        decode_image(path)
    assert caught.value.kind == "decompression-bomb"


def test_pixel_limit_is_a_parameter(tmp_path, make):
    path = make.write_jpeg(tmp_path / "p.jpg", make.scene((200, 100)))
    with pytest.raises(ImageRejected, match="decompression-bomb: 200x100 = 20000 pixels"):
        decode_image(path, limits=DecodeLimits(max_pixels=10_000))
    assert decode_image(path, limits=DecodeLimits(max_pixels=20_000)).size == (200, 100)


def test_tiny_images_are_absurd(tmp_path):
    path = tmp_path / "dot.png"
    Image.new("RGB", (8, 8)).save(path)
    with pytest.raises(ImageRejected, match="absurd-dimensions: 8x8"):
        decode_image(path)


def test_truncated_png(tmp_path, make):
    buffer = io.BytesIO()
    make.scene((300, 200)).save(buffer, "PNG")
    path = tmp_path / "cut.png"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(ImageRejected) as caught:
        decode_image(path)
    assert caught.value.kind == "truncated"


def test_missing_file_is_unreadable(tmp_path):
    with pytest.raises(ImageRejected, match="unreadable"):
        decode_image(tmp_path / "gone.jpg")
