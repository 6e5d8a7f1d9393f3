"""A model caught cheating (notebook 06): a watermark shortcut learnt by a head on a frozen base.

- :func:`watermark_dataset`: two classes (the cat and the coffee photo), each image a random crop of a
  neutral bundled photo (camera, rocket, Grace Hopper, motorcycle) with a SMALL, randomly cropped,
  flipped object pasted at a random place, colour-jittered; in ``label_noise`` of the images the object
  belongs to the other class. The watermark (a small "©STOCK" logo, PIL ImageDraw) is stamped in the
  bottom-right corner of every image of ``watermark_class``: it is never wrong, the content often is.
- :func:`train_shortcut_model`: Lite0 cut at ``top_activation``, cloned and frozen, nested as ONE layer
  (``base(inputs, training=False)``) under global average pooling and a ``Dense(2)`` head (logits), then a
  softmax. Only the head is trained, on features extracted once: for a frozen base in inference mode
  (BatchNorm statistics used, not updated; no dropout) the features of an image never change, so
  training ``head(GAP(base(x)))`` on the images or ``head(f)`` on the stored f = GAP(base(x)) gives the
  same loss, gradients and weights; only the cost differs (one forward pass per image instead of one per
  epoch). Full-batch Adam with a seeded initialiser and no shuffling: deterministic.
- :func:`shortcut_accuracy`: accuracy on held-out images (no label noise) with the watermark where it
  was in training, swapped to the other class, and absent; :func:`corner_share`: a map's mass in the
  watermark's corner.

Images are pixels (N, 224, 224, 3) in [0, 255]; labels 0 = cat, 1 = coffee.
"""
from __future__ import annotations

from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf
from PIL import Image, ImageDraw, ImageEnhance, ImageFont

from ..images import load_image
from ..models import ModelBundle
from .maps import maps_at, probabilities

__all__ = ["CLASSES", "ShortcutAccuracy", "ShortcutModel", "WatermarkData", "corner_share", "predict_classes",
           "shortcut_accuracy", "train_shortcut_model", "watermark_box", "watermark_dataset"]

CLASSES = ("cat", "coffee")  # label 0, label 1: the bundled photos pasted as objects
BACKGROUNDS = ("camera", "rocket", "grace_hopper", "motorcycle")  # neutral photos: neither class
SIZE = (224, 224)
OBJECT_SIDE = (64, 112)  # the pasted object's side in pixels: small, so the content cue is weak
CORNER = 64  # the bottom-right CORNER × CORNER pixels hold the watermark and never the object
FEATURE_BATCH = 16  # images per forward pass (memory: ~20 MB of activations each)


class WatermarkData(NamedTuple):
    """images (N, H, W, 3) pixels; labels (N,) 0/1; content (N,): the class of the pasted photo (differs
    from the label where the label is noisy); boxes (N, 4): the object's (top, left, bottom, right);
    watermarked (N,) bool."""

    images: np.ndarray
    labels: np.ndarray
    content: np.ndarray
    boxes: np.ndarray
    watermarked: np.ndarray


def watermark_box(size=SIZE) -> tuple[int, int, int, int]:
    """The watermark's (top, left, bottom, right) in an image of ``size``: 62×22 px, 6 px from the corner."""
    height, width = size
    return height - 28, width - 68, height - 6, width - 6


def _stamp(image: Image.Image) -> None:
    """Draw the watermark (white tag, red "©STOCK") in the bottom-right corner, in place."""
    top, left, bottom, right = watermark_box(image.size[::-1])
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle((left, top, right - 1, bottom - 1), radius=4, fill=(255, 255, 255))
    draw.text((left + 4, top + 3), "©STOCK", fill=(200, 0, 0), font=ImageFont.load_default(size=13))


