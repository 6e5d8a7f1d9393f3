"""Loading photos: any file PIL reads, a bundled sample by name, bytes, a PIL image or an array, as
float32 (H, W, 3) in [0, 255]; and the checks every function taking images shares."""
from __future__ import annotations

import errno
import io
import numbers
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .models import DATA_DIR

IMAGES_DIR = DATA_DIR / "images"
MAX_PIXELS = 64_000_000  # a 8000×8000 photo; larger is almost surely a mistake (or a decompression bomb)
MAX_SIDE = 4096  # without a target size, larger photos are reduced on open (memory stays bounded)
SAMPLE_SUFFIXES = (".png", ".jpg")
EVALUATION_CROP = 0.875  # ImageNet's evaluation crop: the series shows every photo this way
WHOLE = ("cat_and_coffee",)  # collages: cropping would cut their objects, so they are shown whole


def _samples() -> dict:
    """Bundled sample name → its file in the package data (an importlib.resources Traversable)."""
    return {entry.name.rsplit(".", 1)[0]: entry for entry in IMAGES_DIR.iterdir()
            if entry.name.endswith(SAMPLE_SUFFIXES)}


def sample_images() -> list[str]:
    """Names of the bundled photos, for ``load_image(name)``: ['camera', 'cat', 'cat_and_coffee', …]."""
    return sorted(_samples())


def series_crop(name) -> float:
    """The crop the series uses for a bundled photo: ImageNet's evaluation crop (87.5%), a collage whole."""
    return 1.0 if name in WHOLE else EVALUATION_CROP


def sample_photo(name: str, size=(224, 224)) -> np.ndarray:
    """A bundled photo as every notebook shows it: centre crop 87.5% (ImageNet's evaluation crop; a collage
    whole, 1.0) and resized (bicubic) to ``size`` → float32 (H, W, 3) in [0, 255]."""
    if name not in _samples():
        raise ValueError(f"no bundled photo {name!r}: choose one of {', '.join(sample_images())}")
    return load_image(name, size=size, crop=series_crop(name))


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
    try:
        path.is_file()
    except OSError as error:  # e.g. a name longer than the file system allows
        if error.errno != errno.ENAMETOOLONG:
            raise
        raise ValueError(f"file name too long ({len(path.name)} characters): rename the file") from None
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
        grey = check_finite(np.asarray(image, dtype="float32"), "the image")
        top = 65535.0 if image.mode.startswith("I;16") or grey.max() > 255 else 255.0
        return np.repeat(np.clip(grey / top * 255.0, 0, 255)[..., None], 3, axis=-1)
    if image.mode == "P" or "transparency" in image.info:  # palette, or a PNG transparency key (tRNS)
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, image.convert("RGBA"))
    return np.asarray(image.convert("RGB"), dtype="float32")


def check_finite(array: np.ndarray, what: str = "the images") -> np.ndarray:
    """``array`` itself, or a ValueError when it holds NaN or infinite values (they would give NaN maps)."""
    bad = array.size - np.count_nonzero(np.isfinite(array))
    if bad:
        raise ValueError(f"NaN or infinite values in {what} ({bad} of {array.size} values): fix or clip them "
                         "first, e.g. with np.nan_to_num")
    return array


def as_batch(images) -> tuple[np.ndarray, bool]:
    """One image (H, W, C) or a batch (N, H, W, C) → float32 (N, H, W, C), and whether one was given.

    Empty batches and NaN or infinite values raise a ValueError.
    """
    batch = np.asarray(images, dtype="float32")
    single = batch.ndim == 3
    batch = batch[None] if single else batch
    if batch.ndim != 4:
        raise ValueError(f"images must be one image (H, W, C) or a batch (N, H, W, C), got shape {batch.shape}")
    if not batch.size:
        raise ValueError(f"the batch of images is empty (shape {batch.shape}): give at least one image")
    return check_finite(batch), single


def image_size(size) -> tuple[int, int]:
    """``size`` as (height, width): an int means a square; each side a positive int, else a ValueError."""
    if isinstance(size, numbers.Integral) and not isinstance(size, bool):
        size = (size, size)
    if not (isinstance(size, (tuple, list)) and len(size) == 2
            and all(isinstance(side, numbers.Integral) and not isinstance(side, bool) and side > 0
                    for side in size)):
        raise ValueError(f"size must be an int or (height, width) of positive ints, got {size!r}")
    return int(size[0]), int(size[1])


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
    h, w = image_size(size)
    check_finite(np.asarray(image), "the image")
    H, W = image.shape[:2]
    scale = min(H / h, W / w) * crop
    ch, cw = round(h * scale), round(w * scale)
    top, left = (H - ch) // 2, (W - cw) // 2
    pil = Image.fromarray(np.clip(image, 0, 255).astype("uint8"))
    return np.asarray(pil.resize((w, h), Image.BICUBIC, box=(left, top, left + cw, top + ch)), dtype="float32")


