"""Can we trust a heatmap? Sanity checks and faithfulness scores for any map (notebook 06).

- :func:`deletion_curve` / :func:`insertion_curve` (Petsiuk et al. 2018, RISE): rank the pixels by the
  map; at step s of S replace the top s/S of them by a baseline (deletion), or start from the baseline
  and reveal them (insertion), and follow the class probability p_s. A faithful map makes deletion
  fall fast (small area) and insertion rise fast (large area): ``curve_auc`` = ∫ p ds (trapezoid).
- :func:`confidence_change` (Chattopadhay et al. 2018, Grad-CAM++): show the model only the
  explanation, image · map; with Y the class probability on the image and O on the explanation,
  average drop = mean(max(0, Y − O) / Y) · 100, increase in confidence = share of images with O > Y · 100.
- :func:`pointing_game` (Zhang et al. 2018) and :func:`mass_in_box` on :func:`collage` s of two photos,
  where the truth is known by construction; :func:`pointing_table` runs them on the bundled photos.
- :func:`cascading_randomization` (Adebayo et al. 2018, "Sanity checks for saliency maps"):
  re-initialise the weights block by block from the top, recompute the map, and measure its Spearman
  rank correlation with the original map. A map that explains the MODEL must change (ρ → 0).

Models are a :class:`~cnnviz.ModelBundle` (images in pixels [0, 255]) or a bare Keras model (images as
it expects them). Probabilities are the softmax of the logits (the model's final softmax is skipped and
re-applied, so models ending in logits work too). The user's model is never modified.
"""
from __future__ import annotations

import dataclasses
from functools import partial
from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf
from scipy import ndimage, stats

from .caching import per_model_cache
from .gradcam import gradcam, normalise, upsample
from .images import as_batch, fit, load_image
from .layers import _walk, tap_model
from .models import ModelBundle, class_names, unwrap

__all__ = ["PAIRS", "CascadeStep", "ConfidenceChange", "PointingResult", "cascading_randomization",
           "collage", "confidence_change", "curve_auc", "deletion_curve", "insertion_curve", "mass_in_box",
           "pointing_game", "pointing_table"]

BLUR_RADIUS = 10 / 224  # Gaussian σ of the "blur" baseline, as a share of the image height (10 px at 224)
BATCH_SIZE = 64  # images per forward pass in the curves
# Collages of two bundled photos whose top classes Lite0 recognises confidently, each photo once per side
PAIRS = (("cat", "coffee"), ("coffee", "cat"), ("camera", "coffee"), ("coffee", "camera"), ("cat", "camera"))


# ---------------------------------------------------------------- probabilities and maps
def _softmax_of_logits(tap, images):
    return tf.nn.softmax(tap(images, training=False)[1])


def _probability_function(keras_model):
    """Compiled: preprocessed images (N, H, W, C) → softmax of the logits (N, classes); cached per model.
    A partial, not a lambda: TF counts traces per code object, and would warn of retracing across models."""
    def create():
        tap = tap_model(keras_model, [], score="logits")
        signature = [tf.TensorSpec((None, None, None, tap.inputs[0].shape[-1]), tf.float32)]  # one trace
        return tf.function(partial(_softmax_of_logits, tap), input_signature=signature)
    return per_model_cache(keras_model, "probabilities", size=1).lookup("softmax", create)


def _probabilities(model, images, batch_size: int = BATCH_SIZE) -> np.ndarray:
    """Class probabilities (N, classes) of images (N, H, W, C), in chunks of ``batch_size``."""
    keras_model, preprocess = unwrap(model)
    function = _probability_function(keras_model)
    chunks = [function(tf.constant(preprocess(images[i:i + batch_size]), tf.float32)).numpy()
              for i in range(0, len(images), batch_size)]
    return np.concatenate(chunks)


