"""Output names: safe, unique, deterministic."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from deeplens_pipeline.images.naming import normalise_prefix, output_names, path_tag, safe_stem


def test_plain_stems_are_kept():
    assert output_names(["IMG_0001.HEIC", "a/b/cat.png"]) == {
        "IMG_0001.HEIC": "IMG_0001.jpg",
        "a/b/cat.png": "cat.jpg",
    }


def test_unsafe_characters_become_underscores():
    assert safe_stem("photos/Été à la plage (1).jpg") == "Ete_a_la_plage_1"
    assert safe_stem(".hidden.jpg") == "hidden"
    assert safe_stem("***.png") == "image"


def test_colliding_stems_all_get_a_path_tag():
    names = output_names(["a/x.png", "b/x.jpg", "X.JPG", "y.jpg"])
    assert names["y.jpg"] == "y.jpg"
    for source in ["a/x.png", "b/x.jpg", "X.JPG"]:
        assert names[source] == f"{safe_stem(source)}--{path_tag(source)}.jpg"
    assert len(set(names.values())) == 4


def test_a_natural_name_that_looks_tagged_cannot_collide():
    tagged = f"x--{path_tag('a/x.png')}.jpg"
    names = output_names(["a/x.png", "b/x.png", tagged])
    assert len({n.lower() for n in names.values()}) == 3


@given(
    st.lists(st.from_regex(r"[a-zA-Z0-9 _./-]{1,20}\.(jpg|png)", fullmatch=True), max_size=30, unique=True)
)
def test_names_are_unique_and_independent_of_order(sources):
    names = output_names(sources)
    assert len({n.lower() for n in names.values()}) == len(sources)
    shuffled = list(sources)
    random.Random(1).shuffle(shuffled)
    assert output_names(shuffled) == names
    assert all(n.endswith(".jpg") for n in names.values())


def test_prefixes_are_normalised():
    assert normalise_prefix("input") == "input/"
    assert normalise_prefix("/input/") == "input/"
    assert normalise_prefix("") == normalise_prefix("/") == ""
