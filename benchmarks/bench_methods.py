"""Attribution methods' speed, side by side in one run on the bundled EfficientNet-Lite0, one 224×224 image.

For each method: cnnviz, its FLOOR (the minimal compiled work the method needs, nothing else), and
tf-keras-vis 0.8.7 where it has the method (optional: pip install "cnnviz[bench]"). Floors:
  gradient CAMs        one compiled forward + gradient to the layer (top_activation)
  CAM                  one compiled forward (no gradient at all)
  Score-CAM            one forward + one forward per channel, batched 32 at a time
  saliency, guided     one compiled forward + gradient to the input pixels
  SmoothGrad / IG      samples (steps) × forward + gradient to the input, in cnnviz's batches of 16
  occlusion            one forward per patch position (32 px patches every 16 px: 13 × 13 = 169), batched 32
  RISE                 one forward per mask (1000), batched 32
Goals (issues 13, J): gradient CAMs (Grad-CAM, Grad-CAM++, LayerCAM, HiResCAM) ≤ 1.3 × floor and ≥ 8 × faster
than tf-keras-vis; Score-CAM over all 1280 channels ≤ 1.3 × floor and ≥ 2 × faster than tf-keras-vis;
SmoothGrad ≥ 4 × faster than tf-keras-vis; IG, occlusion and RISE ≤ 1.3 × floor. tf-keras-vis runs on a logits model here (what cnnviz explains), CAMs not expanded to
the image size; then the TRAP: on Lite0 itself its default explains probabilities (the softmax is a
separate layer, which its ReplaceToLinear does not touch): the max difference of the maps is printed.
Each method is timed interleaved round-robin with its floor and tf-keras-vis, so machine load (and the
state of the CPU's caches) hits them alike; medians are printed.
Run: .venv/bin/python benchmarks/bench_methods.py [repeats]   (Score-CAM over all channels: 1 run)
"""
import sys
import time
import warnings

import cnnviz  # before TensorFlow: quiet logs

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from cnnviz.layers import tap_model  # noqa: E402
from cnnviz.models import class_names  # noqa: E402

LAYER, SAMPLES, NOISE, STEPS, BATCH = "top_activation", 20, 0.2, 128, 16
PATCH, STRIDE, MASKS, FORWARD_BATCH = 32, 16, 1000, 32
try:
    import tf_keras_vis  # noqa: F401
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
    from tf_keras_vis.layercam import Layercam
    from tf_keras_vis.saliency import Saliency
    from tf_keras_vis.scorecam import Scorecam
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
    from tf_keras_vis.utils.scores import CategoricalScore
except ImportError:
    tf_keras_vis = None


def floors(bundle):
    """The floors, compiled: forward; forward + gradient to the layer; forward + gradient to the input."""
    layer_tap, logits_tap = tap_model(bundle.model, [LAYER]), tap_model(bundle.model, [], "logits")

    @tf.function
    def forward(x):
        return logits_tap(x, training=False)[1]

    @tf.function
    def to_layer(x, class_index):
        with tf.GradientTape() as tape:
            (activations,), logits = layer_tap(x, training=False)
            score = tf.gather(logits, class_index, axis=1)
        return activations, tape.gradient(score, activations)  # both: else TF prunes the forward pass

    @tf.function
    def to_input(pixels, class_index):
        with tf.GradientTape() as tape:
            tape.watch(pixels)
            score = tf.reduce_sum(tf.gather(forward(bundle.preprocess(pixels)), class_index, axis=1))
        return tape.gradient(score, pixels)

    return forward, to_layer, to_input


def tf_keras_vis_methods(logits_model, x, class_index):
    """tf-keras-vis calls explaining the logits of ``class_index`` (model built once, as a user would)."""
    score = CategoricalScore([class_index])
    cam_options = dict(penultimate_layer=LAYER, seek_penultimate_conv_layer=False, expand_cam=False)
    gradcam, plus = Gradcam(logits_model, clone=False), GradcamPlusPlus(logits_model, clone=False)
    layercam, scorecam = Layercam(logits_model, clone=False), Scorecam(logits_model, clone=False)
    saliency = Saliency(logits_model, clone=False)
    return {
        "gradcam": lambda: gradcam(score, x, **cam_options),
        "gradcam_plus_plus": lambda: plus(score, x, **cam_options),
        "layercam": lambda: layercam(score, x, **cam_options),
        "scorecam_64": lambda: scorecam(score, x, max_N=64, **cam_options),
        "saliency": lambda: saliency(score, x),
        "smoothgrad": lambda: saliency(score, x, smooth_samples=SAMPLES, smooth_noise=NOISE),
    }, lambda: scorecam(score, x, **cam_options)


def median_ms(times):
    return 1000 * float(np.median(times))


def run(methods, repeats):
    """Warm up each, then time them interleaved; returns medians in ms."""
    for call in methods.values():
        call()
    times = {name: [] for name in methods}
    for _ in range(repeats):
        for name, call in methods.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return {name: median_ms(t) for name, t in times.items()}


