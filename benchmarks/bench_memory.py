"""Does anything grow without bound? RSS growth per step, in this fresh process.

    .venv/bin/python benchmarks/bench_memory.py [explorer|lambdas|filters|all] [--layers N] [--sweeps 2]

- explorer: a ClassExplorer sweeps every spatial layer of Lite0 (140), ``--sweeps`` times; prints RSS
  and time per new layer, the total growth per sweep, and the class-switch time (median of 20).
  Goal: first sweep < 300 MiB, second sweep < 50 MiB more, class switch < 50 ms.
- lambdas: 30 ``gradcam(..., score=lambda out: out[:, 3])`` calls, a NEW lambda each. Goal: < 100 MiB.
- filters: ``visualize_filters`` on 10 different layers (classic, then robust).

Old code side by side: ``PYTHONPATH=/path/to/old/checkout python benchmarks/bench_memory.py``.
"""
import argparse
import gc
import statistics
import time

import cnnviz

MIB = 2 ** 20


def rss() -> float:
    """This process's resident set size in MiB (Linux /proc; psutil elsewhere)."""
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024
    except OSError:
        import psutil
        return psutil.Process().memory_info().rss / MIB


def explorer_sweeps(bundle, layers: int | None, sweeps: int, verbose: bool):
    explorer = cnnviz.ClassExplorer(bundle)
    names = [info.name for info in cnnviz.conv_layers(bundle)]
    names = names[::max(1, len(names) // layers)][:layers] if layers else names
    print(f"explorer: {len(names)} layers × {sweeps} sweeps (cnnviz from {cnnviz.__file__})")
    gc.collect()
    start = rss()
    times = []
    for sweep in range(sweeps):
        before, peak = rss(), 0.0
        for name in names:
            t = time.perf_counter()
            explorer.layer_picker.value = name
            times.append(time.perf_counter() - t)
            peak = max(peak, rss() - start)
            if verbose:
                print(f"  sweep {sweep + 1} {name:<28} {rss() - before:+8.1f} MiB  {1000 * times[-1]:7.0f} ms")
        gc.collect()
        print(f"sweep {sweep + 1}: {rss() - before:+.1f} MiB over {len(names)} layers "
              f"({(rss() - before) / len(names):+.2f} MiB per layer), median {1000 * statistics.median(times):.0f} ms "
              f"per new layer, total since start {rss() - start:+.1f} MiB (peak {peak:+.1f})")
    switches = []
    for i in range(20):
        t = time.perf_counter()
        explorer.class_picker.value = explorer.best[i % len(explorer.best)]
        switches.append(time.perf_counter() - t)
    print(f"class switch: median {1000 * statistics.median(switches):.1f} ms over 20 (a new layer: median "
          f"{1000 * statistics.median(times):.0f} ms)")


def lambdas(bundle, calls: int, verbose: bool):
    photo = cnnviz.load_image("cat", size=bundle.input_size)
    cnnviz.gradcam(bundle, photo)  # the model's first compiled function, outside the count
    gc.collect()
    before, t0 = rss(), time.perf_counter()
    for i in range(calls):
        t = time.perf_counter()
        cnnviz.gradcam(bundle, photo, score=lambda out: out[:, 3])
        if verbose:
            print(f"  call {i + 1:2d} {rss() - before:+8.1f} MiB  {1000 * (time.perf_counter() - t):7.0f} ms")
    gc.collect()
    print(f"lambdas: {calls} calls, a new lambda each: {rss() - before:+.1f} MiB, {time.perf_counter() - t0:.1f} s")
    before, t0 = rss(), time.perf_counter()
    for i in range(calls):  # different closures: must NOT share a compiled function
        cnnviz.gradcam(bundle, photo, score=(lambda k: lambda out: out[:, k])(i))
    gc.collect()
    print(f"lambdas: {calls} calls, a new closure (class i) each: {rss() - before:+.1f} MiB, "
          f"{time.perf_counter() - t0:.1f} s")


def filters(bundle, count: int, verbose: bool):
    names = [info.name for info in cnnviz.conv_layers(bundle) if info.name.endswith("_bn")]
    names = names[::max(1, len(names) // count)][:count]
    for robust in (False, True):
        gc.collect()
        before, t0 = rss(), time.perf_counter()
        for name in names:
            t = time.perf_counter()
            cnnviz.visualize_filters(bundle, name, filters=range(4), size=64, steps=10, robust=robust, progress=False)
            if verbose:
                print(f"  {name:<28} {rss() - before:+8.1f} MiB  {1000 * (time.perf_counter() - t):7.0f} ms")
        gc.collect()
        print(f"filters{' robust' if robust else ''}: {len(names)} layers: {rss() - before:+.1f} MiB, "
              f"{time.perf_counter() - t0:.1f} s")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", nargs="?", default="all", choices=["explorer", "lambdas", "filters", "all"])
    parser.add_argument("--layers", type=int, default=None, help="explorer: sweep this many layers (default all)")
    parser.add_argument("--sweeps", type=int, default=2)
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--quiet", action="store_true", help="totals only, no line per step")
    args = parser.parse_args()
    bundle = cnnviz.load_model()
    print(f"start: {rss():.0f} MiB")
    if args.what in ("explorer", "all"):
        explorer_sweeps(bundle, args.layers, args.sweeps, not args.quiet)
    if args.what in ("lambdas", "all"):
        lambdas(bundle, args.calls, not args.quiet)
    if args.what in ("filters", "all"):
        filters(bundle, 10, not args.quiet)


if __name__ == "__main__":
    main()
