"""Nothing grows without bound (issue 11, part 4): compiled helpers live in small per-model LRU caches.

The growth tests run a fresh Python process each and read its RSS; their bounds are generous. The
full sweep over all 140 layers, with timings, is ``benchmarks/bench_memory.py``.
"""
import gc
import json
import os
import subprocess
import sys
import textwrap
import weakref
from pathlib import Path

import keras
import numpy as np
import pytest

import cnnviz
from cnnviz.caching import _PER_MODEL, LRUCache, function_key, per_model_cache
from cnnviz.taps import COMPILED

ROOT = Path(__file__).resolve().parents[1]

PRELUDE = """
import gc, json
import numpy as np
import cnnviz

def rss():
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024
    except OSError:
        import psutil
        return psutil.Process().memory_info().rss / 2 ** 20

def growth(action):
    gc.collect()
    before = rss()
    action()
    gc.collect()
    return rss() - before

bundle = cnnviz.load_model()
"""


def run_fresh(body: str, timeout: int = 900) -> tuple[dict, str]:
    """Run PRELUDE + body in a new Python (this checkout first on the path); → (its last stdout line as
    JSON, its stderr)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(body)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def test_explorer_layer_sweeps_stay_bounded_and_quiet():
    # 16 of the 140 layers, evenly spaced (the heavy early ones included), twice: ~4 s per new layer. With 4
    # compiled taps kept per model, each sweep evicts 12 and the second rebuilds every one.
    result, stderr = run_fresh("""
        explorer = cnnviz.ClassExplorer(bundle)
        names = [info.name for info in cnnviz.conv_layers(bundle)][::9][:16]
        def sweep():
            for name in names:
                explorer.layer_picker.value = name
        first, second = growth(sweep), growth(sweep)
        print(json.dumps({"first": first, "second": second, "layers": len(names),
                          "on_last": explorer.layer == names[-1] and explorer.heatmap.shape == (7, 7)}))
    """)
    assert result["layers"] == 16 and result["on_last"]
    assert result["first"] < 300, f"a sweep over 16 layers grew RSS by {result['first']:.0f} MiB"
    assert result["second"] < 50, f"a second sweep grew RSS by {result['second']:.0f} MiB more"
    assert stderr == "", f"printed during the sweeps: {stderr[:500]}"  # e.g. TF's "retracing" warnings


# Cheap settings: the test is about memory, not maps.
CHEAP = {"scorecam": {"channels": 8}, "smoothgrad": {"samples": 2}, "integrated_gradients": {"steps": 2},
         "occlusion": {"patch": 112, "stride": 112}, "rise": {"masks": 8}}


@pytest.fixture(scope="module")
def score_lambda_growth():
    """In one fresh process, for every method: 2 warm-up calls, then 30 calls each with a NEW score function
    (closures over 30 different classes, so no two could share anything by accident): RSS growth (MiB) of
    those 30 calls, and the 30 scores explained."""
    result, stderr = run_fresh(f"""
        import tensorflow as tf
        photo = cnnviz.load_image("cat", size=bundle.input_size, crop=0.875)
        cheap = {CHEAP!r}
        found = {{}}
        for name, method in cnnviz.METHODS.items():
            def call(c):
                raw = method.maps(bundle, photo[None], score=(lambda k: lambda p: tf.math.log(p[:, k]))(c),
                                  **cheap.get(name, {{}}))
                return float(raw.scores[0, 0])
            call(0), call(1)
            scores = []
            found[name] = {{"growth": growth(lambda: scores.extend(call(c) for c in range(270, 300))),
                            "distinct": len(set(scores))}}
        print(json.dumps(found))
    """)
    return result, stderr


@pytest.mark.parametrize("name", list(cnnviz.METHODS))
def test_a_new_score_function_per_call_stays_bounded(score_lambda_growth, name):
    """A custom score runs eagerly on the model's output, its gradient pulled back through one compiled
    graph: 30 new score functions per method compile nothing and keep nothing (was: guided backprop
    +15 MiB per call, +692 MiB after 45)."""
    result, stderr = score_lambda_growth
    assert result[name]["growth"] < 100, f"30 new score functions grew RSS by {result[name]['growth']:.0f} MiB"
    assert result[name]["distinct"] == 30, "each score function must explain its own class"
    assert stderr == "", stderr[:500]


def test_filters_over_ten_layers_stay_bounded():
    result, stderr = run_fresh("""
        names = [info.name for info in cnnviz.conv_layers(bundle) if info.name.endswith("_bn")][::4][:10]
        def visit(robust):
            for name in names:
                cnnviz.visualize_filters(bundle, name, filters=range(4), size=64, steps=10, robust=robust,
                                         progress=False)
        print(json.dumps({"classic": growth(lambda: visit(False)), "robust": growth(lambda: visit(True)),
                          "layers": len(names)}))
    """)
    assert result["layers"] == 10
    assert result["classic"] < 150, f"filters on 10 layers grew RSS by {result['classic']:.0f} MiB"
    assert result["robust"] < 150, f"robust filters on 10 layers grew RSS by {result['robust']:.0f} MiB"
    assert stderr == "", stderr[:500]


def test_lru_cache_drops_the_least_recently_used():
    cache = LRUCache(2)
    cache["a"], cache["b"] = 1, 2
    assert cache["a"] == 1  # a read is a use: "b" is now the oldest
    assert cache.lookup("c", lambda: 3) == 3 and list(cache) == ["a", "c"]
    assert cache.lookup("a", lambda: pytest.fail("must not rebuild a cached entry")) == 1
    with pytest.raises(ValueError, match="size >= 1, got 0"):
        LRUCache(0)


def test_compiled_cache_evicts_and_recomputes_the_same_maps(bundle, cat):
    layers = [info.name for info in cnnviz.conv_layers(bundle) if info.name.endswith("activation")][-COMPILED - 1:]
    first = cnnviz.gradcam(bundle, cat, layer=layers[0], class_index=None)
    cache = per_model_cache(bundle.model, "compiled", size=COMPILED)

    def entry(layer):
        return [key for key in cache if key[0] == (layer,)]
    evicted = cache[entry(layers[0])[0]]
    for layer in layers[1:]:
        cnnviz.gradcam(bundle, cat, layer=layer, class_index=None)
    assert len(cache) == COMPILED and not entry(layers[0])
    assert [key[0][0] for key in cache if key[0]][-COMPILED:] == layers[1:]
    again = cnnviz.gradcam(bundle, cat, layer=layers[0], class_index=None)
    assert cache[entry(layers[0])[0]] is not evicted  # rebuilt, and the same result
    np.testing.assert_allclose(again, first, atol=1e-6)
    assert again.shape == (7, 7) and again.max() == 1


def test_function_key_shares_only_provably_equal_functions():
    def picker(k):
        return lambda out: out[:, k]

    fixed = [lambda out: out[:, 3] for _ in range(2)]  # one code object, two functions (as in a loop)
    assert fixed[0] is not fixed[1] and function_key(fixed[0]) == function_key(fixed[1])
    assert function_key(picker(3)) == function_key(picker(3))
    assert function_key(picker(3)) != function_key(picker(4))
    assert function_key(picker(1)) != function_key(picker(True)) != function_key(picker(1.0))
    mutable = [3]
    first, second = (lambda out: out[:, mutable[0]]), (lambda out: out[:, mutable[0]])
    assert function_key(first) is first and function_key(first) != function_key(second)  # by identity
    assert function_key(None) is None


CLASS = 2


def test_function_key_sees_the_globals_a_function_reads():
    global CLASS
    score = lambda out: out[:, CLASS]  # noqa: E731
    before = function_key(score)
    CLASS = 1
    try:
        assert function_key(score) != before  # so a cached trace of CLASS = 2 is not reused
    finally:
        CLASS = 2


def _small_model():
    inputs = keras.Input((32, 32, 3))
    features = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(features))
    return keras.Model(inputs, outputs)


def test_a_model_and_its_caches_die_when_dropped():
    model = _small_model()
    images = np.random.default_rng(0).uniform(0, 1, (2, 32, 32, 3)).astype("float32")
    cnnviz.gradcam(model, images, layer="conv")
    cnnviz.visualize_filters(model, "conv", filters=[0, 1], size=32, steps=2, progress=False)
    assert {"compiled", "taps", "ascent"} <= set(_PER_MODEL[model])
    alive, models = weakref.ref(model), len(_PER_MODEL)
    del model
    gc.collect()
    assert alive() is None and len(_PER_MODEL) == models - 1


def test_tapping_a_model_leaves_its_layers_unchanged(bundle):
    """Keras records each symbolic call in the layer called: taps must not pile up there."""
    layers = [layer for layer in bundle.model.layers]
    before = [(len(layer._inbound_nodes), len(layer._outbound_nodes)) for layer in layers]
    for name in ("stem_conv", "block4a_bn", "top_activation"):
        cnnviz.tap_model(bundle, [name])
    cnnviz.gradcam(bundle, np.zeros((32, 32, 3)), score=lambda out, new=[]: out[:, 1])  # a new compiled function
    cnnviz.visualize_filters(bundle, "block2a_bn", filters=[0], size=32, steps=1, progress=False)
    assert [(len(layer._inbound_nodes), len(layer._outbound_nodes)) for layer in layers] == before


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="peak RSS reset is Linux-only")
def test_huge_jpeg_is_decoded_reduced(tmp_path):
    # An 8000×8000 JPEG read at 224×224: decoded at 1/8 scale (PIL draft), not in full (was +1.9 GiB, 4.7 s).
    from PIL import Image
    Image.new("RGB", (8000, 8000), (90, 140, 60)).save(tmp_path / "huge.jpg", quality=85)
    result, _ = run_fresh(f"""
        def peak():  # VmHWM: the process's peak RSS since the last reset, MiB
            with open("/proc/self/status") as status:
                return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024
        from cnnviz.images import load_image
        gc.collect()
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")  # reset the peak to the current RSS (Linux)
        start = rss()
        photo = load_image({str(tmp_path / "huge.jpg")!r}, size=(224, 224))
        print(json.dumps({{"peak_growth": peak() - start, "shape": list(photo.shape)}}))
    """)
    assert result["shape"] == [224, 224, 3]
    assert result["peak_growth"] < 300, result  # MiB


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="peak RSS reset is Linux-only")
def test_batch_size_caps_the_memory_of_pixel_methods():
    """SmoothGrad's noisy copies and IG's path points run ``batch_size`` at a time, whatever the number of
    images (was: a batch of N > batch_size images went through in one piece, peak 918 → 1350 MiB)."""
    result, _ = run_fresh("""
        def peak():
            with open("/proc/self/status") as status:
                return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024

        def peak_growth(action):
            gc.collect()
            with open("/proc/self/clear_refs", "w") as refs:
                refs.write("5")  # reset the peak to the current RSS (Linux)
            start = rss()
            action()
            return peak() - start

        photo = cnnviz.sample_photo("cat")
        cnnviz.smoothgrad(bundle, photo, samples=8, batch_size=8)  # compile first
        one = peak_growth(lambda: cnnviz.smoothgrad(bundle, photo, samples=8, batch_size=8))
        many = peak_growth(lambda: cnnviz.smoothgrad(bundle, np.stack([photo] * 12), samples=8, batch_size=8))
        path = peak_growth(lambda: cnnviz.integrated_gradients(bundle, np.stack([photo] * 12), steps=8,
                                                               batch_size=8))
        print(json.dumps({"one": one, "many": many, "path": path}))
    """)
    assert result["many"] < result["one"] + 150, result  # 12 images × 8 samples: same peak as 1 × 8, MiB
    assert result["path"] < result["one"] + 150, result