def main(repeats=7):
    keras.utils.disable_interactive_logging()  # tf-keras-vis' Score-CAM calls predict(): no progress bars
    warnings.filterwarnings("ignore", message="The structure of `inputs`")  # tf-keras-vis passes lists
    bundle = cnnviz.load_model()
    image = cnnviz.load_image("cat", size=bundle.input_size, crop=0.875)
    x = tf.constant(bundle.preprocess(image[None]))
    pixels = tf.constant(image[None])
    c = int(np.argmax(bundle.model(x)))
    index = tf.constant(c)
    forward, to_layer, to_input = floors(bundle)
    noisy = tf.tile(pixels, (SAMPLES, 1, 1, 1))
    path = tf.tile(pixels, (BATCH, 1, 1, 1))
    channels = bundle.model.get_layer(LAYER).output.shape[-1]
    masked = tf.tile(x, (32, 1, 1, 1))

    def floor_scorecam(n):
        forward(x)
        return [forward(masked[:min(32, n - start)]).numpy() for start in range(0, n, 32)]

    def floor_forwards(n):  # n forward passes of changed images, FORWARD_BATCH at a time (occlusion, RISE)
        forward(x)
        return [forward(masked[:min(FORWARD_BATCH, n - start)]).numpy() for start in range(0, n, FORWARD_BATCH)]

    positions = len(range(0, 224 - PATCH + 1, STRIDE)) + (1 if (224 - PATCH) % STRIDE else 0)

    ours = {
        "cam": lambda: cnnviz.cam(bundle, image),
        "gradcam": lambda: cnnviz.gradcam(bundle, image),
        "gradcam_plus_plus": lambda: cnnviz.gradcam_plus_plus(bundle, image),
        "layercam": lambda: cnnviz.layercam(bundle, image),
        "hirescam": lambda: cnnviz.hirescam(bundle, image),
        "scorecam_64": lambda: cnnviz.scorecam(bundle, image, channels=64),
        "saliency": lambda: cnnviz.saliency(bundle, image),
        "smoothgrad": lambda: cnnviz.smoothgrad(bundle, image, samples=SAMPLES, noise=NOISE, batch_size=BATCH),
        "integrated_gradients": lambda: cnnviz.integrated_gradients(bundle, image, steps=STEPS, batch_size=BATCH),
        "guided_backprop": lambda: cnnviz.guided_backprop(bundle, image),
        "guided_gradcam": lambda: cnnviz.guided_gradcam(bundle, image),
        "occlusion": lambda: cnnviz.occlusion(bundle, image, patch=PATCH, stride=STRIDE, batch_size=FORWARD_BATCH),
        "rise": lambda: cnnviz.rise(bundle, image, masks=MASKS, batch_size=FORWARD_BATCH),
    }
    floor_of = {
        "cam": lambda: forward(x).numpy(),
        "gradient CAM": lambda: [t.numpy() for t in to_layer(x, index)],
        "scorecam_64": lambda: floor_scorecam(64),
        "saliency": lambda: to_input(pixels, index).numpy(),
        "smoothgrad": lambda: [to_input(noisy[s:s + BATCH], index).numpy() for s in range(0, SAMPLES, BATCH)],
        "integrated_gradients": lambda: [to_input(path, index).numpy() for _ in range(STEPS // BATCH)],
        "occlusion": lambda: floor_forwards(positions ** 2),
        "rise": lambda: floor_forwards(MASKS),
    }
    floors_used = {"cam": "cam", "gradcam": "gradient CAM", "gradcam_plus_plus": "gradient CAM",
                   "layercam": "gradient CAM", "hirescam": "gradient CAM", "scorecam_64": "scorecam_64",
                   "saliency": "saliency", "occlusion": "occlusion", "rise": "rise",
                   "smoothgrad": "smoothgrad", "integrated_gradients": "integrated_gradients",
                   "guided_backprop": "saliency", "guided_gradcam": "saliency"}
    logits_model = keras.Model(bundle.model.input, bundle.model.get_layer("logits").output)
    theirs, their_scorecam_all = tf_keras_vis_methods(logits_model, x, c) if tf_keras_vis else ({}, None)
    if tf_keras_vis:  # the same maths: cnnviz and tf-keras-vis agree on the logits model (before normalising:
        # tf-keras-vis min-max normalises, cnnviz divides by the maximum)
        raw = Gradcam(logits_model, clone=False)(CategoricalScore([c]), x, penultimate_layer=LAYER,
                                                 seek_penultimate_conv_layer=False, expand_cam=False,
                                                 normalize_cam=False)[0]
        raw = np.asarray(raw)
        same = np.abs(raw / raw.max() - cnnviz.gradcam(bundle, image)).max()

    heavy = {"smoothgrad", "integrated_gradients", "occlusion", "rise"}  # seconds each: fewer repeats
    measured = {}
    for name in ours:  # each method with its floor and tf-keras-vis, interleaved: the same machine state
        calls = {("cnnviz", name): ours[name], ("floor", name): floor_of[floors_used[name]]}
        if name in theirs:
            calls[("tf-keras-vis", name)] = theirs[name]
        measured.update(run(calls, max(1, repeats // 3) if name in heavy else repeats))
    # Score-CAM over all channels: once each (warm-up done above with 64 channels)
    all_channels = {("cnnviz", "scorecam_all"): lambda: cnnviz.scorecam(bundle, image),
                    ("floor", "scorecam_all"): lambda: floor_scorecam(channels)}
    if their_scorecam_all:
        all_channels[("tf-keras-vis", "scorecam_all")] = their_scorecam_all
    for key, call in all_channels.items():
        start = time.perf_counter()
        call()
        measured[key] = 1000 * (time.perf_counter() - start)

    print(f"Attribution methods on {bundle.name}, one 224×224 image, class {class_names()[c]}, "
          f"medians of {repeats} interleaved runs ({max(1, repeats // 3)} for SmoothGrad/IG/occlusion/RISE, 1 for "
          f"Score-CAM all {channels} channels); SmoothGrad {SAMPLES} samples noise {NOISE}, IG {STEPS} steps, batches "
          f"of {BATCH}; occlusion {PATCH} px patches every {STRIDE} px ({positions ** 2} positions), RISE {MASKS} "
          f"masks, {FORWARD_BATCH} forward passes at a time")
    if not tf_keras_vis:
        print("tf-keras-vis not installed (pip install 'cnnviz[bench]'): its column is empty")
    print(f"  {'method':<22} {'cnnviz':>9} {'floor':>9} {'tf-keras-vis':>13} {'cnnviz/floor':>13} {'tkv/cnnviz':>11}")
    for name in [*ours, "scorecam_all"]:
        ms = measured[("cnnviz", name)]
        floor = measured.get(("floor", name))
        theirs_ms = measured.get(("tf-keras-vis", name))
        if name == "guided_gradcam":  # guided backprop's floor measured with it, plus Grad-CAM's
            floor += measured[("floor", "gradcam")]
        print(f"  {name:<22} {ms:7.0f}ms {floor:7.0f}ms "
              f"{'' if theirs_ms is None else f'{theirs_ms:11.0f}ms':>13} {ms / floor:13.2f} "
              f"{'' if theirs_ms is None else f'{theirs_ms / ms:11.1f}':>11}")
    if tf_keras_vis:
        print(f"  (on the logits model tf-keras-vis' raw Grad-CAM / its max equals cnnviz's: max |difference| "
              f"{same:.1e})")
    print("goals")
    for name, floor_goal, speedup_goal in [("gradcam", 1.3, 8), ("gradcam_plus_plus", 1.3, 8), ("layercam", 1.3, 8),
                                           ("hirescam", 1.3, None), ("scorecam_all", 1.3, 2), ("smoothgrad", None, 4),
                                           ("integrated_gradients", 1.3, None), ("occlusion", 1.3, None),
                                           ("rise", 1.3, None)]:
        ms, floor = measured[("cnnviz", name)], measured[("floor", name)]
        line = f"  {name:<22}"
        if floor_goal:
            verdict = "met" if ms / floor <= floor_goal else "MISSED"
            line += f" cnnviz/floor {ms / floor:5.2f} ≤ {floor_goal}: {verdict}"
        theirs_ms = measured.get(("tf-keras-vis", name))
        if speedup_goal and theirs_ms:
            line += (f"   tf-keras-vis/cnnviz {theirs_ms / ms:5.1f} ≥ {speedup_goal}: "
                     f"{'met' if theirs_ms / ms >= speedup_goal else 'MISSED'}")
        print(line)
    if tf_keras_vis:
        trap(bundle)


def trap(bundle):
    """tf-keras-vis on Lite0 as its docs show it: ReplaceToLinear changes the last layer, here the separate
    Softmax layer, which has no activation to replace: the maps explain probabilities, not logits."""
    print("the tf-keras-vis trap: its default Gradcam / Saliency on Lite0 explain probabilities")
    for photo in ("cat", "coffee"):
        image = cnnviz.load_image(photo, size=bundle.input_size, crop=0.875)
        x = bundle.preprocess(image[None])
        probabilities = bundle.model(x).numpy()[0]
        c = int(np.argmax(probabilities))
        score = CategoricalScore([c])
        theirs = Gradcam(bundle.model, model_modifier=ReplaceToLinear(), clone=True)(
            score, x, penultimate_layer=LAYER, seek_penultimate_conv_layer=False, expand_cam=False)[0]
        theirs_saliency = Saliency(bundle.model, model_modifier=ReplaceToLinear(), clone=True)(score, x)[0]
        print(f"  {photo}: top class {class_names()[c]} p={probabilities[c]:.3f}: max |map difference| "
              f"Grad-CAM {np.abs(theirs - cnnviz.gradcam(bundle, image)).max():.2f}, "
              f"saliency {np.abs(theirs_saliency - cnnviz.saliency(bundle, image)).max():.2f} (maps in [0, 1])")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 7)
