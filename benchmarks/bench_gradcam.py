"""Grad-CAM speed, side by side in one run on the bundled EfficientNet-Lite0, one 224×224 image.

(a) floor: the bare compiled forward pass + gradient to the conv layer (nothing else)
(b) cnnviz.gradcam                       goal: ≤ 1.2 × (a)
(c) keras.io's make_gradcam_heatmap (grad model built and run eagerly on every call)
                                         goal: (b) ≥ 10 × faster than (c)
(d) cnnviz.gradcam_loop (TF1 form: numpy per-channel loop)
(e) cnnviz.gradcam_parts, top-5 classes of one image, one forward pass
                                         goal: ≤ 1.3 × (b)
Calls are interleaved round-robin so machine load hits all alike; medians are printed.
Run: .venv/bin/python benchmarks/bench_gradcam.py [repeats]
"""
import sys
import time

import cnnviz  # before TensorFlow: quiet logs

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from cnnviz.layers import tap_model  # noqa: E402

LAYER = "top_activation"


def make_gradcam_heatmap(img_array, model, last_conv_layer_name, pred_index=None):
    """keras.io/examples/vision/grad_cam (fchollet), verbatim apart from this docstring."""
    grad_model = keras.models.Model(model.inputs, [model.get_layer(last_conv_layer_name).output, model.output])
    with tf.GradientTape() as tape:
        last_conv_layer_output, preds = grad_model(img_array)
        if pred_index is None:
            pred_index = tf.argmax(preds[0])
        class_channel = preds[:, pred_index]
    grads = tape.gradient(class_channel, last_conv_layer_output)
    pooled_grads = tf.reduce_mean(grads, axis=(0, 1, 2))
    last_conv_layer_output = last_conv_layer_output[0]
    heatmap = last_conv_layer_output @ pooled_grads[..., tf.newaxis]
    heatmap = tf.squeeze(heatmap)
    heatmap = tf.maximum(heatmap, 0) / tf.math.reduce_max(heatmap)
    return heatmap.numpy()


def floor_function(model):
    """(a): forward to (activations, logits), gradient of one logit w.r.t. the activations. No heatmap.

    Both are returned: for the last layer the gradient alone does not depend on the image (GAP + Dense),
    and TensorFlow would prune the whole forward pass away.
    """
    tap = tap_model(model, [LAYER])

    @tf.function
    def forward_and_gradient(x, class_index):
        with tf.GradientTape() as tape:
            (activations,), logits = tap(x, training=False)
            score = tf.gather(logits, class_index, axis=1)
        return activations, tape.gradient(score, activations)

    return forward_and_gradient


def median_ms(times):
    return 1000 * float(np.median(times))


def main(repeats=20):
    bundle = cnnviz.load_model()
    image = cnnviz.load_image("cat", size=bundle.input_size, crop=0.875)
    x = tf.constant(bundle.preprocess(image[None]))
    # keras.io first removes the softmax ("model.layers[-1].activation = None"); here: output the logits
    logits_model = keras.Model(bundle.model.inputs, bundle.model.get_layer("logits").output)
    floor = floor_function(bundle.model)
    class_index = tf.constant(int(np.argmax(bundle.model(x))))

    methods = {
        "(a) floor: compiled forward + gradient": lambda: [t.numpy() for t in floor(x, class_index)],
        "(b) cnnviz.gradcam": lambda: cnnviz.gradcam(bundle, image),
        "(c) keras.io make_gradcam_heatmap": lambda: make_gradcam_heatmap(x, logits_model, LAYER),
        "(d) cnnviz.gradcam_loop": lambda: cnnviz.gradcam_loop(bundle, image),
        "(e) cnnviz.gradcam_parts top-5": lambda: cnnviz.gradcam_parts(bundle, image, top=5),
    }
    for run in methods.values():  # warm up: trace and compile outside the timings
        run()
    same = np.abs(methods["(b) cnnviz.gradcam"]() - methods["(c) keras.io make_gradcam_heatmap"]()).max()
    times = {name: [] for name in methods}
    for _ in range(repeats):
        for name, run in methods.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    ms = {name: median_ms(t) for name, t in times.items()}
    a, b, c, d, e = ms.values()

    print(f"Grad-CAM on {bundle.name}, {LAYER}, one 224×224 image, median of {repeats} interleaved runs")
    print(f"(b) and (c) give the same heatmap: max abs diff {same:.1e}")
    for name, value in ms.items():
        print(f"  {name:<42} {value:8.1f} ms")
    print("ratios")
    print(f"  (b)/(a) = {b / a:5.2f}   goal ≤ 1.2   {'met' if b / a <= 1.2 else 'MISSED'}")
    print(f"  (c)/(b) = {c / b:5.1f}   goal ≥ 10    {'met' if c / b >= 10 else 'MISSED'}")
    print(f"  (e)/(b) = {e / b:5.2f}   goal ≤ 1.3   {'met' if e / b <= 1.3 else 'MISSED'}")
    print(f"  (d)/(b) = {d / b:5.2f}   (the TF1 loop: same maths, Python over 1280 channels)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
