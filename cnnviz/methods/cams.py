"""The CAM family: maps at a layer's resolution, L = ReLU(Σ_k w_k ⊙ A_k), differing only in the weights.

A (h, w, c) are a spatial layer's activations, g_ijk = ∂y/∂A_ijk the gradients of the class logit y,
both from ONE compiled pass (:meth:`cnnviz.taps.Compiled.layer_gradients`). Each gradient method writes
only its weights, as pytorch-grad-cam's ``get_cam_weights``:

- Grad-CAM (Selvaraju et al. 2017): w_k = 1/(h·w) Σ_ij g_ijk (= CAM in a GAP → Dense net);
- Grad-CAM++ (Chattopadhay et al. 2018): w_k = Σ_ij α_ijk ReLU(g_ijk),
  α_ijk = g_ijk² / (2 g_ijk² + Σ_ab A_abk g_ijk³) (the closed form for exp(y), A ≥ 0; 0 where g = 0);
- LayerCAM (Jiang et al. 2021): w_ijk = ReLU(g_ijk), a weight per position;
- HiResCAM (Draelos & Carin 2020): w_ijk = g_ijk, the element-wise product: Grad-CAM wherever the
  gradient is constant over positions (Lite0's last layer), finer where it is not;
- CAM (Zhou et al. 2016): w_k = the final Dense layer's weight W_kc (no backward pass);
- Score-CAM (Wang et al. 2020): no gradients; w_k = softmax(f(X ⊙ M_k))_c, M_k the upsampled,
  min-max normalised A_k masking the model's preprocessed input X.
"""
from __future__ import annotations

import warnings
from functools import partial

import keras
import numpy as np
import tensorflow as tf

from ..checks import caller_stacklevel, check_count
from ..layers import _walk, conv_layers, get_layer
from ..models import _identity
from .base import LayerMethod, Raw, Request

__all__ = ["CAM", "GradCAM", "GradCAMPlusPlus", "GradientCAM", "HiResCAM", "LayerCAM", "ScoreCAM",
           "SignedActivationWarning"]


class SignedActivationWarning(UserWarning):
    """A method whose formula assumes activations ≥ 0 ran on a layer with negative ones."""


def _weighted_map(activations, gradients, weigh):
    """Σ_k w_k ⊙ A_k: A (N, h, w, c), g (N, k, h, w, c) → maps (N, k, h, w), before the ReLU."""
    activations = activations[:, None]
    return tf.reduce_sum(weigh(activations, gradients) * activations, axis=-1)


_MAP_SIGNATURE = [tf.TensorSpec((None,) * 4, tf.float32), tf.TensorSpec((None,) * 5, tf.float32)]


class GradientCAM(LayerMethod):
    """A CAM method whose weights come from the activations A (N, 1, h, w, c) and gradients G (N, k, h, w, c):
    a subclass writes :meth:`weights`, broadcastable to G."""

    @staticmethod
    def weights(activations, gradients):
        raise NotImplementedError

    def __init__(self):
        # one compiled rule per method, independent of the model (no weights inside): one trace each
        self._rule = tf.function(partial(_weighted_map, weigh=self.weights), input_signature=_MAP_SIGNATURE)

    def compute(self, request: Request) -> Raw:
        activations, gradients, classes, scores, logits = request.compiled((request.layer,)).layer_gradients(
            request.images, request.classes)
        self.check_activations(request, activations)
        maps = self._rule(activations, gradients).numpy()
        return Raw(maps, classes.numpy(), scores.numpy(), logits.numpy(),
                   {"activations": activations, "gradients": gradients})

    def check_activations(self, request: Request, activations) -> None:
        """A hook: warn when this method's formula does not hold on these activations."""


class GradCAM(GradientCAM):
    """Grad-CAM (Selvaraju et al. 2017): L = ReLU(Σ_k α_k A_k), α_k = 1/(h·w) Σ_ij ∂y/∂A_ijk."""

    name, label, paper = "gradcam", "Grad-CAM", "https://arxiv.org/abs/1610.02391"

    @staticmethod
    def weights(activations, gradients):
        return tf.reduce_mean(gradients, axis=(2, 3), keepdims=True)  # (N, k, 1, 1, c)


