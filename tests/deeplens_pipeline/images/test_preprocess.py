"""One file in, one clean square JPEG out; options, fingerprints and pixel identity."""

from __future__ import annotations

import pytest
from PIL import Image, ImageCms
from PIL.PngImagePlugin import PngInfo

from deeplens_pipeline.images.decode import DecodeLimits
from deeplens_pipeline.images.geometry import Transform
from deeplens_pipeline.images.preprocess import PreprocessOptions, preprocess_file, sha256_file


def test_output_is_a_square_rgb_jpeg_without_metadata(tmp_path, make):
    src = tmp_path / "camera.jpg"
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    make.scene((1200, 900)).save(
        src, "JPEG", exif=make.exif_bytes(6), icc_profile=srgb, comment=b"taken at home", quality=90
    )
    out = tmp_path / "out" / "camera.jpg"
    outcome = preprocess_file(src, out, PreprocessOptions(size=480))
    assert outcome["status"] == "ok", outcome
    with Image.open(out) as im:
        assert im.format == "JPEG" and im.mode == "RGB" and im.size == (480, 480)
        assert not im.getexif() and "icc_profile" not in im.info and "comment" not in im.info
        assert "xmp" not in im.info and "exif" not in im.info
    t = Transform(**outcome["transform"])
    assert (t.w, t.h, t.orientation, t.size) == (900, 1200, 6, 480)
    assert outcome["bytes"] == out.stat().st_size and outcome["format"] == "JPEG"
    assert len(outcome["pixels"]) == 64


def test_quality_is_a_parameter(tmp_path, make):
    src = make.write_jpeg(tmp_path / "q.jpg", make.scene((800, 600)))
    low = preprocess_file(src, tmp_path / "low.jpg", PreprocessOptions(size=300, quality=20))
    high = preprocess_file(src, tmp_path / "high.jpg", PreprocessOptions(size=300, quality=95))
    assert low["bytes"] < high["bytes"]


def test_bad_files_come_back_as_rejects_not_exceptions(tmp_path, make):
    expected = make.bad_files(tmp_path / "bad")
    for name, kind in expected.items():
        outcome = preprocess_file(tmp_path / "bad" / name, tmp_path / "out" / name, PreprocessOptions())
        assert outcome == {"status": "rejected", "kind": kind, "reason": outcome["reason"]}
        assert not (tmp_path / "out" / name).exists()


def test_same_pixels_in_different_bytes_have_the_same_pixel_hash(tmp_path, make):
    im = make.scene((400, 300))
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    im.save(a, compress_level=1)
    info = PngInfo()
    info.add_text("Comment", "copied from the phone")
    im.save(b, compress_level=9, pnginfo=info)
    assert sha256_file(a) != sha256_file(b)
    options = PreprocessOptions(size=300)
    ra = preprocess_file(a, tmp_path / "a.jpg", options)
    rb = preprocess_file(b, tmp_path / "b.jpg", options)
    assert ra["pixels"] == rb["pixels"]
    other = preprocess_file(
        make.write_jpeg(tmp_path / "c.jpg", make.scene((400, 300), seed=5)), tmp_path / "c2.jpg", options
    )
    assert other["pixels"] != ra["pixels"]


def test_fingerprint_changes_with_every_option_and_round_trips():
    base = PreprocessOptions()
    variants = [
        PreprocessOptions(size=300),
        PreprocessOptions(mode="crop"),
        PreprocessOptions(pad_colour="#ffffff"),
        PreprocessOptions(quality=80),
    ]
    prints = {base.fingerprint()} | {v.fingerprint() for v in variants}
    assert len(prints) == 1 + len(variants)
    assert PreprocessOptions().fingerprint() == base.fingerprint()
    roomier = PreprocessOptions(limits=DecodeLimits(memory_mb=2048))
    for v in [base, *variants, roomier]:
        assert PreprocessOptions.from_dict(v.to_dict()) == v
    # the limits decide what is refused, not the pixels: a new limit redoes no image, only rejects
    assert roomier.fingerprint() == base.fingerprint()
    assert roomier.rejects_fingerprint() != base.rejects_fingerprint()
    # and the images made while the limits were part of the fingerprint are still current
    assert base.fingerprint() == "abd89840f4504fe7"
    assert PreprocessOptions(size=300, mode="crop", pad_colour="#202020", quality=85).fingerprint() == (
        "9cb341a2d1d2ab23"
    )


def test_the_pixel_digest_reads_in_bands_and_equals_the_whole_image_digest(tmp_path, make):
    import hashlib

    from deeplens_pipeline.images.preprocess import pixels_sha256

    im = make.scene((1500, 1100), seed=4)  # more rows than one band holds
    whole = hashlib.sha256(f"{im.size}:2.0:".encode() + im.tobytes()).hexdigest()
    assert pixels_sha256(im, 2.0) == whole


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"size": 8}, "image size"),
        ({"mode": "stretch"}, "square mode"),
        ({"quality": 0}, "quality"),
        ({"pad_colour": "blurple"}, "colour"),
        ({"oversample": 0.5}, "oversample"),
    ],
)
def test_bad_options_name_the_option(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PreprocessOptions(**kwargs)


def test_pad_colour_is_normalised():
    assert PreprocessOptions(pad_colour="#FF0000").pad_colour == (255, 0, 0)