def _classes(class_index, probabilities: np.ndarray) -> np.ndarray:
    """(N,) class indices: None → the top class of each row of ``probabilities``; an int or N ints."""
    n, num_classes = probabilities.shape
    if class_index is None:
        return probabilities.argmax(axis=1)
    classes = np.broadcast_to(np.asarray(class_index), (n,)) if np.ndim(class_index) == 0 else np.asarray(class_index)
    if not np.issubdtype(classes.dtype, np.integer) or classes.shape != (n,):
        raise ValueError(f"class_index: give None, an int or {n} ints (one per image), got {class_index!r}")
    if ((classes < 0) | (classes >= num_classes)).any():
        raise ValueError(f"class_index must be in 0 … {num_classes - 1}, got {class_index!r}")
    return classes


def _resized(maps, size, n: int, relu: bool = False) -> np.ndarray:
    """Maps (n, h, w) → (n, H, W) in [0, 1], bilinear. relu: ReLU then ÷ max (mass); else min-max
    (ranking: monotone, so any map's order is kept). A constant map becomes all zeros."""
    maps = np.asarray(maps, dtype="float32")
    if maps.ndim == 2:
        maps = maps[None]
    if maps.ndim != 3 or len(maps) != n:
        raise ValueError(f"maps must be {n} heatmaps (N, h, w), one per image, got shape {maps.shape}")
    if not np.isfinite(maps).all():
        raise ValueError("maps contain NaN or infinity")
    if not relu:
        maps = maps - maps.min(axis=(1, 2), keepdims=True)
    return np.stack([upsample(m, size) for m in normalise(maps)])


# ---------------------------------------------------------------- deletion / insertion
def _baseline(model, batch: np.ndarray, baseline) -> np.ndarray:
    """The baseline images (N, H, W, C) in the images' own space (pixels for a bundle)."""
    bundle = isinstance(model, ModelBundle)
    if isinstance(baseline, str):
        if baseline == "blur":
            sigma = BLUR_RADIUS * batch.shape[1]
            return ndimage.gaussian_filter(batch, sigma=(0, sigma, sigma, 0), mode="nearest")
        if baseline == "grey":  # mid-grey pixels; a bare model's inputs are taken as centred on 0
            return np.full_like(batch, 127.5 if bundle else 0.0)
        if baseline == "black":  # black pixels; for a bare model the smallest input value seen
            return np.full_like(batch, 0.0 if bundle else batch.min())
        raise ValueError(f"unknown baseline {baseline!r}: use 'blur', 'grey', 'black' or an array like the images")
    array = np.asarray(baseline, dtype="float32")
    try:
        return np.broadcast_to(array, batch.shape).copy()
    except ValueError:
        raise ValueError(f"baseline array of shape {array.shape} does not match the images {batch.shape}") from None


def _curve(model, images, maps, class_index, steps: int, baseline, insert: bool):
    """Deletion (insert=False) or insertion curves; see :func:`deletion_curve`."""
    if not isinstance(steps, (int, np.integer)) or steps <= 0:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    batch, _ = as_batch(images)
    n, height, width = batch.shape[:3]
    ranked = _resized(maps, (height, width), n)
    backgrounds = _baseline(model, batch, baseline)
    fractions = np.linspace(0, 1, steps + 1)
    counts = np.round(fractions * height * width).astype(int)  # pixels removed / revealed at each step
    scores = []
    for image, heatmap, background in zip(batch, ranked, backgrounds):
        order = np.argsort(-heatmap.ravel(), kind="stable")  # best first; ties in reading order
        rank = np.empty(order.size, int)
        rank[order] = np.arange(order.size)
        chosen = (rank.reshape(height, width)[None] < counts[:, None, None])[..., None]  # (S+1, H, W, 1)
        stack = np.where(chosen, image, background) if insert else np.where(chosen, background, image)
        scores.append(_probabilities(model, stack))  # all steps of one curve: (S+1, classes)
    scores = np.stack(scores)  # (N, S+1, classes)
    original = scores[:, -1 if insert else 0]  # insertion ends, deletion starts, on the image itself
    classes = _classes(class_index, original)
    return fractions, np.take_along_axis(scores, classes[:, None, None], axis=2)[..., 0]


