"""Sanity check by cascading randomisation: does the map change when the model does? (notebook 06)

:func:`cascading_randomization` (Adebayo et al. 2018, "Sanity checks for saliency maps"):
re-initialise the weights block by block from the top, recompute the map, and measure its Spearman
rank correlation with the original map. A map that explains the MODEL must change (ρ → 0). The
user's model is never modified: one clone is randomised in place.
"""
from __future__ import annotations

import dataclasses
import warnings
from typing import NamedTuple

import keras
import numpy as np
from scipy import stats

from ..checks import check_seed
from ..images import as_batch
from ..layers import _walk
from ..methods import EmptyMapWarning, gradcam
from ..models import ModelBundle, unwrap
from .maps import classes_of, probabilities

__all__ = ["CascadeStep", "cascading_randomization"]


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
    flattened maps (a constant map gives 0; a blank map of a randomised network is no warning).
    Returns [CascadeStep("original", ones), …], one per block.
    The data-randomisation variant of the paper is not implemented, nor SSIM (it would make scikit-image
    a runtime dependency; rank correlation is the paper's main measure).
    """
    seed = check_seed("seed", seed)
    batch, _ = as_batch(images)
    keras_model, _ = unwrap(model)
    classes = classes_of(class_index, probabilities(model, batch))
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
        with warnings.catch_warnings():  # a randomised network's blank map is an outcome of the test (ρ = 0)
            warnings.simplefilter("ignore", EmptyMapWarning)
            maps = np.asarray(method(randomised, batch, **options))
        steps.append(CascadeStep(block, _spearman(original, maps)))
    return steps
