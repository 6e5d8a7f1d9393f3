"""The CAM family: heatmaps at a layer's resolution, Σ_k w_k A_k with different channel weights (notebook 05).

A (h, w, c) are a spatial layer's activations, g_ijk = ∂y/∂A_ijk the gradients of the class logit y
(both from ONE compiled pass, :class:`cnnviz.attribution.LayerGradients`). Every method is::

    L = ReLU(Σ_k w_k ⊙ A_k)          then divided by its maximum: (h, w) in [0, 1]

and differs only in its weights w (per channel, or per position and channel for LayerCAM) — the
design of pytorch-grad-cam's ``get_cam_weights``:

- :func:`cam` (Zhou et al. 2016): w_k = the final Dense layer's weight W_kc of class c (GAP → Dense nets);
- Grad-CAM (:func:`cnnviz.gradcam`): w_k = 1/(h·w) Σ_ij g_ij  (= W_kc/(h·w) in a GAP → Dense net: CAM);
- :func:`gradcam_plus_plus` (Chattopadhay et al. 2018): w_k = Σ_ij α_ij ReLU(g_ij),
  α_ij = g_ij² / (2 g_ij² + Σ_ab A_ab g_ij³) (the closed form for the score exp(y); 0 where g = 0);
- :func:`layercam` (Jiang et al. 2021): w_ijk = ReLU(g_ijk), per position: works on early layers too;
- :func:`scorecam` (Wang et al. 2020): no gradients; w_k = softmax(f(X ⊙ M_k))_c, M_k the upsampled,
  min-max normalised A_k masking the model's preprocessed input X.

Calling convention (all the same): ``method(model, images, layer=None, class_index=None, score=None)``;
one image (H, W, 3) → (h, w), a batch → (N, h, w); class_index None → each image's top class; logits
are explained. ``normalize=False`` gives the raw maps (≥ 0) and :func:`cam_maps` the raw maps of several
classes of one image from one pass, for a shared scale across classes.
"""
from __future__ import annotations

from functools import partial

import keras
import numpy as np
import tensorflow as tf

from .attribution import class_matrix, layer_gradients, normalise, positive_int
from .gradcam import gradcam
from .images import as_batch
from .layers import _walk, squashes_output
from .models import unwrap

__all__ = ["CAM_METHODS", "cam", "cam_maps", "gradcam_plus_plus", "layercam", "scorecam"]


# ---------------------------------------------------------------- channel weights: A (N, 1, h, w, c), g (N, k, h, w, c)

def _gradcam_weights(activations, gradients):
    return tf.reduce_mean(gradients, axis=(2, 3), keepdims=True)  # (N, k, 1, 1, c)


def _gradcam_plus_plus_weights(activations, gradients):
    g2, g3 = gradients ** 2, gradients ** 3
    denominator = 2 * g2 + tf.reduce_sum(activations, axis=(2, 3), keepdims=True) * g3
    alpha = tf.math.divide_no_nan(g2, denominator)  # 0 where g = 0 (then g² = g³ = 0)
    return tf.reduce_sum(alpha * tf.nn.relu(gradients), axis=(2, 3), keepdims=True)


def _layercam_weights(activations, gradients):
    return tf.nn.relu(gradients)  # (N, k, h, w, c): one weight per position


def _weighted_map(activations, gradients, weigh):
    """ReLU(Σ_k w_k ⊙ A_k): A (N, h, w, c), g (N, k, h, w, c) → raw maps (N, k, h, w) ≥ 0."""
    activations = activations[:, None]
    return tf.nn.relu(tf.reduce_sum(weigh(activations, gradients) * activations, axis=-1))


_MAP_SIGNATURE = [tf.TensorSpec((None,) * 4, tf.float32), tf.TensorSpec((None,) * 5, tf.float32)]
# One compiled function per rule, independent of the model (no weights inside): one trace each.
_WEIGHTS = {"gradcam": _gradcam_weights, "gradcam_plus_plus": _gradcam_plus_plus_weights,
            "layercam": _layercam_weights}
_GRADIENT_CAMS = {name: tf.function(partial(_weighted_map, weigh=weigh), input_signature=_MAP_SIGNATURE)
                  for name, weigh in _WEIGHTS.items()}


# ---------------------------------------------------------------- CAM (Zhou et al. 2016): the Dense weights

