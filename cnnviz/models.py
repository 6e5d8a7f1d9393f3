"""Models and their plumbing: the offline EfficientNet-Lite0, the online seed models, class names.

``load_model()`` returns a :class:`ModelBundle`: the Keras model plus what a notebook needs to use
it — input size, preprocessing, decoding of predictions, the last convolutional layer.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.resources import as_file, files
from pathlib import Path
from typing import Callable

import numpy as np

# Package data (cnnviz/data, shipped in the wheel): read through importlib.resources, so it is found
# wherever cnnviz is installed. A Traversable, not necessarily a pathlib.Path.
DATA_DIR = files("cnnviz") / "data"
LITE0_WEIGHTS = DATA_DIR / "efficientnet_lite0.weights.h5"
CLASS_INDEX = DATA_DIR / "imagenet_class_index.json"

# name → (keras.applications constructor, its preprocess module, input size, last conv layer)
SEED_MODELS = {
    "vgg16": ("VGG16", "vgg16", (224, 224), "block5_conv3"),
    "resnet50": ("ResNet50", "resnet50", (224, 224), "conv5_block3_out"),
    "xception": ("Xception", "xception", (299, 299), "block14_sepconv2_act"),
    "mobilenet_v2": ("MobileNetV2", "mobilenet_v2", (224, 224), "out_relu"),
}


@lru_cache(maxsize=1)
def class_index() -> list[tuple[str, str]]:
    """The 1000 ImageNet classes as (WordNet id, Keras-style name), in Keras' index order."""
    raw = json.loads(CLASS_INDEX.read_text())
    return [tuple(raw[str(i)]) for i in range(len(raw))]


def decode(predictions, top: int = 5) -> list[list[tuple[str, str, float]]]:
    """Like ``keras.applications.imagenet_utils.decode_predictions``, offline.

    predictions: (N, 1000) scores → for each image the ``top`` (wnid, name, score), best first.
    """
    predictions = np.asarray(predictions)
    if predictions.ndim != 2 or predictions.shape[1] != len(class_index()):
        raise ValueError(f"decode expects (N, {len(class_index())}) scores, got shape {predictions.shape}")
    best = np.argsort(-predictions, axis=1, kind="stable")[:, :top]
    return [[(*class_index()[i], float(row[i])) for i in idx] for row, idx in zip(predictions, best)]


def class_names() -> list[str]:
    """The 1000 Keras-style class names, by index (two duplicates as in Keras: crane, maillot)."""
    return [name for _, name in class_index()]


def preprocess_lite0(images):
    """EfficientNet-Lite0's input scaling: pixels in [0, 255] → (x - 127) / 128, about [-1, 1].

    Takes numpy arrays or tensors (so it can run inside a ``tf.function``).
    """
    if isinstance(images, (np.ndarray, list, tuple)):
        images = np.asarray(images, dtype="float32")
    return (images - 127.0) / 128.0


def _identity(images):
    return images


def unwrap(model):
    """(keras model, preprocess) of a :class:`ModelBundle`, or (model, identity) of a bare Keras model.

    cnnviz functions take either: a bundle's images are pixels in [0, 255], a bare model's are
    whatever that model expects.
    """
    return (model.model, model.preprocess) if isinstance(model, ModelBundle) else (model, _identity)


@dataclass
class ModelBundle:
    """A Keras classifier and what it takes to use it.

    model: (N, H, W, 3) preprocessed images → (N, 1000) probabilities.
    input_size: (H, W) for classification. preprocess: pixels in [0, 255] → model input.
    last_conv_layer: name of the last spatial layer, Grad-CAM's usual target.
    """

    name: str
    model: object
    input_size: tuple[int, int]
    preprocess: Callable
    last_conv_layer: str
    decode: Callable = field(default=decode)

    def predict(self, images, top: int = 5):
        """Classify pixel images (N, H, W, 3) in [0, 255] already at ``input_size``; returns decode()."""
        x = self.preprocess(np.asarray(images, dtype="float32"))
        return self.decode(self.model.predict_on_batch(x), top=top)

    def __repr__(self):
        return f"ModelBundle({self.name!r}, input_size={self.input_size}, last_conv_layer={self.last_conv_layer!r})"


