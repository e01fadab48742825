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
    assert [i.source for i in listing.items] == ["a.jpg", "b.PNG", "noext", "sub/c.heic"]
    assert [i.voc for i in listing.items] == [None, None, None, "sub/c.xml"]
    assert listing.ignored == ["notes.txt"]
    assert listing.items[0].size == 1 and listing.items[0].etag is None


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