class GradCAMPlusPlus(GradientCAM):
    """Grad-CAM++ (Chattopadhay et al. 2018), the closed form for the exponential score exp(y)::

        α_ijk = g_ijk² / (2 g_ijk² + Σ_ab A_abk · g_ijk³)        (0 where g_ijk = 0)
        w_k   = Σ_ij α_ijk ReLU(g_ijk)                          L = ReLU(Σ_k w_k A_k)

    (exp(y) multiplies every w_k alike and is left out.) The paper derives α for A ≥ 0 (after a ReLU): on
    a layer with negative activations (after a residual add) the denominator can vanish or change sign,
    and a warning says so. pytorch-grad-cam adds ε = 1e-6 to the denominator; cnnviz follows the paper.
    """

    name, label, paper = "gradcam_plus_plus", "Grad-CAM++", "https://arxiv.org/abs/1710.11063"

    @staticmethod
    def weights(activations, gradients):
        g2, g3 = gradients ** 2, gradients ** 3
        denominator = 2 * g2 + tf.reduce_sum(activations, axis=(2, 3), keepdims=True) * g3
        alpha = tf.math.divide_no_nan(g2, denominator)  # 0 where g = 0 (then g² = g³ = 0)
        return tf.reduce_sum(alpha * tf.nn.relu(gradients), axis=(2, 3), keepdims=True)

    def check_activations(self, request: Request, activations) -> None:
        lowest = float(tf.reduce_min(activations))
        if lowest < 0:
            names = [info.name for info in conv_layers(request.keras_model)]
            before = names[:names.index(request.layer)][::-1]
            relu = next((n for n in before if _is_relu(get_layer(request.keras_model, n))), None)
            suggestion = f" (the nearest before it: {relu!r})" if relu else ""
            warnings.warn(f"Grad-CAM++'s closed form assumes activations ≥ 0 (after a ReLU), but layer "
                          f"{request.layer!r} has negative ones (minimum {lowest:.3g}): α's denominator can "
                          f"vanish or change sign, so the map may mean little. Use a layer after a ReLU"
                          f"{suggestion}, or Grad-CAM / LayerCAM.", SignedActivationWarning,
                          stacklevel=caller_stacklevel())


def _is_relu(layer) -> bool:
    activation = getattr(getattr(layer, "activation", None), "__name__", "")
    return isinstance(layer, keras.layers.ReLU) or activation in ("relu", "relu6")


class LayerCAM(GradientCAM):
    """LayerCAM (Jiang et al. 2021): L = ReLU(Σ_k ReLU(g_ijk) · A_ijk), a weight per position and channel.
    Not averaging the gradient over the map keeps early layers' detail (Grad-CAM there is noise)."""

    name, label, paper = "layercam", "LayerCAM", "https://doi.org/10.1109/TIP.2021.3089943"

    @staticmethod
    def weights(activations, gradients):
        return tf.nn.relu(gradients)  # (N, k, h, w, c)


class HiResCAM(GradientCAM):
    """HiResCAM (Draelos & Carin 2020): L = ReLU(Σ_k g_ijk · A_ijk), the gradient times the activation at
    each position. Where the gradient is the same at every position — the last layer of a GAP → Dense
    net, g = W_kc/(h·w) — it equals Grad-CAM; elsewhere it keeps what the average blurs."""

    name, label, paper = "hirescam", "HiResCAM", "https://arxiv.org/abs/2011.08891"

    @staticmethod
    def weights(activations, gradients):
        return gradients


class CAM(LayerMethod):
    """CAM (Zhou et al. 2016): L_c = ReLU(Σ_k W_kc A_k), W the final Dense kernel (c, classes).

    Only where the class scores ARE a Dense layer of the layer's global average, y = GAP(A) W + b (checked
    on the images themselves, so Dropout, a Reshape or a softmax after it do not matter); other networks
    get a ValueError pointing to Grad-CAM. A forward pass only. With a custom ``score`` the weights are
    ∂score/∂p_k (p = GAP(A)), which is W_kc again for a logit.
    """

    name, label, paper = "cam", "CAM", "https://arxiv.org/abs/1512.04150"

    def compute(self, request: Request) -> Raw:
        if request.target.score is None:
            _check_a_dense_reads(request)  # before compiling anything: a clear error at once
        functions = request.compiled((request.layer,))
        if request.target.score is not None:
            activations, gradients, classes, scores, logits = functions.layer_gradients(request.images,
                                                                                       request.classes)
            weights = tf.reduce_sum(gradients, axis=(2, 3))  # (N, k, c)
        else:
            activations, classes, scores, logits = functions.activations(request.images, request.classes)
            kernel, logits = _class_weights(request, activations, logits)
            scores = tf.gather(logits, classes, batch_dims=1)
            weights = tf.gather(tf.transpose(kernel), classes)  # (N, k, c)
        maps = tf.einsum("nhwc,nkc->nkhw", activations, tf.cast(weights, tf.float32))
        return Raw(maps.numpy(), classes.numpy(), scores.numpy(), np.asarray(logits))


def _class_weights(request: Request, activations, scores):
    """(W (c, classes), the logits GAP(A) W + b (N, classes)) of the Dense layer that makes the model's
    scores from GAP(A): the first Dense whose logits match them (or their softmax, for a softmax cnnviz could
    not take off); else a ValueError."""
    pooled = tf.reduce_mean(activations, axis=(1, 2)).numpy()  # (N, c)
    scores = np.asarray(scores)
    for layer, _ in _walk(request.keras_model):
        if not isinstance(layer, keras.layers.Dense) or layer.kernel.shape[0] != pooled.shape[1]:
            continue
        kernel = np.asarray(layer.kernel, "float32")
        logits = pooled @ kernel + (np.asarray(layer.bias) if layer.use_bias else 0)
        if logits.shape == scores.shape and (_close(logits, scores) or _close(_softmax(logits), scores)):
            return kernel, logits
    _not_a_cam_network(request)