def _weights_file(weights, name: str):
    """``weights`` as an existing file path, or None for "imagenet" / None; else a clear error."""
    if weights in ("imagenet", None):
        return None
    looks_like_a_path = isinstance(weights, str) and (Path(weights).suffix or os.sep in weights)
    if isinstance(weights, os.PathLike) or looks_like_a_path:
        if not Path(weights).is_file():
            raise FileNotFoundError(f"no weights file {str(weights)!r} for {name}: give the path of a saved "
                                    "'.weights.h5' file (model.save_weights), 'imagenet' or None")
        return Path(weights)
    raise ValueError(f"{name} takes weights='imagenet', None (untrained) or the path of a '.weights.h5' file; "
                     f"got {weights!r}")


def _lite0(weights) -> ModelBundle:
    from .efficientnet_lite import INPUT_SIZE, build_efficientnet_lite0

    path = _weights_file(weights, "efficientnet_lite0")
    model = build_efficientnet_lite0()
    if path is not None:
        model.load_weights(path)
    elif weights == "imagenet":
        with as_file(LITE0_WEIGHTS) as bundled:  # Keras wants a real file name ending in .weights.h5
            model.load_weights(bundled)
    return ModelBundle("efficientnet_lite0", model, INPUT_SIZE, preprocess_lite0, "top_activation")


def _seed(name: str, weights) -> ModelBundle:
    import keras

    constructor, module, size, last_conv = SEED_MODELS[name]
    path = _weights_file(weights, name)
    if path is not None:  # a local file: Keras loads it, no download
        base = getattr(keras.applications, constructor)(weights=str(path), classifier_activation=None)
        return _with_softmax(name, base, module, size, last_conv)
    try:
        base = getattr(keras.applications, constructor)(weights=weights, classifier_activation=None)
    except Exception as error:  # urllib/HTTP/socket errors differ by platform; all mean "no download"
        raise RuntimeError(
            f"could not download the ImageNet weights of {name!r} ({type(error).__name__}: {error}). "
            "This needs a network connection. Offline, use the bundled model: cnnviz.load_model() "
            f"(EfficientNet-Lite0), or load_model({name!r}, weights=None) for the architecture alone."
        ) from error
    return _with_softmax(name, base, module, size, last_conv)


def _with_softmax(name, base, module, size, last_conv) -> ModelBundle:
    import keras

    # Softmax as its own layer: the logits stay reachable as the output of layer "predictions".
    outputs = keras.layers.Softmax(name="probabilities")(base.output)
    model = keras.Model(base.inputs, outputs, name=base.name)
    preprocess = getattr(keras.applications, module).preprocess_input  # numpy or tensors
    return ModelBundle(name, model, size, preprocess, last_conv)


def load_model(name: str = "efficientnet_lite0", weights="imagenet") -> ModelBundle:
    """Load a classifier as a :class:`ModelBundle`.

    ``"efficientnet_lite0"`` (default) works offline: its weights ship in cnnviz/data/. The seed models
    ``"vgg16"``, ``"resnet50"``, ``"xception"``, ``"mobilenet_v2"`` download ImageNet weights from
    keras.applications; pass ``weights=None`` for the untrained architecture (no network needed), or
    the path of a weights file saved before (``model.save_weights``) to load it offline.
    """
    name = name.lower()
    if name in ("efficientnet_lite0", "lite0"):
        return _lite0(weights)
    if name in SEED_MODELS:
        return _seed(name, weights)
    raise ValueError(f"unknown model {name!r}; choose one of {['efficientnet_lite0', *SEED_MODELS]}")
