"""The plumbing under every attribution method (notebook 05): compiled, cached, shared.

Two compiled taps, each built once per (model, …, score) and kept in the model's bounded cache
(:func:`cnnviz.caching.per_model_cache`, the 2 most recent per purpose):

- :class:`LayerGradients` — one forward pass gives a spatial layer's activations A (N, h, w, c),
  the class scores y and, when asked, the gradients G = ∂y/∂A (N, k, h, w, c) of k classes per image.
  The CAM family (:mod:`cnnviz.cams`) only differs in how it weighs A with G.
- :class:`InputGradients` — ∂y/∂x with respect to the images AS GIVEN (pixels for a
  :class:`~cnnviz.ModelBundle`: the preprocessing runs inside the compiled function), for single
  images, noisy copies (SmoothGrad) or points on a path (Integrated Gradients); optionally through the
  guided-backprop clone of the model (:func:`guided_clone`). The pixel methods live in
  :mod:`cnnviz.pixel_methods`.

Scores are LOGITS (the model's final softmax is left out by :func:`cnnviz.tap_model`), or a custom
``score(output) → (N,) or (N, k)`` of the model's own output. Classes come as an (N, k) int matrix,
``-r`` meaning "the r-th best class of this image" (see :func:`cnnviz.gradcam._class_matrix`).
"""
from __future__ import annotations

from functools import partial
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from .caching import function_key, per_model_cache
from .gradcam import _class_matrix, normalise
from .layers import _input_tensor, leaves_layers_unchanged, spatial_layer, tap_model

__all__ = ["InputGradients", "LayerGradients", "class_matrix", "guided_clone", "input_gradients",
           "layer_gradients", "normalise", "positive_int"]


def positive_int(name: str, value) -> int:
    """``value`` as an int ≥ 1, else a ValueError naming the argument (bools are not counts)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def class_matrix(class_index, n: int, num_classes: int, score=None) -> np.ndarray:
    """(n, 1) classes to explain: None → each image's top class (-1), an int, or one per image.

    With a custom ``score`` the class is not used: giving one as well is a mistake, not ignored.
    """
    if score is not None:
        if class_index is not None:
            raise ValueError("give class_index or score, not both: a custom score picks its own target")
        return np.full((n, 1), -1, "int32")
    classes = _class_matrix(class_index, n, 1, num_classes)
    if classes.shape[1] != 1:
        raise ValueError(f"class_index: one class per image (an int or {n} ints), got shape {classes.shape}")
    return classes


def select_scores(output, classes, score: Callable | None):
    """(classes (N, k), scores (N, k)) picked from the model's ``output``.

    score None: ``output`` are logits; ``classes`` (N, k) class indices, -r → the r-th best. A custom
    ``score(output)`` gives (N,) or (N, k) values; its classes are reported as -1.
    """
    if score is not None:
        scores = tf.convert_to_tensor(score(output))
        scores = tf.reshape(scores, (tf.shape(scores)[0], -1))
        return -tf.ones(tf.shape(scores), tf.int32), scores
    ranked = tf.argsort(output, axis=-1, direction="DESCENDING", stable=True)
    best = tf.gather(ranked, tf.maximum(-classes - 1, 0), batch_dims=1)
    classes = tf.where(classes < 0, best, classes)
    return classes, tf.gather(output, classes, batch_dims=1)


class LayerGradients:
    """A tap (activations + score in one pass) of one spatial layer, compiled three ways.

    ``forward(images, classes)`` → A (N, h, w, c), classes (N, k), scores (N, k), output (N, m);
    ``one_class`` (k = 1) and ``many_classes`` (k backward passes, vectorised) also give
    G = ∂y/∂A (N, k, h, w, c); ``masked_scores`` gives Score-CAM's masked forwards. images (N, H, W, 3)
    preprocessed. One trace each for any batch, image size or classes (shapes open, classes a tensor);
    a variant not used is never traced.
    """

    def __init__(self, keras_model, layer_name: str, score: Callable | None):
        self.layer_name, self.score = layer_name, score
        self.tap = tap_model(keras_model, [layer_name], score="logits" if score is None else "output")
        self.num_classes = self.tap.outputs[-1].shape[-1]
        self.input_spec = tf.TensorSpec(self.tap.inputs[0].shape, tf.float32)
        signature = [self.input_spec, tf.TensorSpec((None, None), tf.int32)]
        # partial(), not lambdas: TF counts traces per code object (see cnnviz.gradcam)
        self.forward = tf.function(partial(self._compute, mode="forward"), input_signature=signature)
        self.one_class = tf.function(partial(self._compute, mode="one"), input_signature=signature)
        self.many_classes = tf.function(partial(self._compute, mode="many"), input_signature=signature)
        self.masked_scores = tf.function(partial(self._masked_scores), input_signature=[
            tf.TensorSpec((None,) * 4, tf.float32), tf.TensorSpec((None,) * 3, tf.float32),
            tf.TensorSpec((None, None), tf.int32)])

    def _compute(self, images, classes, mode: str):
        with tf.GradientTape() as tape:
            (activations,), output = self.tap(images, training=False)
            classes, scores = select_scores(output, classes, self.score)
            total = tf.reduce_sum(scores)  # images are independent: ∂(Σ_n y_n)/∂A_n = ∂y_n/∂A_n
        if mode == "forward":
            return activations, classes, scores, output
        if mode == "one":
            gradients = tape.gradient(total, activations)[:, None]
        else:
            gradients = tape.batch_jacobian(scores, activations)
        return activations, gradients, classes, scores, output

    def _masked_scores(self, image, feature_maps, classes):
        """Score-CAM's forward passes: image (1, H, W, C) preprocessed, feature_maps (h, w, b), classes (1, k)
        resolved → (b, k): softmax probability of each class (or the custom score) on image ⊙ M_j, where
        M_j is map j upsampled (bilinear) to (H, W) and min-max normalised to [0, 1]."""
        masks = tf.image.resize(tf.transpose(feature_maps, (2, 0, 1))[..., None], tf.shape(image)[1:3])
        low = tf.reduce_min(masks, axis=(1, 2, 3), keepdims=True)
        high = tf.reduce_max(masks, axis=(1, 2, 3), keepdims=True)
        masks = tf.math.divide_no_nan(masks - low, high - low)  # a flat map → all zero, masks everything
        _, output = self.tap(image * masks, training=False)  # (b, classes)
        if self.score is not None:
            return select_scores(output, None, self.score)[1]
        return tf.gather(tf.nn.softmax(output), classes[0], axis=1)

    def __call__(self, images, classes, gradients: bool = True):
        """numpy/tensor inputs → tensors (A, G, classes, scores, output), or without G if not ``gradients``."""
        images, classes = tf.convert_to_tensor(images, tf.float32), tf.convert_to_tensor(classes, tf.int32)
        if not gradients:
            return self.forward(images, classes)
        return (self.one_class if classes.shape[1] == 1 else self.many_classes)(images, classes)


def layer_gradients(keras_model, layer, score) -> LayerGradients:
    """The :class:`LayerGradients` of (model, layer, score) from the model's bounded cache."""
    name = spatial_layer(keras_model, layer).name  # wrong / non-spatial layer → clear ValueError
    return per_model_cache(keras_model, "attribution").lookup(
        (name, function_key(score)), lambda: LayerGradients(keras_model, name, score))