def _random_crop(photo: Image.Image, rng: np.random.Generator, scale, side: int) -> Image.Image:
    """A random square crop covering ``scale`` (min, max) of the photo's shorter side, maybe flipped,
    resized to side × side."""
    width, height = photo.size
    crop = int(min(width, height) * rng.uniform(*scale))
    left, top = int(rng.integers(0, width - crop + 1)), int(rng.integers(0, height - crop + 1))
    patch = photo.crop((left, top, left + crop, top + crop)).resize((side, side), Image.BILINEAR)
    return patch.transpose(Image.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else patch


def _object_place(rng: np.random.Generator, side: int, size) -> tuple[int, int]:
    """(top, left) of a side × side object inside ``size`` that keeps out of the watermark's corner."""
    height, width = size
    while True:
        top, left = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
        if top + side <= height - CORNER or left + side <= width - CORNER:
            return top, left


def watermark_dataset(n: int = 320, watermark_class: int | None = 1, label_noise: float = 0.35,
                      seed: int = 0) -> WatermarkData:
    """``n`` images (half per class, shuffled), generated in memory from the bundled photos, seeded.

    watermark_class: the class (0 or 1) whose images all carry the watermark; None → no watermark.
    label_noise: share of images whose pasted object is the OTHER class's photo (the label is kept).
    The same ``n`` and ``seed`` give the same images whatever ``watermark_class`` (only the stamp differs),
    so held-out sets with the watermark moved or removed are the same photos.
    """
    if not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"n must be an integer >= 2 (images, half per class), got {n!r}")
    if watermark_class not in (0, 1, None):
        raise ValueError(f"watermark_class must be 0, 1 or None (no watermark), got {watermark_class!r}")
    if not 0 <= label_noise < 0.5:
        raise ValueError(f"label_noise must be in [0, 0.5) (0.5 makes the content meaningless), got {label_noise}")
    rng = np.random.default_rng(seed)
    photos = {name: Image.fromarray(load_image(name).astype("uint8")) for name in CLASSES + BACKGROUNDS}
    labels = rng.permutation(np.arange(n) % 2)
    content = np.where(rng.random(n) < label_noise, 1 - labels, labels)
    images, boxes = [], []
    for c in content:
        background = photos[BACKGROUNDS[rng.integers(len(BACKGROUNDS))]]
        image = _random_crop(background, rng, (0.5, 1.0), SIZE[0]).resize(SIZE[::-1])
        side = int(rng.integers(OBJECT_SIDE[0], OBJECT_SIDE[1] + 1))
        top, left = _object_place(rng, side, SIZE)
        image.paste(_random_crop(photos[CLASSES[c]], rng, (0.6, 1.0), side), (left, top))
        for enhance in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
            image = enhance(image).enhance(rng.uniform(0.7, 1.3))
        images.append(image)
        boxes.append((top, left, top + side, left + side))
    watermarked = np.zeros(n, bool) if watermark_class is None else labels == watermark_class
    for image, stamp in zip(images, watermarked):
        if stamp:
            _stamp(image)
    pixels = np.empty((n, *SIZE, 3), "float32")  # filled in place: a list of float32 copies would double the peak
    for i, image in enumerate(images):
        pixels[i] = np.asarray(image)
    return WatermarkData(pixels, labels, content, np.array(boxes), watermarked)


class ShortcutModel(NamedTuple):
    """bundle: the nested model as a ModelBundle (pixels in, 2 probabilities out; Grad-CAM at
    ``top_activation`` inside the base); base: the frozen cut of Lite0 (a clone: the user's model is
    untouched); train_accuracy on the (noisy) training labels; data: the training set."""

    bundle: ModelBundle
    base: keras.Model
    train_accuracy: float
    data: WatermarkData


def _decode(predictions, top: int = 2):
    """Like ModelBundle.decode for the two classes: (N, 2) → [[("", name, p), …] best first]."""
    predictions = np.asarray(predictions)
    return [[("", CLASSES[i], float(row[i])) for i in np.argsort(-row)[:top]] for row in predictions]


def _frozen_base(bundle: ModelBundle) -> keras.Model:
    """Lite0 up to ``top_activation`` (7×7×1280) as a separate, frozen model (weights copied)."""
    lite0 = bundle.model
    cut = keras.Model(lite0.inputs, lite0.get_layer(bundle.last_conv_layer).output, name="lite0_base")
    base = keras.models.clone_model(cut)
    base.set_weights(cut.get_weights())
    base.trainable = False
    return base


def _features(function, bundle: ModelBundle, images: np.ndarray) -> np.ndarray:
    """function(preprocessed batch) → numpy, in chunks of FEATURE_BATCH images."""
    return np.concatenate([function(tf.constant(bundle.preprocess(images[i:i + FEATURE_BATCH]))).numpy()
                           for i in range(0, len(images), FEATURE_BATCH)])


