"""Benchmark: filter visualisation timed four ways, side by side in one run (issue 4).

The same filters, steps, size and objective (mean activation of the filter, gradient normalised by
its RMS + 1e-5, grey-noise start, step 1):

1. the seed's classic per-filter loop, eager — Deep Learning with Python's ``K.gradients`` /
   ``K.function`` recipe in its TF2 form: a ``GradientTape`` step called from a Python loop;
2. the same loop with the step compiled by ``tf.function`` (what ``K.function`` did in TF1);
3. cnnviz one filter at a time (``generate_pattern``): every cnnviz optimisation except batching;
4. ``visualize_filters``: all filters as one batch in one compiled loop.

Goals: (4) ≥ 25× faster than (1) and ≥ 3× faster than (2). (3)/(4) is what batching alone buys.
Eager is slow (~3 s a filter), so by default it runs on a subset of filters and its per-filter time
is extrapolated — printed as such.

    .venv/bin/python benchmarks/bench_filters.py [--layer block4a_expand_bn] [--filters 64] [--eager 8]
"""
import argparse
import os
import time

import cnnviz  # noqa: F401  (before TensorFlow: quiet import)
import keras
import numpy as np
import tensorflow as tf

from cnnviz.filters import grey_noise, visualize_filters
from cnnviz.models import unwrap


def seed_loop(bundle, layer_name, compiled):
    """The seed's recipe: returns pattern(filter_index) → final mean activation of that filter."""
    model, preprocess = unwrap(bundle)
    feature_extractor = keras.Model(model.inputs, model.get_layer(layer_name).output)

    def loss_of(image, filter_index):  # TF1: loss = K.mean(layer_output[:, :, :, filter_index])
        return tf.reduce_mean(feature_extractor(preprocess(image))[..., filter_index])

    def iterate(image, filter_index):  # TF1: K.function([model.input], [loss, grads])
        with tf.GradientTape() as tape:  # TF1: grads = K.gradients(loss, model.input)[0]
            tape.watch(image)
            loss = loss_of(image, filter_index)
        grads = tape.gradient(loss, image)
        return loss, grads / (tf.sqrt(tf.reduce_mean(tf.square(grads))) + 1e-5)

    if compiled:
        iterate, loss_of = tf.function(iterate), tf.function(loss_of)

    def pattern(filter_index, size, steps, seed=0):
        image = grey_noise((size, size), seed, filter_index)[None]  # random * 20 + 128, as in cnnviz
        for _ in range(steps):
            _, grads = iterate(tf.constant(image), tf.constant(filter_index))
            image += 1.0 * grads.numpy()
        return float(loss_of(tf.constant(image), tf.constant(filter_index)))  # forward only, as cnnviz

    return pattern


def timed(function, filters):
    start = time.perf_counter()
    activations = np.array([function(f) for f in filters])
    return time.perf_counter() - start, activations


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layer", default="block4a_expand_bn")
    parser.add_argument("--filters", type=int, default=64)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--eager", type=int, default=8, help="filters timed in eager mode (extrapolated)")
    args = parser.parse_args()
    bundle = cnnviz.load_model()
    filters = list(range(args.filters))
    onednn = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "unset (TensorFlow's default: on for Linux x86-64)")
    print(f"{args.layer}: {args.filters} filters, {args.steps} steps, {args.size}×{args.size}, "
          f"{os.cpu_count()} cores, TF_ENABLE_ONEDNN_OPTS={onednn}")

    eager, compiled = seed_loop(bundle, args.layer, False), seed_loop(bundle, args.layer, True)

    def one_by_one(f):
        return visualize_filters(bundle, args.layer, [f], args.size, args.steps, progress=False).activation[0]

    # Warm-ups (tracing) are not timed.
    compiled(0, args.size, 1)
    visualize_filters(bundle, args.layer, [0], args.size, steps=1, progress=False)
    visualize_filters(bundle, args.layer, filters, args.size, steps=1, progress=False)

    eager_time, eager_act = timed(lambda f: eager(f, args.size, args.steps), filters[:args.eager])
    compiled_time, compiled_act = timed(lambda f: compiled(f, args.size, args.steps), filters)
    single_time, single_act = timed(one_by_one, filters)
    start = time.perf_counter()
    batched = visualize_filters(bundle, args.layer, filters, args.size, args.steps, progress=False)
    batched_time = time.perf_counter() - start

    eager_total = eager_time / args.eager * args.filters
    rows = [("1 seed loop, eager", eager_total, f"(EXTRAPOLATED from {args.eager} filters timed)"),
            ("2 seed loop, step compiled", compiled_time, ""),
            ("3 cnnviz, one filter at a time", single_time, ""),
            ("4 cnnviz batched", batched_time, "")]
    for name, seconds, remark in rows:
        print(f"{name:32s} {seconds / args.filters:6.3f} s/filter → {seconds:6.1f} s {remark}")
    print(f"batched vs seed eager:       {eager_total / batched_time:5.1f}×  (goal ≥ 25×)")
    print(f"batched vs seed compiled:    {compiled_time / batched_time:5.1f}×  (goal ≥ 3×)")
    print(f"batched vs cnnviz per filter: {single_time / batched_time:4.1f}×  (batching alone)")
    print(f"seed compiled vs seed eager: {eager_total / compiled_time:5.1f}×")

    print("\nfinal mean activation per filter (same objective, same start per filter):")
    print("filter   eager  compiled  per-filter  batched")
    for f in filters:
        eager_value = f"{eager_act[f]:7.3f}" if f < args.eager else "      -"
        print(f"{f:6d} {eager_value} {compiled_act[f]:9.3f} {single_act[f]:11.3f} {batched.activation[f]:8.3f}")
    difference = np.abs(batched.activation - compiled_act) / (np.abs(compiled_act) + 1e-6)
    print(f"mean: seed compiled {compiled_act.mean():.3f}, cnnviz per filter {single_act.mean():.3f}, batched "
          f"{batched.activation.mean():.3f}; batched vs seed: median relative difference {np.median(difference):.2e}, "
          f"max {difference.max():.2e}")


if __name__ == "__main__":
    main()