# ---------------------------------------------------------------------------------------------- guided


@tf.custom_gradient
def _pass_positive_gradients(x):
    """Identity forward; backward lets only positive gradients through (guided backprop's gate)."""
    return tf.identity(x), tf.nn.relu


class _GuidedGate(keras.layers.Layer):
    """``layer``'s output, unchanged, with the backward gradient gated: ∂ ↦ max(∂, 0).

    Put after a ReLU (or ReLU6), whose own backward already keeps only where its input was active,
    this gives Springenberg et al.'s rule: R_in = R_out · [x > 0] · [R_out > 0] (ReLU6: · [x < 6]).
    """

    def __init__(self, layer, **kwargs):
        super().__init__(name=f"{layer.name}_guided", **kwargs)
        self.layer = layer  # shared, not copied: same weights

    def call(self, *args, **kwargs):
        return _pass_positive_gradients(self.layer(*args, **kwargs))


def _is_relu(layer) -> bool:
    if isinstance(layer, keras.layers.ReLU):
        return True
    return getattr(getattr(layer, "activation", None), "__name__", "") in ("relu", "relu6")


def _replay_guided(model, inputs):
    """``model`` called on symbolic ``inputs`` with every ReLU-type layer gated; nested models too."""
    def call(layer, *args, **kwargs):
        if isinstance(layer, keras.Model):
            return _replay_guided(layer, args[0])
        return _GuidedGate(layer)(*args, **kwargs) if _is_relu(layer) else layer(*args, **kwargs)

    if isinstance(model, keras.Sequential):
        x = inputs
        for layer in model.layers:
            x = call(layer, x)
        return x
    if isinstance(model.input, (list, tuple)):
        inputs = [inputs]
    clone = keras.models.clone_model(model, input_tensors=inputs, clone_function=lambda layer: layer,
                                     call_function=call)
    return clone.outputs[0] if len(clone.outputs) == 1 else clone.outputs


