"""What a heatmap explains — plumbing: classes or a custom score, checked once for every method.

A target is either CLASSES, an (N, k) int matrix (k classes per image; ``-r`` means "the r-th best
class of this image", resolved inside the compiled graph), or a SCORE function of the model's
output, ``score(output) → (N,)`` (or (N, k) where several maps per image are asked for). Giving both
is a mistake, never silently resolved. Scores are checked twice: their shape and dtype when traced
on the model's symbolic output (before anything is compiled), their values (finite) after each run.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np
import tensorflow as tf

from .models import class_names

__all__ = ["Target", "check_scores", "class_label", "class_matrix", "make_target", "select_scores"]


def class_matrix(class_index, n: int, num_classes: int, top: int = 1) -> np.ndarray:
    """(n, k) int32 class indices, -r meaning "the r-th best": None → the ``top`` best (k = top); an int
    → (n, 1); n ints → one per image; for ONE image a list of k ints → its k classes; an (n, k) array."""
    if class_index is None:
        if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or not 1 <= top <= num_classes:
            raise ValueError(f"top must be a whole number between 1 and {num_classes}, got {top!r}")
        return np.tile(-np.arange(1, top + 1, dtype="int32"), (n, 1))
    classes = np.asarray(class_index)
    if classes.dtype == bool or not np.issubdtype(classes.dtype, np.integer):
        raise ValueError(f"class_index must be whole numbers (class indices 0 … {num_classes - 1}), "
                         f"got {class_index!r}")
    if classes.ndim == 0:
        classes = np.full((n, 1), classes)
    elif classes.ndim == 1:
        classes = classes[:, None] if len(classes) == n else classes[None]
    if classes.ndim != 2 or len(classes) != n or classes.shape[1] == 0:
        raise ValueError(f"class_index: give an int, {n} ints (one per image) or an ({n}, k) array; "
                         f"got shape {np.shape(class_index)}")
    bad = classes[(classes < 0) | (classes >= num_classes)]
    if bad.size:
        raise ValueError(f"class index {int(bad[0])} is out of range: the model has {num_classes} classes "
                         f"(0 … {num_classes - 1})")
    return classes.astype("int32")


def scores_per_image(score: Callable, output_shape) -> int:
    """k, when ``score`` maps the model's output (N, …) to float (N,) (k = 1) or (N, k); else a ValueError.

    Traced once on a symbolic output (no model run), so a wrong shape or dtype is reported before
    anything is compiled, in one line instead of a TensorFlow trace.
    """
    example = "Example: score=lambda output: output[:, 3]"
    if not callable(score):
        raise ValueError(f"score must be a function of the model's output, got {score!r}. {example}")
    spec = tf.TensorSpec(output_shape, tf.float32)
    try:
        traced = tf.function(score, autograph=False).get_concrete_function(spec)
    except Exception as error:  # noqa: BLE001 — any failure of the user's function, said in one line
        message = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        raise ValueError(f"score failed on the model's output {tuple(output_shape)}: {message}. {example}") from None
    results = tf.nest.flatten(traced.structured_outputs)
    result = results[0] if len(results) == 1 else None
    if isinstance(result, tf.Tensor) and not result.dtype.is_floating:
        raise ValueError(f"score must give floats, it gives {result.dtype.name} values: class scores are "
                         f"logits or probabilities (use tf.cast(..., tf.float32) if you mean it). {example}")
    shape = result.shape if isinstance(result, tf.Tensor) else None
    if shape is None or shape.rank not in (1, 2) or shape[0] is not None or None in shape[1:]:
        got = tuple(shape) if shape is not None else f"{len(results)} values" if len(results) != 1 else repr(result)
        raise ValueError(f"score must give one value per image, shape (N,) — or (N, k) for several maps per "
                         f"image — on the model's output {tuple(output_shape)}; it gives {got}. {example}")
    return 1 if shape.rank == 1 else int(shape[1])


class Target(NamedTuple):
    """classes: (N, k) int32 (-r = r-th best) when explaining classes, else None; score: the custom score
    function or None; k: maps per image."""

    classes: np.ndarray | None
    score: Callable | None
    k: int


def make_target(class_index, score, n: int, num_classes: int, output_shape, top: int = 1,
                several: bool = False) -> Target:
    """The target of ``n`` images. ``several``: k > 1 maps per image allowed (else one per image)."""
    if score is not None and class_index is not None:
        raise ValueError("give class_index or score, not both: a custom score picks its own target")
    if score is not None:
        k = scores_per_image(score, output_shape)
        classes = None
    else:
        classes = class_matrix(class_index, n, num_classes, top)
        k = classes.shape[1]
    if k > 1 and not several:
        what = f"{k} scores" if score is not None else f"{k} classes"
        raise ValueError(f"one map per image, but {what} per image were asked for: give one class (or a score "
                         "of shape (N,)) per image, or use cnnviz.explain_classes / gradcam_parts for several")
    return Target(classes, score, k)


def select_scores(logits, classes):
    """In-graph: (classes (N, k), logits picked (N, k)); ``classes`` (N, k), -r → the r-th best by logit."""
    ranked = tf.argsort(logits, axis=-1, direction="DESCENDING", stable=True)
    best = tf.gather(ranked, tf.maximum(-classes - 1, 0), batch_dims=1)
    classes = tf.where(classes < 0, best, classes)
    return classes, tf.gather(logits, classes, batch_dims=1)


def check_scores(scores, what: str = "score") -> np.ndarray:
    """``scores`` (N, k) as numpy, or a ValueError naming the images whose score is NaN or infinite (their
    map would be NaN, or silently all zero)."""
    scores = np.asarray(scores)
    bad = np.flatnonzero(~np.isfinite(scores).all(axis=tuple(range(1, scores.ndim))))
    if bad.size:
        raise ValueError(f"the {what} is NaN or infinite for image(s) {bad[:10].tolist()} "
                         f"(values {scores[bad[0]].ravel()[:3].tolist()}): there is nothing to explain; check "
                         "the score function or the model's output for those images")
    return scores


def class_label(index: int, num_classes: int) -> str:
    """"Egyptian_cat (285)" for an ImageNet model, the index otherwise; "score" for -1 (a custom score)."""
    if index < 0:
        return "the score"
    names = class_names()
    return f"{names[index]} ({index})" if num_classes == len(names) else f"class {index}"