def _open(source) -> Image.Image:
    """A PIL image from a path, a sample's name, the bytes of a file or a PIL image (not decoded yet)."""
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, (bytes, bytearray, memoryview)):
        name, file = f"these {len(source)} bytes", io.BytesIO(bytes(source))
    else:
        path = _resolve(source)
        name, file = str(path), path
    try:
        return Image.open(file)
    except UnidentifiedImageError as error:
        raise ValueError(f"{name} is not an image PIL can read ({error}); use a PNG or JPEG file") from None
    except OSError as error:  # a header cut short
        raise ValueError(f"{name} could not be decoded, the file may be truncated or corrupt ({error})") from None


def _reduction(image: Image.Image, size) -> int:
    """The integer factor to shrink ``image`` by: keep at least twice the target ``size``, or at most
    MAX_SIDE per side without one."""
    if size is None:
        return -(-max(image.size) // MAX_SIDE)
    return max(1, min(image.width // (2 * size[1]), image.height // (2 * size[0])))


def _decoded(image: Image.Image, size) -> Image.Image:
    """Decode no more pixels than needed: JPEGs at 1/2…1/8 scale (PIL ``draft``), then EXIF rotation,
    then an integer ``reduce``. Without a target ``size`` a reduction is announced by a warning."""
    original = image.size
    factor = _reduction(image, size)
    if factor > 1 and image.format == "JPEG":
        image.draft("RGB", (-(-image.width // factor), -(-image.height // factor)))
    reduced = image.size != original
    image = ImageOps.exif_transpose(image)
    factor = _reduction(image, size)
    if factor > 1:
        if image.mode not in ("L", "LA", "RGB", "RGBA", "I", "F") or "transparency" in image.info:
            # reduce() works on these modes only, and would drop a transparency key
            image = image.convert("RGBA" if image.mode in ("P", "PA") or "transparency" in image.info else "RGB")
        image, reduced = image.reduce(factor), True
    if size is None and reduced:
        warnings.warn(f"the image is {original[0]}×{original[1]} pixels: reduced to {image.width}×{image.height} "
                      f"on open (at most {MAX_SIDE} per side); pass size=(h, w) for a given size",
                      UserWarning, stacklevel=3)
    return image


def load_image(source, size=None, crop: float = 1.0) -> np.ndarray:
    """A photo as float32 (H, W, 3) in [0, 255].

    source: a path, a bundled sample's name (see :func:`sample_images`), e.g. ``"coffee"``, the bytes of
    an image file, a PIL image, or an array (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) of pixels in
    [0, 255]. A local file named like a sample is read instead only if it is an image, with a warning
    naming it; a folder or non-image file of that name is ignored.
    size: optional int (a square) or (h, w): centre-crop to that aspect (``crop`` keeps a fraction of
    it, 0.875 is ImageNet's evaluation crop) and resize. Huge photos are decoded reduced (JPEG draft,
    PIL reduce): without ``size`` to at most MAX_SIDE pixels per side, with a warning. Missing, corrupt,
    non-finite or over-64-megapixel inputs raise a clear error.
    """
    size = None if size is None else image_size(size)
    if isinstance(source, np.ndarray):
        array = _from_array(source)
        return array if size is None else fit(array, size, crop)
    image = _open(source)
    name = getattr(image, "filename", "") or "the image"
    try:
        if image.width * image.height > MAX_PIXELS:
            raise ValueError(f"{Path(name).name} is {image.width}×{image.height} pixels, over the "
                             f"{MAX_PIXELS // 1_000_000} megapixel limit: downscale it first")
        array = to_rgb(_decoded(image, size))
    except Image.DecompressionBombError as error:
        raise ValueError(f"{name} is not an image PIL can read ({error}); use a PNG or JPEG file") from error
    except OSError as error:  # truncated or corrupt data surfaces while decoding
        raise ValueError(f"{name} could not be decoded, the file may be truncated or corrupt ({error})") from error
    finally:
        if not isinstance(source, Image.Image):
            image.close()
    return array if size is None else fit(array, size, crop)


def _from_array(array: np.ndarray) -> np.ndarray:
    """Pixels (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) → float32 (H, W, 3); alpha composited on white."""
    array = check_finite(np.asarray(array, dtype="float32"), "the image")
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 3, 4):
        raise ValueError(f"an image array must have shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), "
                         f"got shape {array.shape}")
    if array.shape[-1] == 4:
        alpha = np.clip(array[..., 3:], 0, 255) / 255
        array = array[..., :3] * alpha + 255 * (1 - alpha)
    return np.repeat(array, 3, axis=-1) if array.shape[-1] == 1 else array
