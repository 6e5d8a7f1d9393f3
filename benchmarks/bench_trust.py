"""cnnviz.trust speed, side by side in one run on the bundled EfficientNet-Lite0, the cat photo at 224×224.

Deletion curve, 50 steps (51 images), Grad-CAM map, blur baseline:
(a) cnnviz.deletion_curve: the 51 images stacked, a compiled forward pass per chunk of BATCH_SIZE
(b) naive: one eager ``model(x)`` per step, as a loop over steps is usually written
(c) per-step loop, compiled (``predict_on_batch`` of one image per step)
                                         goal: (b) / (a) ≥ 5
Cascading randomisation (19 blocks of Lite0), Grad-CAM of the top class:
(d) cnnviz.cascading_randomization: ONE clone, re-initialised in place block by block (one compile)
(e) naive: a fresh clone per step, blocks re-initialised from the top, Grad-CAM recompiled each time
                                         goal: (e) / (d) ≥ 5
Both naive versions give the same numbers (checked). Medians of ``repeats`` runs of the fast versions.
Run: .venv/bin/python benchmarks/bench_trust.py [repeats]
"""
import dataclasses
import sys
import time

import cnnviz  # before TensorFlow: quiet logs

import keras  # noqa: E402
import numpy as np  # noqa: E402

from cnnviz import trust  # noqa: E402

STEPS = 50


def timed(function):
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def naive_deletion(bundle, image, heatmap, class_index, compiled: bool):
    """One forward pass per step; same ranking and baseline as cnnviz.deletion_curve."""
    height, width = image.shape[:2]
    ranked = trust._resized(heatmap[None], (height, width), 1)[0]
    order = np.argsort(-ranked.ravel(), kind="stable")
    blurred = trust._baseline(bundle, image[None], "blur")[0]
    scores = []
    for s in range(STEPS + 1):
        removed = order[:round(s / STEPS * height * width)]
        changed = image.reshape(-1, 3).copy()
        changed[removed] = blurred.reshape(-1, 3)[removed]
        x = bundle.preprocess(changed.reshape(1, height, width, 3))
        probabilities = bundle.model.predict_on_batch(x) if compiled else bundle.model(x, training=False)
        scores.append(float(keras.ops.convert_to_numpy(probabilities)[0, class_index]))
    return np.array(scores)


def naive_cascade(bundle, images, class_index, seed=0):
    """A new clone per step, re-initialised from the top down to the step's block (same seeds)."""
    original = cnnviz.gradcam(bundle, images, class_index=class_index)
    correlations = []
    for step in range(len(trust._blocks_top_down(bundle.model))):
        clone = keras.models.clone_model(bundle.model)
        clone.set_weights(bundle.model.get_weights())
        rng = np.random.default_rng(seed)
        for _, layers in trust._blocks_top_down(clone)[:step + 1]:
            for layer in layers:
                trust._reinitialise(layer, rng)
        maps = cnnviz.gradcam(dataclasses.replace(bundle, model=clone), images, class_index=class_index)
        correlations.append(trust._spearman(original, maps))
    return correlations


def main(repeats: int = 3):
    bundle = cnnviz.load_model()
    cat = cnnviz.load_image("cat", size=bundle.input_size, crop=0.875)
    heatmap = cnnviz.gradcam(bundle, cat)
    class_index = int(trust._probabilities(bundle, cat[None]).argmax())
    trust.deletion_curve(bundle, cat[None], heatmap[None], steps=STEPS)  # compile once, untimed
    naive_deletion(bundle, cat, heatmap, class_index, compiled=True)

    print(f"Deletion curve, {STEPS} steps ({STEPS + 1} images of 224×224), cat, Grad-CAM, blur baseline")
    fast = []
    for _ in range(repeats):
        seconds, (_, scores) = timed(lambda: trust.deletion_curve(bundle, cat[None], heatmap[None], steps=STEPS))
        fast.append(seconds)
    eager, eager_scores = timed(lambda: naive_deletion(bundle, cat, heatmap, class_index, compiled=False))
    compiled, _ = timed(lambda: naive_deletion(bundle, cat, heatmap, class_index, compiled=True))
    np.testing.assert_allclose(scores[0], eager_scores, atol=1e-4)
    batched = float(np.median(fast))
    print(f"  (a) batched deletion_curve         {batched:6.2f} s")
    print(f"  (b) eager per-step loop            {eager:6.2f} s   ratio (b)/(a) = {eager / batched:5.1f}×  "
          "(goal ≥ 5)")
    print(f"  (c) compiled per-step loop         {compiled:6.2f} s   ratio (c)/(a) = {compiled / batched:5.1f}×")
    for size in (8, 16, 32, 64):
        seconds, _ = timed(lambda: trust._probabilities(bundle, np.repeat(cat[None], STEPS + 1, 0), size))
        print(f"      forward of the 51 images in chunks of {size:2d}: {seconds:5.2f} s")

    print("Cascading randomisation, 19 blocks of Lite0, cat, Grad-CAM")
    in_place = []
    for _ in range(repeats):
        seconds, steps = timed(lambda: trust.cascading_randomization(bundle, cat[None], class_index=class_index))
        in_place.append(seconds)
    clone_each, correlations = timed(lambda: naive_cascade(bundle, cat[None], class_index))
    np.testing.assert_allclose([s.correlation for s in steps[1:]], correlations, atol=1e-5)
    cascade = float(np.median(in_place))
    print(f"  (d) one clone, in place            {cascade:6.2f} s")
    print(f"  (e) a clone per step               {clone_each:6.2f} s   ratio (e)/(d) = {clone_each / cascade:5.1f}×  "
          "(goal ≥ 5)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
