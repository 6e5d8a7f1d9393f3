"""load_image: every image kind, every bad file, the bundled samples."""
import numpy as np
import pytest
from PIL import Image

import cnnviz
from cnnviz.images import MAX_PIXELS, fit


def check_rgb(array, shape):
    assert array.dtype == np.float32 and array.shape == shape
    assert 0 <= array.min() and array.max() <= 255


def test_sample_images_are_bundled():
    assert set(cnnviz.sample_images()) >= {"cat", "coffee", "rocket", "camera", "grace_hopper", "motorcycle",
                                            "cat_and_coffee"}
    for name in cnnviz.sample_images():
        image = cnnviz.load_image(name)
        check_rgb(image, image.shape)
        assert image.std() > 10  # a real photo, not a blank


def test_collage_halves_are_the_cat_and_the_coffee():
    collage = cnnviz.load_image("cat_and_coffee")
    left, right = np.split(collage, 2, axis=1)
    for half, photo in ((left, "cat"), (right, "coffee")):
        expected = fit(cnnviz.load_image(photo), half.shape[:2])
        assert np.abs(half - expected).mean() < 3  # same picture, up to resampling
    assert np.abs(left - fit(cnnviz.load_image("coffee"), left.shape[:2])).mean() > 30


def test_greyscale_becomes_three_equal_channels():
    camera = cnnviz.load_image("camera")
    check_rgb(camera, (512, 512, 3))
    assert np.array_equal(camera[..., 0], camera[..., 2])


def test_rgba_is_composited_on_white(tmp_path):
    rgba = np.zeros((4, 6, 4), "uint8")
    rgba[..., 0] = 200
    rgba[:, :3, 3] = 255  # left opaque red, right fully transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    image = cnnviz.load_image(tmp_path / "a.png")
    check_rgb(image, (4, 6, 3))
    assert image[0, 0].tolist() == [200, 0, 0] and image[0, 5].tolist() == [255, 255, 255]


def test_palette(tmp_path):
    Image.new("RGB", (5, 3), (10, 20, 30)).convert("P", palette=Image.Palette.ADAPTIVE).save(tmp_path / "p.png")
    image = cnnviz.load_image(tmp_path / "p.png")
    check_rgb(image, (3, 5, 3))
    assert np.allclose(image[1, 1], [10, 20, 30], atol=3)


def test_16_bit_greyscale_is_scaled(tmp_path):
    ramp = np.linspace(0, 65535, 8 * 8).reshape(8, 8).astype("uint16")
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    image = cnnviz.load_image(tmp_path / "g16.png")
    check_rgb(image, (8, 8, 3))
    assert image[0, 0, 0] == 0 and image[-1, -1, 0] == 255


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((10, 20, 3), "uint8")  # landscape, red on the left
    pixels[:, :10, 0] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    Image.fromarray(pixels).save(tmp_path / "r.jpg", exif=exif, quality=95)
    image = cnnviz.load_image(tmp_path / "r.jpg")
    assert image.shape == (20, 10, 3)  # shown as portrait
    assert image[2, 5, 0] > 200 and image[-3, 5, 0] < 60  # the red half is now on top


def test_size_crops_without_distortion():
    cat = cnnviz.load_image("cat")
    check_rgb(cnnviz.load_image("cat", size=(224, 224)), (224, 224, 3))
    check_rgb(cnnviz.load_image("cat", size=(100, 300), crop=0.875), (100, 300, 3))
    square = fit(np.dstack([np.tile(np.arange(40, dtype="float32"), (20, 1))] * 3), (10, 10))
    assert square[:, 0, 0].mean() > 9 and square[:, -1, 0].mean() < 31  # the centre 20 columns were kept
    with pytest.raises(ValueError, match="crop"):
        fit(cat, (10, 10), crop=0)


def test_missing_file_lists_samples():
    with pytest.raises(FileNotFoundError, match="coffee"):
        cnnviz.load_image("no_such_photo.png")


@pytest.mark.parametrize("content", [b"", b"this is not an image", b"\x89PNG\r\n\x1a\n" + b"\x00" * 30])
def test_unreadable_file(tmp_path, content):
    (tmp_path / "bad.png").write_bytes(content)
    with pytest.raises(ValueError, match="bad.png"):
        cnnviz.load_image(tmp_path / "bad.png")


def test_truncated_jpeg(tmp_path):
    Image.new("RGB", (64, 64), (1, 2, 3)).save(tmp_path / "whole.jpg")
    data = (tmp_path / "whole.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        cnnviz.load_image(tmp_path / "cut.jpg")


def test_huge_image_is_refused_before_decoding(tmp_path):
    side = int(MAX_PIXELS ** 0.5) + 1
    Image.new("1", (side, side)).save(tmp_path / "huge.png")  # 1-bit: small file, huge picture
    with pytest.raises(ValueError, match="megapixel"):
        cnnviz.load_image(tmp_path / "huge.png")
