"""Pixel methods: gradients of the class logit y with respect to the image x itself (notebook 05).

Each is a set of input POINTS per explanation and a reduction of the gradients ∂y/∂x there
(:class:`GradientsAtPoints`); x is the image as given (pixels for a :class:`~cnnviz.ModelBundle`: the
preprocessing runs inside the compiled graph). Points run ``batch_size`` at a time, whatever the number
of images, and each point's noise or path position depends only on (seed, point): the same seed gives
the same map alone or in a batch, at any ``batch_size``.

- saliency (Simonyan et al. 2014): one point, x; S = max_colour |∂y/∂x|;
- SmoothGrad (Smilkov et al. 2017): x + ε_s, ε_s ~ N(0, σ²), σ = noise · (max x − min x);
  S = max_colour 1/n Σ_s |∂y/∂x(x + ε_s)| (``absolute=False``: the paper's |1/n Σ_s ∂y/∂x|);
- Integrated Gradients (Sundararajan et al. 2017): x' + α_s (x − x'), α_s = (s + ½)/m (midpoint rule);
  IG = Σ_colour (x − x') ⊙ 1/m Σ_s ∂y/∂x — signed, Σ IG ≈ y(x) − y(x') ("completeness");
- guided backprop (Springenberg et al. 2015): one point through the guided clone (:mod:`cnnviz.guided`);
- guided Grad-CAM (Selvaraju et al. 2017): guided backprop ⊙ the Grad-CAM map upsampled to the image.
"""
from __future__ import annotations

import numpy as np

from ..checks import check_count, check_flag, check_number, check_seed
from ..heatmaps import normalise, upsample
from ..targets import check_scores
from .base import InputMethod, LayerMethod, Raw, Request
from .cams import GradCAM

__all__ = ["GradientsAtPoints", "GuidedBackprop", "GuidedGradCAM", "IntegratedGradients", "Saliency",
           "SmoothGrad", "point_chunks"]

BATCH = ("batch_size", (8, check_count))  # points per compiled call (memory: ~40 MB each on Lite0 at 224²)


def point_chunks(explanations: int, points: int, batch_size: int):
    """(explanation, point) index arrays in chunks of ``batch_size``, point-major (all explanations' point
    0 first), so a chunk needs few distinct points' noise."""
    pairs = np.stack(np.meshgrid(np.arange(points), np.arange(explanations), indexing="ij"), -1).reshape(-1, 2)
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start:start + batch_size]
        yield chunk[:, 1], chunk[:, 0]


