"""Bundled samples are package data, and a local file or folder named like one never hides it silently."""
import warnings
from importlib.resources import files

import numpy as np
import pytest
from PIL import Image

import cnnviz
from cnnviz.images import IMAGES_DIR


def sample_pixels(name):
    """The bundled photo read straight from the package data, independently of load_image's name lookup."""
    with Image.open(files("cnnviz") / "data" / "images" / f"{name}.png") as image:
        return np.asarray(image.convert("RGB"), dtype="float32")


def test_samples_are_read_from_the_package():
    assert IMAGES_DIR == files("cnnviz") / "data" / "images"
    assert cnnviz.sample_images() == ["camera", "cat", "cat_and_coffee", "coffee", "grace_hopper", "motorcycle",
                                      "rocket"]


def test_a_folder_named_like_a_sample_does_not_hide_it(tmp_path, monkeypatch):
    (tmp_path / "cat").mkdir()
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing ambiguous here: no warning
        np.testing.assert_array_equal(cnnviz.load_image("cat"), sample_pixels("cat"))


def test_a_non_image_file_named_like_a_sample_does_not_hide_it(tmp_path, monkeypatch):
    (tmp_path / "coffee").write_text("my notes about coffee\n")
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(cnnviz.load_image("coffee"), sample_pixels("coffee"))


def test_an_image_file_named_like_a_sample_wins_and_says_so(tmp_path, monkeypatch):
    Image.new("RGB", (5, 4), (10, 200, 30)).save(tmp_path / "cat", format="PNG")  # no suffix: named "cat"
    monkeypatch.chdir(tmp_path)
    with pytest.warns(UserWarning, match=r"read the image file .*cat, not the bundled sample 'cat'"):
        image = cnnviz.load_image("cat")
    assert image.shape == (4, 5, 3)
    np.testing.assert_array_equal(image[0, 0], [10, 200, 30])


def test_an_image_file_with_a_suffix_is_not_a_sample_name(tmp_path, monkeypatch):
    Image.new("RGB", (3, 3), (1, 2, 3)).save(tmp_path / "cat.png")
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(cnnviz.load_image("cat.png")[1, 1], [1, 2, 3])


def test_an_unknown_name_lists_the_samples(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"no image file 'dog'.*cat, cat_and_coffee, coffee"):
        cnnviz.load_image("dog")