@leaves_layers_unchanged
def guided_clone(keras_model) -> keras.Model:
    """A model computing the same outputs as ``keras_model`` (same layers, same weights) whose ReLU and
    ReLU6 gradients are guided (see :class:`_GuidedGate`). ``keras_model`` itself is not changed."""
    inputs = _input_tensor(keras_model)  # a clear error for a Sequential never built
    return keras.Model(inputs, _replay_guided(keras_model, inputs), name=f"{keras_model.name}_guided")


# ---------------------------------------------------------------------------------------------- inputs


class InputGradients:
    """∂y/∂x for images x in the caller's space (preprocessing inside the compiled graph).

    ``gradients(x, classes)`` → (∂y/∂x (N, H, W, C), classes (N,), scores (N,)); classes (N,) ints,
    -1 → top class. ``noisy_sum(x, classes, sigma (N,), seed (2,), count)`` → Σ over ``count`` copies
    x + N(0, σ²) of |∂y/∂x|, one batch, noise from a stateless generator (same seed, same noise).
    ``path_sum(x, baseline, classes, alphas (s,))`` → Σ_s ∂y/∂x at x' + α_s (x − x'), one batch.
    """

    def __init__(self, keras_model, preprocess: Callable, score: Callable | None, guided: bool):
        self.preprocess, self.score = preprocess, score
        network = guided_clone(keras_model) if guided else keras_model
        self.tap = tap_model(network, [], score="logits" if score is None else "output")
        self.num_classes = self.tap.outputs[-1].shape[-1]
        images, classes = tf.TensorSpec((None, None, None, None), tf.float32), tf.TensorSpec((None,), tf.int32)
        self.gradients = tf.function(partial(self._gradients), input_signature=[images, classes])
        self.top_class = tf.function(partial(self._top_class), input_signature=[images])
        self.noisy_sum = tf.function(partial(self._noisy_sum), input_signature=[
            images, classes, tf.TensorSpec((None,), tf.float32), tf.TensorSpec((2,), tf.int32),
            tf.TensorSpec((), tf.int32)])
        self.path_sum = tf.function(partial(self._path_sum), input_signature=[
            images, images, classes, tf.TensorSpec((None,), tf.float32)])

    def _gradients(self, images, classes):
        with tf.GradientTape() as tape:
            tape.watch(images)
            _, output = self.tap(self.preprocess(images), training=False)
            classes, scores = select_scores(output, classes[:, None], self.score)
            total = tf.reduce_sum(scores)
        return tape.gradient(total, images), classes[:, 0], scores[:, 0]

    def _top_class(self, images):
        _, logits = self.tap(self.preprocess(images), training=False)
        return tf.argmax(logits, axis=-1, output_type=tf.int32)

    def _repeated_gradients(self, points, classes, count, magnitude: bool = False):
        """points (count·N, H, W, C), copy-major → Σ over the count copies of ∂y/∂x (or of |∂y/∂x|)."""
        gradients, _, _ = self._gradients(points, tf.tile(classes, [count]))
        gradients = tf.abs(gradients) if magnitude else gradients
        return tf.reduce_sum(tf.reshape(gradients, tf.concat([[count, -1], tf.shape(points)[1:]], 0)), 0)

    def _noisy_sum(self, images, classes, sigma, seed, count):
        noise = tf.random.stateless_normal(tf.concat([[count], tf.shape(images)], 0), seed)
        noisy = images[None] + sigma[None, :, None, None, None] * noise  # (count, N, H, W, C)
        return self._repeated_gradients(tf.reshape(noisy, tf.concat([[-1], tf.shape(images)[1:]], 0)),
                                        classes, count, magnitude=True)

    def _path_sum(self, images, baselines, classes, alphas):
        alphas = alphas[:, None, None, None, None]
        points = baselines[None] + alphas * (images - baselines)[None]  # (s, N, H, W, C)
        count = tf.shape(alphas)[0]
        return self._repeated_gradients(tf.reshape(points, tf.concat([[-1], tf.shape(images)[1:]], 0)),
                                        classes, count)

    def resolve(self, images, classes) -> np.ndarray:
        """(N,) classes with -1 replaced by each image's top class (a forward pass, only if any is -1)."""
        classes = np.asarray(classes, "int32")
        if self.score is not None or (classes >= 0).all():
            return classes
        return np.where(classes < 0, self.top_class(tf.convert_to_tensor(images, tf.float32)).numpy(), classes)


def input_gradients(model_and_preprocess, score, guided: bool = False) -> InputGradients:
    """The :class:`InputGradients` of (model, preprocess, score, guided) from the model's bounded cache."""
    keras_model, preprocess = model_and_preprocess
    key = (function_key(preprocess), function_key(score), guided)
    return per_model_cache(keras_model, "guided" if guided else "input gradients").lookup(
        key, lambda: InputGradients(keras_model, preprocess, score, guided))