class GradientsAtPoints(InputMethod):
    """Σ over points of ∂y/∂x (or |∂y/∂x|): a subclass says how many points, where, and how to reduce."""

    guided = False  # through the guided-backprop clone
    at_image = False  # the one point is the image itself: one pass finds the class and its gradient

    def accumulated(self, gradients, options) -> np.ndarray:
        """What of each point's gradients (B, H, W, C) is summed: the gradients themselves."""
        return gradients

    def count(self, options) -> int:
        return 1

    def points(self, images, indices, options, context) -> np.ndarray:
        """(B, H, W, C) input points: point ``indices[b]`` of image ``images[b]``."""
        return images

    def reduce(self, total, image, count: int, options, context) -> np.ndarray:
        """The map (H, W) from the sum of ``count`` points' gradients (H, W, C)."""
        return np.abs(total).max(axis=-1)

    def prepare(self, request: Request, options) -> dict:
        """Per-call values the points need (noise scale, baselines)."""
        return {}

    def compute(self, request: Request, batch_size, **options) -> Raw:
        if request.target.k > 1 and request.target.score is not None:
            raise ValueError(f"{self.name} explains one score per image; give a score of shape (N,)")
        functions = request.compiled(guided=self.guided)
        if self.at_image:
            return self._at_image(request, functions, batch_size, options)
        classes, scores, logits = (t.numpy() for t in functions.scores(request.images, request.classes))
        check_scores(scores)  # before any arithmetic on them
        n, k = classes.shape
        image_of = np.repeat(np.arange(n), k)  # explanation m = (image m // k, class slot m % k)
        count, context = self.count(options), self.prepare(request, options)
        totals = np.zeros((n * k, *request.images.shape[1:]), "float32")
        for explanation, point in point_chunks(n * k, count, batch_size):
            images = request.images[image_of[explanation]]
            context["image_index"] = image_of[explanation]
            x = self.points(images, point, options, context)
            gradients = functions.input_gradients(x, classes.reshape(-1, 1)[explanation])[0].numpy()
            np.add.at(totals, explanation, self.accumulated(gradients, options))
        context["image_index"] = image_of
        maps = [self.reduce(total, request.images[i], count, options, {**context, "image": i})
                for total, i in zip(totals, image_of)]
        return Raw(np.stack(maps).reshape(n, k, *request.images.shape[1:3]), classes, scores, logits)


    def _at_image(self, request: Request, functions, batch_size: int, options) -> Raw:
        """The gradients at the images themselves, k classes per image, ``batch_size`` at a time."""
        n, k = request.classes.shape
        image_of = np.repeat(np.arange(n), k)
        wanted = request.classes.reshape(-1, 1)
        found = [functions.input_gradients(request.images[image_of[start:start + batch_size]],
                                           wanted[start:start + batch_size])
                 for start in range(0, n * k, batch_size)]
        gradients, classes, scores, logits = (np.concatenate([part[i].numpy() for part in found]) for i in range(4))
        check_scores(scores)
        maps = [self.reduce(g, request.images[i], 1, options, {"image": i}) for g, i in zip(gradients, image_of)]
        return Raw(np.stack(maps).reshape(n, k, *request.images.shape[1:3]), classes.reshape(n, k),
                   scores.reshape(n, k), logits[::k])


class Saliency(GradientsAtPoints):
    """Vanilla gradient (Simonyan et al. 2014): S_ij = max_colour |∂y/∂x_ij|."""

    name, label, paper = "saliency", "saliency", "https://arxiv.org/abs/1312.6034"
    options = dict([BATCH])
    at_image = True


class GuidedBackprop(Saliency):
    """Guided backpropagation (Springenberg et al. 2015): max_colour |∂y/∂x| where every ReLU / ReLU6
    passes back only positive gradients where it was active (R_in = R_out · [x > 0] · [R_out > 0];
    ReLU6: also x < 6). On a clone sharing the model's layers: the model's own gradients are unchanged.
    (captum and pytorch-grad-cam gate nn.ReLU only: on a ReLU6 network they return plain saliency.)"""

    name, label, paper = "guided_backprop", "guided backprop", "https://arxiv.org/abs/1412.6806"
    guided = True


class SmoothGrad(GradientsAtPoints):
    """SmoothGrad (Smilkov et al. 2017): saliency averaged over ``samples`` noisy copies of the image::

        S = max_colour 1/n Σ_s |∂y/∂x (x + ε_s)|,   ε_s ~ N(0, σ²),  σ = noise · (max x − min x) per image

    Averaging the magnitude (``absolute=True``, as tf-keras-vis and captum's NoiseTunnel with
    ``abs=True``) is a variant; the paper averages the signed gradient (``absolute=False``:
    S = max_colour |1/n Σ_s ∂y/∂x|). The class is the clean image's. Noise ε_s is drawn from
    ``numpy.random.default_rng([seed, s])``: per sample, the same for every image and any ``batch_size``
    (seed None: fresh noise each call).
    """

    name, label, paper = "smoothgrad", "SmoothGrad", "https://arxiv.org/abs/1706.03825"
    costly = True
    options = {"samples": (20, check_count), "noise": (0.1, lambda n, v: check_number(n, v, 0)),
               "seed": (0, check_seed), "absolute": (True, check_flag), BATCH[0]: BATCH[1]}
    explorer_options, explorer_note = {"samples": 16}, "16 samples"

    def accumulated(self, gradients, options) -> np.ndarray:
        return np.abs(gradients) if options["absolute"] else gradients

    def count(self, options) -> int:
        return options["samples"]

    def prepare(self, request: Request, options) -> dict:
        seed = options["seed"]
        seed = int(np.random.SeedSequence().entropy % 2 ** 31) if seed is None else seed
        images = request.images
        sigma = options["noise"] * (images.max(axis=(1, 2, 3)) - images.min(axis=(1, 2, 3)))
        return {"seed": seed, "sigma": sigma.astype("float32")}

    def points(self, images, indices, options, context) -> np.ndarray:
        noise = {s: np.random.default_rng([context["seed"], int(s)]).standard_normal(images.shape[1:], "float32")
                 for s in np.unique(indices)}
        sigma = context["sigma"][context["image_index"]]
        return images + sigma[:, None, None, None] * np.stack([noise[s] for s in indices])

    def reduce(self, total, image, count: int, options, context) -> np.ndarray:
        return np.abs(total / count).max(axis=-1)