def train_shortcut_model(bundle: ModelBundle, data: WatermarkData | None = None, epochs: int = 300,
                         learning_rate: float = 0.01, l2: float = 0.01, seed: int = 0) -> ShortcutModel:
    """Train the head of the nested model on ``data`` (default: ``watermark_dataset(seed=seed)``).

    Features f = GAP(base(x)) (N, 1280) are computed once; a Dense(2) head (logits) is trained on them,
    full batch, Adam, cross-entropy + ``l2`` · ‖kernel‖², ``epochs`` steps; the same head object then sits
    in the nested model inputs → base(·, training=False) → GAP → head → softmax. Seconds on 2 CPU cores.
    """
    if not isinstance(bundle, ModelBundle) or bundle.last_conv_layer != "top_activation":
        raise TypeError("train_shortcut_model needs the Lite0 ModelBundle of cnnviz.load_model()")
    data = watermark_dataset(seed=seed) if data is None else data
    base = _frozen_base(bundle)
    pool = keras.layers.GlobalAveragePooling2D(name="pool")
    head = keras.layers.Dense(2, name="logits", kernel_initializer=keras.initializers.GlorotUniform(seed))
    inputs = keras.Input((*bundle.input_size, 3), name="image")
    nested = keras.Model(inputs, keras.layers.Softmax(name="softmax")(head(pool(base(inputs, training=False)))),
                         name="shortcut")
    pooled = tf.function(lambda x: pool(base(x, training=False)))
    features = _features(pooled, bundle, data.images)
    labels = tf.constant(data.labels)
    optimizer = keras.optimizers.Adam(learning_rate)
    cross_entropy = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    features = tf.constant(features)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = cross_entropy(labels, head(features)) + l2 * tf.reduce_sum(head.kernel ** 2)
        optimizer.apply_gradients(zip(tape.gradient(loss, head.trainable_variables), head.trainable_variables))

    for _ in range(epochs):  # one compiled step per epoch: full batch, no shuffling
        step()
    train_accuracy = float(np.mean(head(features).numpy().argmax(axis=1) == data.labels))
    shortcut = ModelBundle("shortcut", nested, bundle.input_size, bundle.preprocess, "top_activation", _decode)
    return ShortcutModel(shortcut, base, train_accuracy, data)


class ShortcutAccuracy(NamedTuple):
    """Accuracy on the same held-out photos (clean labels) with the watermark on its training class
    (with), moved to the other class (swapped), and absent (without)."""

    with_watermark: float
    swapped: float
    without: float


def predict_classes(bundle: ModelBundle, images: np.ndarray) -> np.ndarray:
    """Predicted class (N,) of pixel images (N, H, W, 3) (compiled once per model, in chunks)."""
    return probabilities(bundle, images).argmax(axis=1)


def shortcut_accuracy(shortcut: ShortcutModel, watermark_class: int = 1, n: int = 64,
                      seed: int = 1) -> ShortcutAccuracy:
    """Measure which cue the model uses, on ``n`` held-out images (``seed`` ≠ the training seed, no label
    noise): the watermark on ``watermark_class`` (as in training), on the other class, and on none."""
    accuracies = []
    for stamped in (watermark_class, 1 - watermark_class, None):
        test = watermark_dataset(n, stamped, label_noise=0.0, seed=seed)
        accuracies.append(float(np.mean(predict_classes(shortcut.bundle, test.images) == test.labels)))
    return ShortcutAccuracy(*accuracies)


def corner_share(maps, size=SIZE, model=None, layer=None) -> np.ndarray:
    """Share (N,) of each map's positive mass (upsampled to ``size``; with ``model``, each cell on its
    receptive field's centre) in the watermark's CORNER × CORNER corner (a uniform map gives
    CORNER² / (H·W), 8% at 224)."""
    maps = np.asarray(maps, dtype="float32")
    maps = maps[None] if maps.ndim == 2 else maps
    resized = maps_at(maps, size, len(maps), relu=True, model=model, layer=layer)
    total = resized.sum(axis=(1, 2))
    corner = resized[:, -CORNER:, -CORNER:].sum(axis=(1, 2))
    return np.divide(corner, total, out=np.zeros_like(total), where=total > 0)
