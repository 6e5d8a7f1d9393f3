"""Benchmark: filter visualisation three ways, side by side in one run (issue 4).

The same filters, steps and size: (1) the classic per-filter loop in eager mode (the seed's way),
(2) the same per-filter loop compiled with tf.function, (3) visualize_filters: all filters as one batch
in one compiled loop. Goal: (3) ≥ 25× faster than (1) and ≥ 3× faster than (2), reaching comparable
activation (same objective). Eager is slow (~5 s a filter), so by default it runs on a subset of
filters and its per-filter time is extrapolated — printed as such.

    .venv/bin/python benchmarks/bench_filters.py [--layer block4a_expand_bn] [--filters 64] [--eager 8]
"""
import argparse
import os
import time

import cnnviz  # noqa: F401  (before TensorFlow: quiet logs)
import numpy as np
import tensorflow as tf

from cnnviz.filters import visualize_filters


def per_filter(bundle, layer, filters, args):
    """The classic loop: one filter at a time; returns (seconds, final activation per filter)."""
    start = time.perf_counter()
    results = [visualize_filters(bundle, layer, [f], args.size, args.steps, progress=False) for f in filters]
    return time.perf_counter() - start, np.array([r.activation[0] for r in results])


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
    print(f"{args.layer}: {args.filters} filters, {args.steps} steps, {args.size}×{args.size}, "
          f"{os.cpu_count()} cores, TF_ENABLE_ONEDNN_OPTS={os.environ['TF_ENABLE_ONEDNN_OPTS']} "
          "(cnnviz's default 0 keeps imports quiet; 1 is faster)")

    # Warm-ups (tracing) are not timed: one short run per batch shape.
    visualize_filters(bundle, args.layer, [0], args.size, steps=1, progress=False)
    visualize_filters(bundle, args.layer, filters, args.size, steps=1, progress=False)

    tf.get_logger().setLevel("ERROR")  # eager map_fn warns that its parallel_iterations do nothing
    tf.config.run_functions_eagerly(True)
    eager_time, eager_act = per_filter(bundle, args.layer, filters[:args.eager], args)
    tf.config.run_functions_eagerly(False)
    eager_per_filter = eager_time / args.eager
    compiled_time, compiled_act = per_filter(bundle, args.layer, filters, args)
    start = time.perf_counter()
    batched = visualize_filters(bundle, args.layer, filters, args.size, args.steps, progress=False)
    batched_time = time.perf_counter() - start

    eager_total = eager_per_filter * args.filters
    print(f"eager per-filter loop    {eager_per_filter:7.2f} s/filter  → {eager_total:7.1f} s for {args.filters} "
          f"(EXTRAPOLATED from {args.eager} filters timed)")
    print(f"compiled per-filter loop {compiled_time / args.filters:7.2f} s/filter  → {compiled_time:7.1f} s")
    print(f"batched compiled         {batched_time / args.filters:7.2f} s/filter  → {batched_time:7.1f} s")
    print(f"speed-up batched vs eager:    {eager_total / batched_time:6.1f}×  (goal ≥ 25×)")
    print(f"speed-up batched vs compiled: {compiled_time / batched_time:6.1f}×  (goal ≥ 3×)")
    print(f"speed-up compiled vs eager:   {eager_total / compiled_time:6.1f}×")

    print("\nfinal mean activation per filter (same objective, same start per filter):")
    print("filter   eager  per-filter  batched")
    for f in filters:
        eager = f"{eager_act[f]:7.3f}" if f < args.eager else "      -"
        print(f"{f:6d} {eager} {compiled_act[f]:11.3f} {batched.activation[f]:8.3f}")
    difference = np.abs(batched.activation - compiled_act) / (np.abs(compiled_act) + 1e-6)
    print(f"mean: per-filter {compiled_act.mean():.3f}, batched {batched.activation.mean():.3f}; "
          f"median relative difference {np.median(difference):.2e}, max {difference.max():.2e}")


if __name__ == "__main__":
    main()