def _check_a_dense_reads(request: Request) -> None:
    """Some Dense layer must take as many inputs as the layer has channels, else CAM cannot apply."""
    walked = [layer for layer, _ in _walk(request.keras_model)]
    layer = next(each for each in walked if each.name == request.layer)
    channels = keras.tree.flatten(layer.output)[0].shape[-1]
    if not any(isinstance(each, keras.layers.Dense) and each.kernel.shape[0] == channels for each in walked):
        _not_a_cam_network(request)


def _not_a_cam_network(request: Request):
    after = [layer.name for layer, _ in _walk(request.keras_model)]
    after = after[after.index(request.layer) + 1:][:6]
    raise ValueError(f"cam needs the class scores to be GlobalAveragePooling2D of {request.layer!r} → Dense (CAM reads "
                     f"the class weights of that Dense layer); after {request.layer!r} come {after}. Use "
                     "cnnviz.gradcam, which generalises CAM to any network.")


def _close(a, b) -> bool:
    return bool(np.allclose(a, b, rtol=1e-3, atol=1e-4 * (np.abs(b).max() + 1e-12)))


def _softmax(logits):
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)


@tf.function(input_signature=[tf.TensorSpec((None, None, None), tf.float32), tf.TensorSpec((2,), tf.int32)])
def _masks(feature_maps, size):
    """Score-CAM's masks: feature maps (h, w, b) → (b, H, W, 1), each upsampled (bilinear, half-pixel as
    the official code) and min-max normalised to [0, 1]; a flat map gives an all-zero mask."""
    masks = tf.image.resize(tf.transpose(feature_maps, (2, 0, 1))[..., None], size)
    low = tf.reduce_min(masks, axis=(1, 2, 3), keepdims=True)
    high = tf.reduce_max(masks, axis=(1, 2, 3), keepdims=True)
    return tf.math.divide_no_nan(masks - low, high - low)


class ScoreCAM(LayerMethod):
    """Score-CAM (Wang et al. 2020): no gradients, each channel weighted by what it alone lets through::

        M_k = minmax(upsample(A_k))  (H, W) in [0, 1]          w_k = softmax(f(X ⊙ M_k))_c
        L   = ReLU(Σ_k w_k A_k)

    X is the model's preprocessed input, f its logits: the weights are softmax PROBABILITIES, as in the
    paper (with a custom ``score``: w_k = score(model output on X ⊙ M_k)). One forward pass per channel,
    ``batch_size`` at a time: Lite0's 1280 channels take ~20 s on 2 CPU cores. ``channels`` = m keeps
    the m channels with the largest spatial standard deviation ("Faster Score-CAM", tf-keras-vis' max_N).
    """

    name, label, paper = "scorecam", "Score-CAM", "https://arxiv.org/abs/1910.01279"
    options = {"channels": (None, lambda name, v: None if v is None else check_count(name, v)),
               "batch_size": (16, check_count)}
    explorer_options, explorer_note = {"channels": 64}, "64 channels"

    def compute(self, request: Request, channels, batch_size) -> Raw:
        activations, classes, scores, logits = request.compiled((request.layer,)).activations(
            request.images, request.classes)
        masked = request.compiled(preprocess=_identity)  # X ⊙ M is already in the model's input space
        inputs = np.asarray(request.preprocess(request.images), "float32")
        maps = []
        for x, feature_maps, image_classes in zip(inputs, activations.numpy(), classes.numpy()):
            kept = np.arange(feature_maps.shape[-1])
            if channels is not None and channels < len(kept):
                kept = np.sort(np.argsort(-feature_maps.std(axis=(0, 1)), kind="stable")[:channels])
            weights = np.concatenate([
                self._masked_scores(masked, x, feature_maps[..., kept[start:start + batch_size]], image_classes,
                                    request.target.score is not None)
                for start in range(0, len(kept), batch_size)])  # (channels, k)
            maps.append(np.einsum("hwc,ck->khw", feature_maps[..., kept], weights))
        return Raw(np.stack(maps), classes.numpy(), scores.numpy(), logits.numpy())

    @staticmethod
    def _masked_scores(masked, x, feature_maps, classes, custom: bool) -> np.ndarray:
        """(b, k): the class probabilities (or the custom score) of x ⊙ M_j for each of the b maps."""
        points = x[None] * _masks(tf.constant(feature_maps), tf.constant(x.shape[:2], tf.int32))
        if custom:
            return masked.scores(points, np.full((feature_maps.shape[-1], len(classes)), -1, "int32"))[1].numpy()
        return masked.probabilities(points).numpy()[:, classes]
