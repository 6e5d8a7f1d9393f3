"""Adversarial examples: a change too small to see that changes the class (Szegedy et al., 2014).

Gradient ascent again, now on the LOSS of a photo, inside an L∞ ball of radius ε around it:

- FGSM (Goodfellow et al., 2015), one step: ``x' = clip(x + ε · sign(∇ₓ L(x, y)), valid range)``;
- PGD (Madry et al., 2018), ``steps`` steps of size α (default 2.5·ε/steps), each followed by the projection
  back onto the ball and the valid range: ``x ← clip(clip(x + α·sign(∇ₓ L), x₀ − ε, x₀ + ε), 0, 255)``;
  ``random_start``: begin at a uniform random point of the ball, as Madry et al.

Untargeted (``target_class=None``): push the true class y (default: the model's top class on the photo)
DOWN — ascend L = cross-entropy(logits, y). Targeted: pull the target t UP — ascend −cross-entropy(logits, t).
``loss="logit"`` uses the bare logit instead (−S_y, or S_t). ε is in the images' units: PIXELS for a
:class:`~cnnviz.ModelBundle` (ε = 2 means 2 of 255), a bare model's own input units otherwise. All steps run
in one compiled call, the batch as sub-batches side by side on the cores; classes and targets go in as
tensors (no retracing across targets or calls).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import tensorflow as tf

from ..checks import check_choice, check_count, check_flag, check_number
from .common import (PIXELS, cached, check_seed, compile_, gradients, network, per_image_classes, per_image_draws,
                     photos_in, split)

__all__ = ["Adversarial", "adversarial"]

LOSSES = ("cross_entropy", "logit")


class Adversarial(NamedTuple):
    """What :func:`adversarial` returns (one image given: the leading N dropped).

    images: (N, H, W, 3) float32 adversarial images, within ε of the photos and in ``bounds``. perturbation:
    images − photos. before / after: (N,) the model's top class on the photo / on the adversarial image.
    target: (N,) the target class (−1: untargeted). source: (N,) the class pushed down (untargeted: the true
    class, default ``before``; targeted: −1). success: (N,) bool — untargeted: after ≠ source; targeted:
    after = target. probability_before / probability_after: (N,) the model's probability of ``before`` on the
    photo / of ``after`` on the adversarial image. history: (steps, N) the ascended loss at each step.
    """

    images: np.ndarray
    perturbation: np.ndarray
    before: np.ndarray
    after: np.ndarray
    target: np.ndarray
    source: np.ndarray
    success: np.ndarray
    probability_before: np.ndarray
    probability_after: np.ndarray
    history: np.ndarray


class _Attack:
    def __init__(self, net):
        self.net = net
        self.run = compile_(self._run)

    def objective(self, images, classes, sign, logit_loss):
        """(N,) the loss each image ascends: sign · CE(logits, class), or −sign · logit (sign +1: push ``classes``
        down, −1: pull them up)."""
        logits = self.net(images)[1]
        cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(classes, logits)
        return tf.where(logit_loss, -sign * tf.gather(logits, classes, batch_dims=1), sign * cross_entropy)

    def _run(self, photos, start, classes, targeted, epsilon, step, steps, low, high, logit_loss, sub_batch):
        """``steps`` signed-gradient steps from ``start``, each projected onto the ε-ball and [low, high];
        ``classes`` (N,): the target (targeted) or the true class."""
        sign = tf.where(targeted, -1.0, 1.0) * tf.ones(tf.shape(classes), tf.float32)
        lower, upper = tf.maximum(photos - epsilon, low), tf.minimum(photos + epsilon, high)
        images = tf.clip_by_value(start, lower, upper)
        history = tf.TensorArray(tf.float32, size=steps)
        for i in tf.range(steps):
            loss, grads = gradients(lambda x, c, s: self.objective(x, c, s, logit_loss), images,
                                              (classes, sign), sub_batch)
            images = tf.clip_by_value(images + step * tf.sign(grads), lower, upper)
            history = history.write(i, loss)
        return images, history.stack()


def adversarial(model, images, target_class=None, epsilon: float = 2.0, steps: int = 10, step: float | None = None,
                true_class=None, loss: str = "cross_entropy", random_start: bool = False, seed: int = 0,
                bounds=PIXELS) -> Adversarial:
    """Adversarial versions of ``images`` (H, W, 3) or (N, H, W, 3), batched.

    target_class: None (untargeted: make the model stop saying ``true_class``, default its top class on each
    photo), an int (every image) or one per image. epsilon: the L∞ budget in the images' units (pixels for a
    bundle). steps: 1 is FGSM, more is PGD with ``step`` (None: 2.5·ε/steps, Madry et al.) and the projection
    after each. loss: "cross_entropy" or "logit". random_start: a uniform start in the ε-ball (per ``seed``).
    bounds: the valid range, (0, 255) for pixels (checked on the images; a bare model: its input's, or None).
    Returns :class:`Adversarial`: images, perturbation, classes before and after, success per image, ….
    """
    keras_model, preprocess, batch, single, low, high = photos_in(model, images, bounds)
    epsilon = check_number("epsilon", epsilon, 0, low_open=True)
    steps, seed = check_count("steps", steps), check_seed(seed)
    step = 2.5 * epsilon / steps if step is None else check_number("step", step, 0, low_open=True)
    loss = check_choice("loss", loss, LOSSES)
    random_start = check_flag("random_start", random_start)
    net = network(keras_model, preprocess, (), logits=True)
    n, targeted = len(batch), target_class is not None
    if targeted and true_class is not None:
        raise ValueError("give target_class (a targeted attack) or true_class (untargeted), not both")
    given = target_class if targeted else true_class
    classes = np.full(n, -1, "int32") if given is None else per_image_classes(
        "target_class" if targeted else "true_class", given, n, net.num_classes)
    start = batch
    if random_start:
        start = batch + per_image_draws(seed, n, 4, lambda rng: rng.uniform(-epsilon, epsilon, batch.shape[1:]))
    attack = cached(keras_model, "dreams.adversarial", net, lambda: _Attack(net))
    rows = np.arange(n)
    probabilities = net.run(batch)[2]
    before = probabilities.argmax(axis=1).astype("int32")
    classes = np.where(classes < 0, before, classes).astype("int32")
    adv, history = attack.run(tf.constant(batch), tf.constant(start), tf.constant(classes), tf.constant(targeted),
                              tf.constant(epsilon, tf.float32), tf.constant(step, tf.float32), tf.constant(steps),
                              tf.constant(low, tf.float32), tf.constant(high, tf.float32),
                              tf.constant(loss == "logit"), split(n))
    adv, history = adv.numpy(), history.numpy()
    after_probabilities = net.run(adv)[2]
    after = after_probabilities.argmax(axis=1).astype("int32")
    p_before, p_after = probabilities[rows, before], after_probabilities[rows, after]
    success = after == classes if targeted else after != classes
    minus = np.full(n, -1, "int32")
    out = Adversarial(adv, adv - batch, before, after, classes if targeted else minus,
                      minus if targeted else classes, success, p_before, p_after, history)
    if single:
        return Adversarial(*(value[0] for value in out[:9]), history[:, 0])
    return out