def deletion_curve(model, images, maps, class_index=None, steps: int = 50, baseline="blur"):
    """Class probability as the map's most important pixels are deleted (replaced by ``baseline``).

    images (N, H, W, 3); maps (N, h, w) at any resolution (min-max normalised, bilinearly upsampled,
    pixels ranked best first, ties in reading order). class_index None → the top class on the image.
    baseline: "blur" (Gaussian, σ = 10 px at 224), "grey", "black", or an array like the images (a
    bare model's images are its inputs: there "grey" is 0 and "black" the images' smallest value).
    Returns fractions (steps + 1,) from 0 to 1 and probabilities (N, steps + 1); lower area is better.
    Each curve is one batched forward pass over its steps + 1 images.
    """
    return _curve(model, images, maps, class_index, steps, baseline, insert=False)


def insertion_curve(model, images, maps, class_index=None, steps: int = 50, baseline="blur"):
    """Class probability as the map's most important pixels are revealed on ``baseline``; higher area
    is better. Same arguments and return as :func:`deletion_curve`."""
    return _curve(model, images, maps, class_index, steps, baseline, insert=True)


def curve_auc(fractions, scores) -> np.ndarray:
    """Area under each curve: fractions (S,), scores (N, S) or (S,) → (N,) (or a float), trapezoid rule."""
    return np.trapezoid(np.asarray(scores, dtype="float64"), np.asarray(fractions, dtype="float64"), axis=-1)


class ConfidenceChange(NamedTuple):
    """average_drop, increase: in %; original, explained: class probability (N,) on image and explanation."""

    average_drop: float
    increase: float
    original: np.ndarray
    explained: np.ndarray


def confidence_change(model, images, maps, class_index=None) -> ConfidenceChange:
    """Average drop and increase in confidence (Chattopadhay et al. 2018) of maps (N, h, w).

    The explanation image is image · map, the map ReLU'd, ÷ max and upsampled: for a bundle in pixel
    space (a map value 0 gives a black pixel), for a bare model in its input space (0 input).
    class_index None → the top class on the image.
    """
    batch, _ = as_batch(images)
    masks = _resized(maps, batch.shape[1:3], len(batch), relu=True)
    probabilities = _probabilities(model, np.concatenate([batch, batch * masks[..., None]]))
    classes = _classes(class_index, probabilities[:len(batch)])
    picked = probabilities[np.arange(2 * len(batch)), np.tile(classes, 2)]
    original, explained = picked[:len(batch)], picked[len(batch):]
    drop = np.maximum(0, original - explained) / np.maximum(original, np.finfo("float32").tiny)
    return ConfidenceChange(float(drop.mean() * 100), float((explained > original).mean() * 100), original,
                            explained)


# ---------------------------------------------------------------- pointing game on collages
def _boxes(boxes, n: int, size) -> np.ndarray:
    """Boxes (n, 4) as integer (top, left, bottom, right) pixels, bottom/right exclusive, checked inside ``size``."""
    boxes = np.asarray(boxes)
    boxes = boxes[None] if boxes.ndim == 1 else boxes
    if boxes.shape != (n, 4):
        raise ValueError(f"boxes must be {n} boxes (top, left, bottom, right), one per map; got shape {boxes.shape}")
    height, width = size
    top, left, bottom, right = boxes.T
    if ((top < 0) | (left < 0) | (bottom > height) | (right > width) | (top >= bottom) | (left >= right)).any():
        raise ValueError(f"every box (top, left, bottom, right) must lie inside the {height}×{width} image with "
                         f"top < bottom and left < right; got {boxes.tolist()}")
    return boxes.astype(int)


def pointing_game(maps, boxes, size, tolerance: int = 15) -> np.ndarray:
    """Hit (N,) bool when the maximum of each map (N, h, w), upsampled to ``size`` (H, W), lies in its box
    (top, left, bottom, right) grown by ``tolerance`` pixels on every side (Zhang et al. 2018: 15 px)."""
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0 pixels, got {tolerance}")
    boxes = _boxes(boxes, len(maps) if np.ndim(maps) == 3 else 1, size)
    resized = _resized(maps, size, len(boxes))
    rows, columns = np.unravel_index(resized.reshape(len(boxes), -1).argmax(axis=1), tuple(size))
    top, left, bottom, right = boxes.T
    return ((rows >= top - tolerance) & (rows < bottom + tolerance)
            & (columns >= left - tolerance) & (columns < right + tolerance))


