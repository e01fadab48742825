"""Listing a local folder or an S3 prefix: images by extension, sidecars, the rest ignored."""

from __future__ import annotations

import pytest

from deeplens_pipeline.images.sources import list_local, list_s3, list_source, parse_source


def test_parse_source_forms(tmp_path):
    root = parse_source(f"  {tmp_path}  ")
    assert not root.is_s3 and root.uri == str(tmp_path.resolve())
    s3 = parse_source("s3://deeplens-x/photos")
    assert (s3.bucket, s3.prefix, s3.uri) == ("deeplens-x", "photos/", "s3://deeplens-x/photos/")
    assert parse_source("s3://deeplens-x").prefix == ""


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "empty"),
        ("s3:///photos", "no bucket"),
        ("gs://b/p", "only local folders"),
        ("/no/such/dir", "not an existing"),
    ],
)
def test_bad_sources_are_named(value, message):
    with pytest.raises(ValueError, match=message):
        parse_source(value)


def test_local_listing(tmp_path):
    for name in [
        "a.jpg",
        "b.PNG",
        "sub/c.heic",
        "sub/c.xml",
        "noext",
        "notes.txt",
        ".DS_Store",
        ".git/x.jpg",
    ]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    listing = list_local(parse_source(str(tmp_path)))
    assert [i.source for i in listing.items] == ["a.jpg", "b.PNG", "sub/c.heic"]
    assert [i.voc for i in listing.items] == [None, None, "sub/c.xml"]
    assert listing.ignored == ["noext", "notes.txt"]
    assert listing.items[0].size == 1 and listing.items[0].etag is None


def test_files_without_an_image_extension_are_ignored_not_candidates(tmp_path):
    """README and LICENSE were image candidates before (no extension), so each became a reject."""
    for name in ["README", "LICENSE", "photos/Makefile", "a.jpg"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    listing = list_local(parse_source(str(tmp_path)))
    assert [i.source for i in listing.items] == ["a.jpg"]
    assert listing.ignored == ["LICENSE", "README", "photos/Makefile"]


def test_links_out_of_the_source_folder_are_refused_with_the_reason(tmp_path):
    """Before, a link to a file anywhere on the worker was read and uploaded like a photo."""
    outside = tmp_path / "outside"
    (outside / "more").mkdir(parents=True)
    (outside / "secret.jpg").write_bytes(b"not yours")
    (outside / "more" / "x.jpg").write_bytes(b"x")
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    (root / "a.jpg").write_bytes(b"a")
    (root / "evil.jpg").symlink_to(outside / "secret.jpg")
    (root / "sub" / "up.jpg").symlink_to("../../outside/secret.jpg")  # relative, still out
    (root / "more").symlink_to(outside / "more", target_is_directory=True)
    (root / "same.jpg").symlink_to(root / "a.jpg")  # inside: an ordinary duplicate
    (root / "inside").symlink_to(root / "sub", target_is_directory=True)  # walked where it really is
    (root / "notes").symlink_to(outside / "secret.jpg")  # no image extension: ignored, not read
    listing = list_local(parse_source(str(root)))
    refused = {i.source: i.refused for i in listing.items if i.refused}
    assert [i.source for i in listing.items if not i.refused] == ["a.jpg", "same.jpg"]
    assert set(refused) == {"evil.jpg", "sub/up.jpg", "more"}
    assert refused["evil.jpg"] == (
        "outside-source: a symbolic link that leads out of the source folder "
        f"(to {(outside / 'secret.jpg').resolve()}); not read"
    )
    assert refused["more"].startswith("outside-source: a link to a folder that leads out")
    assert listing.ignored == ["notes"]


def test_s3_listing(s3, bucket):
    for key in [
        "photos/a.jpg",
        "photos/a.xml",
        "photos/sub/b.webp",
        "photos/readme.md",
        "photos/dir/",
        "other/c.jpg",
    ]:
        s3.put_object(Bucket=bucket, Key=key, Body=b"data")
    root = parse_source(f"s3://{bucket}/photos")
    listing = list_s3(s3, root)
    assert [i.source for i in listing.items] == ["photos/a.jpg", "photos/sub/b.webp"]
    assert listing.items[0].voc == "photos/a.xml" and listing.items[0].etag
    assert listing.ignored == ["photos/readme.md"]
    assert list_source(root, s3) == listing
    with pytest.raises(ValueError, match="needs an S3 client"):
        list_source(root)