def _classifier(keras_model, layer_name: str) -> keras.layers.Dense:
    """The Dense of ``layer → GlobalAveragePooling2D → (Dropout) → Dense (→ softmax)``, else a ValueError."""
    order = [layer for layer, _ in _walk(keras_model)
             if not isinstance(layer, (keras.Model, keras.layers.InputLayer))]
    after = order[[layer.name for layer in order].index(layer_name) + 1:]
    head = [layer for layer in after if not isinstance(layer, keras.layers.Dropout)]
    if not (len(head) in (2, 3) and isinstance(head[0], keras.layers.GlobalAveragePooling2D)
            and isinstance(head[1], keras.layers.Dense)
            and (getattr(head[1].activation, "__name__", "") == "linear" or squashes_output(head[1]))
            and (len(head) == 2 or squashes_output(head[2]))):
        raise ValueError(f"cam needs {layer_name!r} → GlobalAveragePooling2D → Dense (CAM reads the class weights "
                         f"of that Dense layer); after {layer_name!r} come {[layer.name for layer in after]}. "
                         "Use cnnviz.gradcam, which generalises CAM to any network.")
    return head[1]


def _cam(keras_model, taps, x, classes, score):
    """CAM maps (N, k, h, w): w_k = W_kc of class c; with a custom score w_k = ∂score/∂p_k, p = GAP(A),
    which is Σ_ij g_ijk in a GAP network (and exactly W_kc for a logit)."""
    dense = _classifier(keras_model, taps.layer_name)
    if score is not None:
        activations, gradients, *_ = taps(x, classes)
        weights = tf.reduce_sum(gradients, axis=(2, 3))  # (N, 1, c)
    else:
        activations, classes, *_ = taps(x, classes, gradients=False)  # no backward pass at all
        kernel = tf.transpose(tf.convert_to_tensor(dense.kernel))  # (classes, c)
        weights = tf.gather(kernel, classes)  # (N, k, c): the weights of each image's classes
    return tf.nn.relu(tf.einsum("nhwc,nkc->nkhw", activations, weights))


# ---------------------------------------------------------------- Score-CAM (Wang et al. 2020): no gradients

def _scorecam(taps, x, classes, channels=None, batch_size: int = 32):
    """Score-CAM maps (N, k, h, w): w_k = softmax(f(X ⊙ M_k))_c, one batched forward per channel batch."""
    channels = None if channels is None else positive_int("channels (None: all)", channels)
    batch_size = positive_int("batch_size", batch_size)
    activations, classes, *_ = taps(x, classes, gradients=False)
    maps = []
    for image, feature_maps, image_classes in zip(x, activations.numpy(), classes.numpy()):
        kept = np.arange(feature_maps.shape[-1])
        if channels is not None and channels < len(kept):  # "Faster Score-CAM": the most varied channels
            kept = np.sort(np.argsort(-feature_maps.std(axis=(0, 1)), kind="stable")[:channels])
        weights = np.concatenate([
            taps.masked_scores(image[None], feature_maps[..., kept[start:start + batch_size]], image_classes[None])
            for start in range(0, len(kept), batch_size)])  # (channels, k)
        maps.append(np.einsum("hwc,ck->khw", feature_maps[..., kept], weights))
    return np.maximum(np.stack(maps), 0)


# ---------------------------------------------------------------- public functions

def _raw_maps(method: str, model, images, classes_of, layer, score, **options) -> tuple[np.ndarray, bool]:
    """(raw maps (N, k, h, w) ≥ 0, whether one image was given); ``classes_of(n, num_classes)`` → (N, k)."""
    if method not in CAM_METHODS:
        raise ValueError(f"unknown CAM method {method!r}; choose one of {sorted(CAM_METHODS)}")
    if options and method != "scorecam":
        raise TypeError(f"{method} takes no options, got {sorted(options)} (scorecam's are channels, batch_size)")
    keras_model, preprocess = unwrap(model)
    batch, single = as_batch(images)
    taps = layer_gradients(keras_model, layer, score)
    classes = classes_of(len(batch), taps.num_classes)
    x = tf.convert_to_tensor(preprocess(batch), tf.float32)
    if method == "cam":
        maps = _cam(keras_model, taps, x, classes, score)
    elif method == "scorecam":
        maps = _scorecam(taps, x, tf.convert_to_tensor(classes, tf.int32), **options)
    else:
        activations, gradients, *_ = taps(x, classes)
        maps = _GRADIENT_CAMS[method](activations, gradients)
    return np.asarray(maps), single


def _one_class_each(method: str, model, images, layer, class_index, score, normalize: bool, **options):
    def classes_of(n, num_classes):
        return class_matrix(class_index, n, num_classes, score)

    maps, single = _raw_maps(method, model, images, classes_of, layer, score, **options)
    maps = normalise(maps[:, 0]) if normalize else maps[:, 0]
    return maps[0] if single else maps