def mass_in_box(maps, boxes, size) -> np.ndarray:
    """Share (N,) of each map's positive mass, upsampled to ``size``, inside its box (0 for an empty map)."""
    boxes = _boxes(boxes, len(maps) if np.ndim(maps) == 3 else 1, size)
    resized = _resized(maps, size, len(boxes), relu=True)
    inside = np.array([m[t:b, l:r].sum() for m, (t, l, b, r) in zip(resized, boxes)])
    total = resized.sum(axis=(1, 2))
    return np.divide(inside, total, out=np.zeros_like(total), where=total > 0)


def collage(left, right, size=(224, 224)):
    """Two photos side by side: each (a sample's name or an (H, W, 3) array) centre-cropped to half the
    width and resized. Returns the image (H, W, 3) in [0, 255] and boxes (2, 4): left half, right half."""
    height, width = size
    half = width // 2
    photos = [load_image(p) if isinstance(p, str) else np.asarray(p, dtype="float32") for p in (left, right)]
    image = np.concatenate([fit(photos[0], (height, half)), fit(photos[1], (height, width - half))], axis=1)
    return image, np.array([[0, 0, height, half], [0, half, height, width]])


class PointingResult(NamedTuple):
    """One row of :func:`pointing_table`: the collage "left|right", the photo explained, its class, the
    pointing game's hit and the map's mass in that photo's half."""

    pair: str
    target: str
    class_name: str
    hit: bool
    mass: float


def pointing_table(model, method=gradcam, pairs=PAIRS, layer=None, tolerance: int = 15) -> list[PointingResult]:
    """Pointing game and mass-in-box of ``method``'s maps on collages of bundled photos.

    model: a ModelBundle (photos are pixels). For each pair, each photo is a target in turn, its class
    being the model's top class for that photo alone (centre crop 87.5%). ``method(model, images,
    class_index=..., layer=...)`` gives the maps (layer passed only when given). One call for all maps.
    Class names are ImageNet's for a 1000-class model, else the index as text; mass rounded to 4 digits.
    """
    if not isinstance(model, ModelBundle):
        raise TypeError("pointing_table needs a cnnviz.ModelBundle (it feeds photos in pixels); "
                        "wrap your model in one, or call pointing_game on your own maps")
    names = sorted({name for pair in pairs for name in pair})
    photos = np.stack([load_image(name, size=model.input_size, crop=0.875) for name in names])
    probabilities = _probabilities(model, photos)
    top = dict(zip(names, probabilities.argmax(axis=1)))
    imagenet = probabilities.shape[1] == len(class_names())
    images, boxes, rows = [], [], []
    for left, right in pairs:
        image, halves = collage(left, right, model.input_size)
        for target, box in zip((left, right), halves):
            images.append(image)
            boxes.append(box)
            rows.append((f"{left}|{right}", target, int(top[target])))
    classes = np.array([row[2] for row in rows])
    maps = method(model, np.stack(images), class_index=classes, **({} if layer is None else {"layer": layer}))
    hits = pointing_game(maps, boxes, model.input_size, tolerance)
    masses = mass_in_box(maps, boxes, model.input_size)
    return [PointingResult(pair, target, class_names()[c] if imagenet else str(c), bool(h), round(float(m), 4))
            for (pair, target, c), h, m in zip(rows, hits, masses)]


# ---------------------------------------------------------------- cascading randomisation
class CascadeStep(NamedTuple):
    """block: the last block re-initialised ("original" first); correlation: Spearman ρ per image (N,)."""

    block: str
    correlation: np.ndarray


def _block_of(layer_name: str) -> str:
    """A layer's block: its first "_"-separated part and the following parts that hold a digit:
    block2b_expand_conv → block2b, top_bn → top, conv5_block3_1_bn → conv5_block3_1, block_16_expand →
    block_16."""
    parts = layer_name.split("_")
    block = [parts[0]]
    for part in parts[1:]:
        if not any(ch.isdigit() for ch in part):
            break
        block.append(part)
    return "_".join(block)


