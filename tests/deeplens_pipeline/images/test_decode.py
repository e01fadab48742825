"""Decoding every format a photo folder may hold, and rejecting every kind of bad file."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image, ImageCms, ImageOps

from deeplens_pipeline.images import decode as decode_mod
from deeplens_pipeline.images.decode import (
    REJECT_KINDS,
    DecodeLimits,
    ImageRejected,
    decode_cost,
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


def test_the_memory_limit_is_a_parameter_and_the_reason_gives_the_cost(tmp_path, make):
    path = tmp_path / "p.png"
    make.scene((3000, 2000)).save(path, compress_level=1)  # 23 MiB of pixels, no draft for a PNG
    with pytest.raises(ImageRejected) as caught:
        decode_image(path, min_long_side=512, limits=DecodeLimits(memory_mb=32))
    assert caught.value.kind == "decompression-bomb"
    assert caught.value.reason == (
        "decompression-bomb: 3000x2000 PNG (RGB) would need 39 MiB (23 MiB of pixels, 16 MiB to work) "
        "to decode, over the limit of 32 MiB (decode_memory_mb)"
    )
    assert decode_image(path, min_long_side=512, limits=DecodeLimits(memory_mb=40)).size == (3000, 2000)


# ---------------------------------------------------------------- what decoding really costs


def test_a_102_megapixel_camera_jpeg_is_decoded_in_draft_mode_not_refused(tmp_path, make):
    """Refused as a bomb before (101,756,928 pixels over a 100,000,000-pixel limit), although libjpeg
    decodes it at 1/8 scale in ~18 MiB. The file is a complete baseline 4:2:0 JPEG of that size
    whose MCUs are all mid grey (see ``big_jpeg``): libjpeg's memory depends on the size and the
    scale, not on the content, so the measured peak is that of a camera's JPEG (a real 60 MB one,
    made once with Pillow, peaked at the same 18 MiB)."""
    path = tmp_path / "IMG_0001.JPG"
    path.write_bytes(make.big_jpeg(11648, 8736))
    decoded = decode_image(path, min_long_side=512)
    assert decoded.size == (11648, 8736) and decoded.reduction == 8 and decoded.image.size == (1456, 1092)
    outcome, peak = make.measure_peak(path)
    assert outcome["status"] == "ok" and outcome["transform"]["w"] == 11648
    assert peak < 40 << 20, f"{peak / 2**20:.0f} MiB"


def test_a_huge_rgba_png_is_refused_from_its_header_without_decoding(tmp_path, make):
    """A real 9500x9500 RGBA PNG peaked at 1.12 GiB before (the 100-megapixel limit let 90 MP
    through, then the RGBA raster was copied three times); now its cost, 705 MiB at the default
    budget of 512, is read from the header and it is refused before a pixel is decoded. The file
    here has the header of such a PNG and almost no data: what the test proves is that the refusal
    comes from the header alone (before, this file went on to the decoder and came back
    "truncated"). That the cost bounds a real decode is proved below, on smaller files."""
    path = tmp_path / "poster.png"
    path.write_bytes(make.png_with_size(9500, 9500, colour_type=6))
    with pytest.raises(ImageRejected, match=r"9500x9500 PNG \(RGBA\) would need 705 MiB .* limit of 512 MiB"):
        decode_image(path, min_long_side=512)
    outcome, peak = make.measure_peak(path)
    assert outcome["kind"] == "decompression-bomb" and peak < 8 << 20, f"{peak / 2**20:.0f} MiB"


def test_a_200_megapixel_phone_jpeg_passes_although_pillow_would_refuse_it(tmp_path, make):
    path = tmp_path / "200mp.jpg"
    path.write_bytes(make.big_jpeg(16320, 12240))  # over twice Image.MAX_IMAGE_PIXELS
    pillows_limit = Image.MAX_IMAGE_PIXELS
    assert decode_image(path, min_long_side=512).image.size == (2040, 1530)
    assert pillows_limit == Image.MAX_IMAGE_PIXELS  # Pillow's own limit is set back after the decode


def _png_with_late_exif(path, im, orientation):
    """A PNG whose eXIf chunk follows the pixel data (Pillow finds it only by decoding)."""
    buffer = io.BytesIO()
    im.save(buffer, "PNG")
    data = buffer.getvalue()
    exif = Image.Exif()
    exif[0x0112] = orientation
    iend = data.rindex(b"IEND") - 4
    path.write_bytes(data[:iend] + make_chunk(b"eXIf", exif.tobytes()[6:]) + data[iend:])


def make_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def test_an_exif_orientation_after_the_png_pixels_is_read_without_decoding(tmp_path, make):
    path = tmp_path / "turned.png"
    _png_with_late_exif(path, make.scene((320, 200)), 6)
    with Image.open(path) as im:
        assert "exif" not in im.info  # Pillow would decode everything to reach it
        assert decode_mod._orientation(im, [], path) == (6, False)
        assert im._im is None  # nothing decoded
    decoded = decode_image(path)
    assert decoded.orientation == 6 and decoded.size == (200, 320)


@pytest.fixture(scope="module")
def costly(tmp_path_factory):
    """3000x2000 files of the modes and formats whose decoding costs differ."""
    folder = tmp_path_factory.mktemp("costly")
    w, h = 3000, 2000
    noise, grad = Image.effect_noise((w, h), 40), Image.linear_gradient("L").resize((w, h))
    rgb = Image.merge("RGB", [grad, noise, grad])
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.merge("RGBA", [grad, noise, grad, grad.transpose(Image.Transpose.ROTATE_180)]).save(
        folder / "rgba.png", compress_level=1
    )
    rgb.save(folder / "turned.png", compress_level=1, exif=exif.tobytes())
    grad.convert("I").point(lambda v: v * 200).convert("I;16").save(folder / "grey16.png", compress_level=1)
    rgb.quantize(64).save(folder / "palette.png", transparency=0, compress_level=1)
    rgb.resize((4000, 3000)).save(folder / "progressive.jpg", quality=90, progressive=True)
    rgb.save(folder / "photo.webp", quality=80)
    return folder


@pytest.mark.parametrize(
    "name", ["rgba.png", "turned.png", "grey16.png", "palette.png", "progressive.jpg", "photo.webp"]
)
def test_the_cost_estimate_bounds_the_real_peak(costly, make, name):
    """decode_cost against the peak RSS of the real decode in a fresh process: never under it (the
    limit holds), and not far over it (photos are not refused for costs they do not have)."""
    path = costly / name
    with decode_mod._own_bomb_check(), Image.open(path) as im:
        full = im.size
        orientation, _ = decode_mod._orientation(im, [], path)
        decode_mod._draft(im, 512, None)
        cost = decode_cost(im, full, orientation != 1, path.stat().st_size)
    outcome, peak = make.measure_peak(path, memory_mb=4096)
    assert outcome["status"] == "ok"
    assert peak <= cost.total <= 1.6 * peak, f"{name}: {cost.describe()}, measured {peak / 2**20:.0f} MiB"


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