def cam(model, images, layer=None, class_index=None, score=None, normalize: bool = True) -> np.ndarray:
    """CAM (Zhou et al. 2016): L_c = ReLU(Σ_k W_kc A_k), W the final Dense kernel (c, classes).

    Only for ``layer → GlobalAveragePooling2D → Dense`` (layer None: the last spatial layer); other
    networks get a ValueError pointing to Grad-CAM. A forward pass only, no gradients. With a custom
    ``score`` the weights are ∂score/∂p_k (p the pooled features): W_kc again for a logit.
    Images (N, H, W, 3) → (N, h, w) in [0, 1] (raw ≥ 0 with ``normalize=False``).
    """
    return _one_class_each("cam", model, images, layer, class_index, score, normalize)


def gradcam_plus_plus(model, images, layer=None, class_index=None, score=None, normalize: bool = True) -> np.ndarray:
    """Grad-CAM++ (Chattopadhay et al. 2018), the closed form for the exponential score exp(y)::

        α_ijk = g_ijk² / (2 g_ijk² + Σ_ab A_abk · g_ijk³)        (0 where g_ijk = 0)
        w_k   = Σ_ij α_ijk ReLU(g_ijk)                          L = ReLU(Σ_k w_k A_k)

    (exp(y) multiplies every w_k alike and is left out.) Positive gradients only, weighted per position:
    several instances of a class each count, where Grad-CAM's average favours the largest.
    Images (N, H, W, 3) → (N, h, w) in [0, 1] (raw ≥ 0 with ``normalize=False``).
    """
    return _one_class_each("gradcam_plus_plus", model, images, layer, class_index, score, normalize)


def layercam(model, images, layer=None, class_index=None, score=None, normalize: bool = True) -> np.ndarray:
    """LayerCAM (Jiang et al. 2021): L = ReLU(Σ_k ReLU(g_ijk) · A_ijk), a weight per position and channel.

    Not averaging the gradient over the map keeps early layers' fine detail (Grad-CAM there is noise).
    Images (N, H, W, 3) → (N, h, w) in [0, 1] (raw ≥ 0 with ``normalize=False``).
    """
    return _one_class_each("layercam", model, images, layer, class_index, score, normalize)


def scorecam(model, images, layer=None, class_index=None, score=None, channels: int | None = None,
             batch_size: int = 32, normalize: bool = True) -> np.ndarray:
    """Score-CAM (Wang et al. 2020): no gradients, each channel weighted by what it alone lets through::

        M_k = minmax(upsample(A_k))  (H, W) in [0, 1]          w_k = softmax(f(X ⊙ M_k))_c
        L   = ReLU(Σ_k w_k A_k)

    X is the model's preprocessed input (a ModelBundle's pixels after ``preprocess``), f its logits
    (with a custom ``score``: w_k = score(model output on X ⊙ M_k)). One forward pass per channel, in
    batches of ``batch_size``: Lite0's 1280 channels take seconds. ``channels`` = m keeps the m channels
    with the largest spatial standard deviation ("Faster Score-CAM", tf-keras-vis' ``max_N``).
    Images (N, H, W, 3) → (N, h, w) in [0, 1] (raw ≥ 0 with ``normalize=False``).
    """
    return _one_class_each("scorecam", model, images, layer, class_index, score, normalize,
                           channels=channels, batch_size=batch_size)


def cam_maps(method: str, model, image, classes=None, layer=None, score=None, **options) -> np.ndarray:
    """RAW maps (k, h, w) ≥ 0 of k classes of ONE image (H, W, 3) by a CAM method, from one pass.

    For a shared scale across classes (an absent class then looks weak): divide all by their common
    maximum. method: a key of :data:`CAM_METHODS` ("gradcam", "gradcam_plus_plus", "layercam", "cam",
    "scorecam"). classes: a list of k class indices, or None for the top class; ``score`` instead
    gives the k values of ``score(output)``. ``options`` go to the method (Score-CAM's ``channels``,
    ``batch_size``). Scales differ between methods (CAM's W_kc is h·w × Grad-CAM's weight).
    """
    if np.ndim(image) != 3:
        raise ValueError(f"cam_maps takes one image (H, W, 3), got shape {np.shape(image)}")

    def classes_of(n, num_classes):
        if score is not None or classes is None:
            return class_matrix(classes, n, num_classes, score)
        wanted = np.asarray(classes)
        if wanted.ndim != 1 or len(wanted) == 0:
            raise ValueError(f"classes: a list of class indices, got {classes!r}")
        return class_matrix(wanted[:, None], len(wanted), num_classes).reshape(1, -1)

    return _raw_maps(method, model, image, classes_of, layer, score, **options)[0][0]


CAM_METHODS = {"cam": cam, "gradcam": gradcam, "gradcam_plus_plus": gradcam_plus_plus, "layercam": layercam,
               "scorecam": scorecam}