def _blocks_top_down(keras_model) -> list[tuple[str, list]]:
    """[(block name, [its layers with weights])], from the output down (nested models' layers included)."""
    blocks: list[tuple[str, list]] = []
    for layer, _ in _walk(keras_model):
        if layer.weights and not isinstance(layer, keras.Model):
            name = _block_of(layer.name)
            if blocks and blocks[-1][0] == name:
                blocks[-1][1].append(layer)
            else:
                blocks.append((name, [layer]))
    return blocks[::-1]


def _initializer(layer, variable, seed: int):
    """The layer's own initialiser of ``variable`` (kernel, depthwise, bias, gamma, beta, moving statistics),
    re-seeded; Glorot uniform (≥ 2-D) or zeros for a variable without one."""
    name = variable.name.split("/")[-1]
    candidates = [f"{name}_initializer", "depthwise_initializer" if name == "kernel" else "",
                  name.replace("_kernel", "_initializer")]
    initializer = next((getattr(layer, c) for c in candidates if c and hasattr(layer, c)), None)
    if initializer is None:
        initializer = keras.initializers.GlorotUniform() if len(variable.shape) >= 2 else keras.initializers.Zeros()
    config = initializer.get_config()
    return type(initializer).from_config({**config, "seed": seed}) if "seed" in config else initializer


def _reinitialise(layer, rng: np.random.Generator) -> None:
    """Every weight of ``layer`` drawn afresh from its initialiser, seeded from ``rng`` (in place)."""
    for variable in layer.weights:
        variable.assign(_initializer(layer, variable, int(rng.integers(2**31)))(variable.shape, variable.dtype))


def _spearman(original: np.ndarray, current: np.ndarray) -> np.ndarray:
    """Spearman ρ per image of flattened maps (N, h, w); 0 when either map is constant (never NaN)."""
    rho = []
    for a, b in zip(original.reshape(len(original), -1), current.reshape(len(current), -1)):
        rho.append(0.0 if np.ptp(a) == 0 or np.ptp(b) == 0 else stats.spearmanr(a, b).statistic)
    return np.array(rho)


def cascading_randomization(model, images, method=gradcam, class_index=None, layer=None,
                            seed: int = 0) -> list[CascadeStep]:
    """Adebayo et al. 2018's model-parameter randomisation test, cascading from the top.

    One clone of the model (weights copied; the user's model is untouched) is re-initialised IN
    PLACE block by block, from the output down (Lite0: logits, top, block7a, block6d … block1a, stem:
    19 blocks; a block = a layer-name prefix, see ``_block_of``), each weight with its layer's own
    initialiser, seeded (BatchNorm: gamma 1, beta 0, moving mean 0, moving variance 1). After each
    block ``method(model, images, class_index=…, layer=…)`` is recomputed for the class the ORIGINAL
    model predicted (or ``class_index``) and compared with the original map by Spearman's ρ of the
    flattened maps (a constant map gives 0). Returns [CascadeStep("original", ones), …], one per block.
    The data-randomisation variant of the paper is not implemented, nor SSIM (it would make scikit-image
    a runtime dependency; rank correlation is the paper's main measure).
    """
    batch, _ = as_batch(images)
    keras_model, _ = unwrap(model)
    classes = _classes(class_index, _probabilities(model, batch))
    options = {"class_index": classes, **({} if layer is None else {"layer": layer})}
    original = np.asarray(method(model, batch, **options))
    clone = keras.models.clone_model(keras_model)
    clone.set_weights(keras_model.get_weights())
    randomised = dataclasses.replace(model, model=clone) if isinstance(model, ModelBundle) else clone
    steps = [CascadeStep("original", np.ones(len(batch)))]
    rng = np.random.default_rng(seed)
    for block, layers in _blocks_top_down(clone):
        for each in layers:
            _reinitialise(each, rng)
        steps.append(CascadeStep(block, _spearman(original, np.asarray(method(randomised, batch, **options)))))
    return steps
