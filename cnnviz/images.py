"""Loading photos: any file PIL reads, or a bundled sample by name, as float32 (H, W, 3) in [0, 255]."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .models import DATA_DIR

IMAGES_DIR = DATA_DIR / "images"
MAX_PIXELS = 64_000_000  # a 8000×8000 photo; larger is almost surely a mistake (or a decompression bomb)
SAMPLE_SUFFIXES = (".png", ".jpg")


def _samples() -> dict:
    """Bundled sample name → its file in the package data (an importlib.resources Traversable)."""
    return {entry.name.rsplit(".", 1)[0]: entry for entry in IMAGES_DIR.iterdir()
            if entry.name.endswith(SAMPLE_SUFFIXES)}


def sample_images() -> list[str]:
    """Names of the bundled photos, for ``load_image(name)``: ['camera', 'cat', 'cat_and_coffee', …]."""
    return sorted(_samples())


def _is_image_file(path: Path) -> bool:
    """Whether ``path`` is a file PIL recognises as an image (reads its header only)."""
    try:
        with Image.open(path):
            return True
    except (OSError, ValueError):  # UnidentifiedImageError is an OSError; directories, unreadable files too
        return False


def _resolve(source):
    """The file ``load_image(source)`` reads: a path, or a bundled sample (a Traversable) by name.

    Rule when ``source`` is both a sample's name and an existing path (e.g. a folder ``cat`` in the
    working directory): the path wins only if it is a file PIL can identify as an image, and then a
    warning names the file used; a folder or a non-image file of that name never hides the sample.
    """
    path = Path(source)
    samples = _samples() if isinstance(source, str) else {}
    if source in samples:
        if not (path.is_file() and _is_image_file(path)):
            return samples[source]
        warnings.warn(f"load_image({source!r}) read the image file {path.resolve()}, not the bundled sample "
                      f"{source!r}: rename or move that file to get the sample", UserWarning, stacklevel=3)
    if not path.is_file():
        raise FileNotFoundError(f"no image file {str(source)!r}; give a path, or one of the bundled samples: "
                                f"{', '.join(sample_images())}")
    return path


def to_rgb(image: Image.Image) -> np.ndarray:
    """Any PIL image → float32 (H, W, 3) in [0, 255]: EXIF rotation applied, grey and 16-bit scaled,
    palette expanded, transparency composited onto white."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # 16-bit / 32-bit greyscale
        grey = np.asarray(image, dtype="float32")
        top = 65535.0 if image.mode.startswith("I;16") or grey.max() > 255 else 255.0
        return np.repeat(np.clip(grey / top * 255.0, 0, 255)[..., None], 3, axis=-1)
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, image.convert("RGBA"))
    return np.asarray(image.convert("RGB"), dtype="float32")


def as_batch(images) -> tuple[np.ndarray, bool]:
    """One image (H, W, C) or a batch (N, H, W, C) → float32 (N, H, W, C), and whether one was given."""
    batch = np.asarray(images, dtype="float32")
    single = batch.ndim == 3
    batch = batch[None] if single else batch
    if batch.ndim != 4:
        raise ValueError(f"images must be one image (H, W, C) or a batch (N, H, W, C), got shape {batch.shape}")
    return batch, single


def tile(images: np.ndarray, columns: int, margin: int = 0, fill=0) -> np.ndarray:
    """Lay images (N, H, W, …) row by row, ``columns`` per row, into one (rows·(H+m)−m, columns·(W+m)−m, …)
    array; margins and empty slots get ``fill``. Keeps the dtype of ``images``."""
    n, h, w = images.shape[:3]
    rows = -(-n // columns)
    grid = np.full((rows * (h + margin) - margin, columns * (w + margin) - margin, *images.shape[3:]), fill,
                   images.dtype)
    for i, image in enumerate(images):
        top, left = (i // columns) * (h + margin), (i % columns) * (w + margin)
        grid[top:top + h, left:left + w] = image
    return grid


def fit(image: np.ndarray, size, crop: float = 1.0) -> np.ndarray:
    """Centre-crop ``image`` (H, W, 3) to the aspect of ``size`` = (h, w), keeping ``crop`` of the
    largest such crop, then resize to (h, w, 3) with bicubic resampling (no distortion)."""
    if not 0 < crop <= 1:
        raise ValueError(f"crop must be in (0, 1], got {crop}")
    h, w = size
    H, W = image.shape[:2]
    scale = min(H / h, W / w) * crop
    ch, cw = round(h * scale), round(w * scale)
    top, left = (H - ch) // 2, (W - cw) // 2
    pil = Image.fromarray(np.clip(image, 0, 255).astype("uint8"))
    return np.asarray(pil.resize((w, h), Image.BICUBIC, box=(left, top, left + cw, top + ch)), dtype="float32")


def load_image(source, size=None, crop: float = 1.0) -> np.ndarray:
    """A photo as float32 (H, W, 3) in [0, 255].

    source: a path, or a bundled sample's name (see :func:`sample_images`), e.g. ``"coffee"``. A local
    file named like a sample is read instead only if it is an image, with a warning naming it; a folder or
    non-image file of that name is ignored.
    size: optional (h, w): centre-crop to that aspect (``crop`` keeps a fraction of it, 0.875 is
    ImageNet's evaluation crop) and resize. Missing, corrupt or huge files raise a clear error.
    """
    path = _resolve(source)
    try:
        with Image.open(path) as image:
            if image.width * image.height > MAX_PIXELS:
                raise ValueError(f"{path.name} is {image.width}×{image.height} pixels, over the "
                                 f"{MAX_PIXELS // 1_000_000} megapixel limit: downscale it first")
            array = to_rgb(image)
    except (UnidentifiedImageError, Image.DecompressionBombError) as error:
        raise ValueError(f"{path} is not an image PIL can read ({error}); use a PNG or JPEG file") from error
    except OSError as error:  # truncated or corrupt data surfaces while decoding
        raise ValueError(f"{path} could not be decoded, the file may be truncated or corrupt ({error})") from error
    return array if size is None else fit(array, size, crop)