class IntegratedGradients(GradientsAtPoints):
    """Integrated Gradients (Sundararajan et al. 2017), summed over colour: (H, W) SIGNED attributions::

        IG_ij = Σ_colour (x − x') ⊙ 1/m Σ_s ∂y/∂x (x' + α_s (x − x')),  α_s = (s + ½)/m,  s = 0 … m−1

    so that Σ_ij IG_ij ≈ y(x) − y(x') (completeness; the midpoint rule's error shrinks with ``steps`` = m,
    not monotonically on a ReLU6 network: on Lite0 29% at 32 steps, 0.4% at 128). ``baseline`` x': in
    the images' space (pixels for a ModelBundle), broadcastable to the images; None → zeros (black).
    Not normalised by default (``normalize=True``: its positive part ÷ max, like the other methods).
    """

    name, label, paper = "integrated_gradients", "Integrated Gradients", "https://arxiv.org/abs/1703.01365"
    signed = costly = True
    normalize_default = False
    options = {"steps": (128, check_count), "baseline": (None, lambda n, v: v), BATCH[0]: BATCH[1]}
    explorer_options, explorer_note = {"steps": 32}, "32 steps"

    def count(self, options) -> int:
        return options["steps"]

    def prepare(self, request: Request, options) -> dict:
        images, baseline = request.images, options["baseline"]
        array = np.zeros(images.shape[1:], "float32") if baseline is None else np.asarray(baseline, "float32")
        try:
            baselines = np.broadcast_to(array, images.shape).astype("float32")
        except ValueError:
            raise ValueError(f"baseline of shape {np.shape(baseline)} does not fit images of shape "
                             f"{images.shape[-3:]}: give one image, one per image, or a scalar") from None
        if not np.isfinite(baselines).all():
            raise ValueError("the baseline has NaN or infinite values: give finite pixels (e.g. zeros, a blur)")
        return {"baselines": baselines}

    def points(self, images, indices, options, context) -> np.ndarray:
        alphas = ((indices + 0.5) / options["steps"]).astype("float32")[:, None, None, None]
        baselines = context["baselines"][context["image_index"]]
        return baselines + alphas * (images - baselines)

    def reduce(self, total, image, count: int, options, context) -> np.ndarray:
        return ((image - context["baselines"][context["image"]]) * total / count).sum(axis=-1)


class GuidedGradCAM(LayerMethod):
    """Guided Grad-CAM (Selvaraju et al. 2017): guided backprop (fine detail) ⊙ the Grad-CAM map (which
    class), upsampled to the image with each cell on its receptive field's centre:
    G_ij = max_colour |guided ∂y/∂x_ij| · L_ij, (N, H, W)."""

    name, label, paper = "guided_gradcam", "guided Grad-CAM", "https://arxiv.org/abs/1610.02391"
    at_layer = False
    options = dict([BATCH])

    def compute(self, request: Request, batch_size) -> Raw:
        detail = GUIDED_BACKPROP.compute(request, batch_size=batch_size)
        coarse = GRAD_CAM.compute(request)
        where = upsample(normalise(coarse.maps), request.images.shape[1:3], request.keras_model, request.layer)
        return detail._replace(maps=detail.maps * where)


GRAD_CAM, GUIDED_BACKPROP = GradCAM(), GuidedBackprop()
