"""Dreams' speed (issue 20), three ratios side by side in one run on the bundled EfficientNet-Lite0.

1. Class visualisation: ``class_visualization`` of 8 classes as ONE compiled batch vs the same 8 classes one
   call at a time (same size, steps, seed; warm: no call traces). Goal: batched ≥ 4× faster. Printed next
   to it: the same ratio for the bare network — ``steps`` compiled forward + backward passes of the batch of
   8 vs 8 × ``steps`` of one image — the most batching can give on this CPU, whatever the loop around it.
2. PGD: ``adversarial`` (``steps`` signed-gradient steps with the projection) vs its FLOOR, ``steps`` × one
   compiled forward + gradient to the input of the whole batch (the cross-entropy of the logits, nothing
   else) through the network ``adversarial`` runs (the bundle's, batch norms folded): what the loop costs
   beyond its gradients. Goal: ≤ 1.2× the floor. Printed too: the same floor through the Keras model
   itself (batch norms unfolded), what a plain loop would pay.
3. DeepDream: ``deep_dream`` vs the keras.io "Deep Dream" recipe (fchollet, examples/generative/deep_dream.py)
   run the same way — same photo, model, layers and weights, octaves, octave scale, steps and step —
   written out below as keras.io writes it: ``gradient_ascent_step`` a ``tf.function``, the loss
   Σ trimmed A² / |A| with a 2-cell border left out, gradients divided by max(mean |g|, 1e-6), the octave
   loop with the lost detail put back, the step loop in Python checking ``max_loss`` after each step (a cap
   that never binds here, so both run every step). Its
   feature extractor takes pixels (the bundle's preprocessing first) so both step 1.5 px. Goal: cnnviz ≥ 2×
   faster. Both are timed warm (traced before), and once more from cold (each first call, tracing included:
   keras.io's step traces once per octave size, cnnviz's octave once for all). Printed next to it: each
   one's floor — ``steps`` compiled forward + backward passes of its loss at each octave's size, through
   the network it runs (cnnviz: batch norms folded; keras.io: the Keras model) — so the ratio splits into
   what the network costs and what the loop costs.

Each pair is timed interleaved, round-robin, so machine load hits both alike; medians are printed.
Run: .venv/bin/python benchmarks/bench_dreams.py [repeats]
"""
import sys
import time

import cnnviz  # before TensorFlow: quiet logs

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from bench_methods import run  # noqa: E402  (this folder: python puts a script's own first on the path)
from cnnviz.dreams.common import network  # noqa: E402

CLASSES, CLASS_SIZE, CLASS_STEPS = [1, 9, 88, 130, 279, 417, 948, 980], 128, 32
ATTACK_PHOTOS, EPSILON, PGD_STEPS, TARGETS = ("cat", "coffee", "rocket"), 2.0, 10, (1, 948)
DREAM_LAYERS = {"block3b_add": 1.0, "block4c_add": 1.5}
OCTAVES, OCTAVE_SCALE, DREAM_STEPS, DREAM_STEP = 3, 1.4, 20, 1.5
MAX_LOSS = 1e9  # a cap that never binds: both run every step, and keras.io's loop checks it after each, as written


def timed(calls, repeats):
    """bench_methods' round-robin timing (each call warmed up once) → {name: median seconds}."""
    return {name: ms / 1000 for name, ms in run(calls, repeats).items()}


def cold(call):
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def gradient_unit(score_of):
    """One compiled forward + gradient to the input of ``score_of(pixels) → (N,)``: a floor's unit."""
    @tf.function
    def step(pixels):
        with tf.GradientTape() as tape:
            tape.watch(pixels)
            score = score_of(pixels)
        return tape.gradient(score, pixels)
    return step


# ---- 1. class visualisation -------------------------------------------------------------------------------
def network_batching(bundle):
    """(8 × steps passes of one image, steps passes of the batch of 8), each a callable: the bare network."""
    net = network(bundle.model, bundle.preprocess, (), logits=True)
    unit = gradient_unit(lambda pixels: tf.reduce_sum(net(pixels)[1][:, 0]))
    one, batch = (tf.random.uniform((n, CLASS_SIZE, CLASS_SIZE, 3), 0, 255, seed=0) for n in (1, len(CLASSES)))
    return (lambda: [unit(one).numpy() for _ in range(len(CLASSES) * CLASS_STEPS)],
            lambda: [unit(batch).numpy() for _ in range(CLASS_STEPS)])


def class_images(bundle, repeats):
    def batched():
        return cnnviz.class_visualization(bundle, CLASSES, size=CLASS_SIZE, steps=CLASS_STEPS, seed=0)

    def one_at_a_time():
        return [cnnviz.class_visualization(bundle, c, size=CLASS_SIZE, steps=CLASS_STEPS, seed=0) for c in CLASSES]

    both = batched(), one_at_a_time()
    same = max(float(np.abs(both[0].images[i] - alone.images[0]).max()) for i, alone in enumerate(both[1]))
    net_one, net_batch = network_batching(bundle)
    return timed({"batched": batched, "one at a time": one_at_a_time, "network batched": net_batch,
                  "network one at a time": net_one}, repeats), same


# ---- 2. PGD vs its floor ------------------------------------------------------------------------------------
def pgd(bundle, repeats):
    photos = np.stack([cnnviz.sample_photo(name) for name in ATTACK_PHOTOS for _ in TARGETS])
    targets = np.array(list(TARGETS) * len(ATTACK_PHOTOS), "int32")
    folded = network(bundle.model, bundle.preprocess, (), logits=True)  # the network adversarial() runs
    keras_logits = keras.Model(bundle.model.input, bundle.model.get_layer("logits").output)

    x, y = tf.constant(photos), tf.constant(targets)

    def cross_entropy(logits_of):  # the floor's unit: the loss and its gradient to the input, once, compiled
        return gradient_unit(lambda p: tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits_of(p)))

    units = {"floor": cross_entropy(lambda p: folded(p)[1]),
             "keras floor": cross_entropy(lambda p: keras_logits(bundle.preprocess(p), training=False))}

    def floor(name):
        def run():
            for _ in range(PGD_STEPS):
                grads = units[name](x)
            return grads.numpy()
        return run

    def attack():
        return cnnviz.adversarial(bundle, photos, target_class=targets, epsilon=EPSILON, steps=PGD_STEPS)

    success = attack().success.mean()
    return timed({"PGD": attack, "floor": floor("floor"), "keras floor": floor("keras floor")}, repeats), \
        len(photos), success


# ---- 3. DeepDream vs keras.io --------------------------------------------------------------------------------
def keras_io_dream(bundle, layer_settings, iterations, step, num_octave, octave_scale, max_loss=None):
    """keras.io's Deep Dream, as it is written there (comments: where this differs, and why)."""
    model = bundle.model
    outputs_dict = {name: model.get_layer(name).output for name in layer_settings}
    feature_extractor = keras.Model(inputs=model.inputs, outputs=outputs_dict)

    def compute_loss(input_image):
        features = feature_extractor(bundle.preprocess(input_image))  # pixels in, as cnnviz (keras.io: model units)
        loss = tf.zeros(shape=())
        for name in features.keys():
            coeff = layer_settings[name]
            activation = features[name]
            scaling = tf.reduce_prod(tf.cast(tf.shape(activation), "float32"))
            loss += coeff * tf.reduce_sum(tf.square(activation[:, 2:-2, 2:-2, :])) / scaling
        return loss

    @tf.function
    def gradient_ascent_step(img, learning_rate):
        with tf.GradientTape() as tape:
            tape.watch(img)
            loss = compute_loss(img)
        grads = tape.gradient(loss, img)
        grads /= tf.maximum(tf.reduce_mean(tf.abs(grads)), 1e-6)
        img += learning_rate * grads
        return loss, img

    def gradient_ascent_loop(img, iterations, learning_rate, max_loss=None):
        for i in range(iterations):
            loss, img = gradient_ascent_step(img, learning_rate)
            if max_loss is not None and loss > max_loss:
                break
            # keras.io prints the loss here: left out (it would time the terminal)
        return img

    def dream(original_img):
        original_shape = original_img.shape[1:3]
        successive_shapes = [original_shape]
        for i in range(1, num_octave):
            shape = tuple([int(dim / (octave_scale ** i)) for dim in original_shape])
            successive_shapes.append(shape)
        successive_shapes = successive_shapes[::-1]
        shrunk_original_img = tf.image.resize(original_img, successive_shapes[0])
        img = tf.identity(original_img)
        for shape in successive_shapes:
            img = tf.image.resize(img, shape)
            img = gradient_ascent_loop(img, iterations=iterations, learning_rate=learning_rate_of(step),
                                       max_loss=max_loss)
            upscaled_shrunk_original_img = tf.image.resize(shrunk_original_img, shape)
            same_size_original = tf.image.resize(original_img, shape)
            lost_detail = same_size_original - upscaled_shrunk_original_img
            img += lost_detail
            shrunk_original_img = tf.image.resize(original_img, shape)
        return np.clip(img.numpy(), 0, 255)  # cnnviz clips to the pixel range too (keras.io: in deprocess)

    return dream


def learning_rate_of(step):
    return tf.constant(step, tf.float32)  # a tensor: a Python float would be a new trace per value


def deep_dreams(bundle, repeats):
    photo = cnnviz.sample_photo("cat")
    recipe = keras_io_dream(bundle, DREAM_LAYERS, DREAM_STEPS, DREAM_STEP, OCTAVES, OCTAVE_SCALE, MAX_LOSS)

    def keras_io():
        return recipe(tf.constant(photo[None]))

    def ours():
        return cnnviz.deep_dream(bundle, photo, DREAM_LAYERS, octaves=OCTAVES, octave_scale=OCTAVE_SCALE,
                                 steps=DREAM_STEPS, step=DREAM_STEP, max_loss=MAX_LOSS)

    first = {"keras.io": cold(keras_io), "cnnviz": cold(ours)}
    floors = dream_floors(bundle, photo)
    one_step = keras_io_dream(bundle, DREAM_LAYERS, 1, DREAM_STEP, 1, OCTAVE_SCALE)(tf.constant(photo[None]))[0]
    same = cnnviz.deep_dream(bundle, photo, DREAM_LAYERS, octaves=1, steps=1, step=DREAM_STEP).image
    differences = float(np.abs(one_step - same).max()), float(np.abs(keras_io()[0] - ours().image).mean())
    return timed({"cnnviz": ours, "keras.io": keras_io, **floors}, repeats), first, differences


def dream_floors(bundle, photo):
    """{name: callable}: DREAM_STEPS forward + backward passes of the dream's loss at each octave's size,
    through the folded network deep_dream runs ("floor") and through the Keras model ("keras.io floor")."""
    folded = network(bundle.model, bundle.preprocess, tuple(DREAM_LAYERS), logits=False)
    extractor = keras.Model(bundle.model.inputs, [bundle.model.get_layer(n).output for n in DREAM_LAYERS])
    weights = list(DREAM_LAYERS.values())

    def loss_of(maps):
        return sum(w * tf.reduce_sum(tf.square(a[:, 2:-2, 2:-2, :])) / tf.cast(tf.size(a), tf.float32)
                   for w, a in zip(weights, maps))

    sizes = [tuple(int(side / OCTAVE_SCALE ** k) for side in photo.shape[:2]) for k in reversed(range(OCTAVES))]
    octaves = [tf.image.resize(tf.constant(photo[None]), size) for size in sizes]

    def floor(unit):
        return lambda: [unit(x).numpy() for x in octaves for _ in range(DREAM_STEPS)]

    return {"floor": floor(gradient_unit(lambda p: loss_of(folded(p)[0]))),
            "keras.io floor": floor(gradient_unit(lambda p: loss_of(extractor(bundle.preprocess(p)))))}


def main(repeats=3):
    bundle = cnnviz.load_model()
    print(f"Dreams on {bundle.name}, medians of {repeats} interleaved warm runs, 2 cores")
    classes, same = class_images(bundle, repeats)
    attack, n, success = pgd(bundle, repeats)
    dream, first, (one_step, whole) = deep_dreams(bundle, repeats)
    rows = [
        (f"class visualisation, {len(CLASSES)} classes {CLASS_SIZE}² × {CLASS_STEPS} steps: one batch",
         classes["batched"], "one at a time", classes["one at a time"], classes["one at a time"] / classes["batched"],
         "faster, goal ≥ 4", lambda r: r >= 4),
        (f"PGD, {n} photos × {PGD_STEPS} steps, ε = {EPSILON:g} px: adversarial", attack["PGD"], "floor",
         attack["floor"], attack["PGD"] / attack["floor"], "the floor, goal ≤ 1.2", lambda r: r <= 1.2),
        (f"DeepDream, cat 224², {OCTAVES} octaves × {DREAM_STEPS} steps: deep_dream", dream["cnnviz"], "keras.io",
         dream["keras.io"], dream["keras.io"] / dream["cnnviz"], "faster, goal ≥ 2", lambda r: r >= 2),
    ]
    for title, ours, other_name, other, ratio, goal, met in rows:
        print(f"  {title:<64} {ours:6.2f}s   {other_name:>13} {other:6.2f}s   {ratio:5.2f}× {goal}: "
              f"{'met' if met(ratio) else 'NOT MET'}")
    print(f"  class images: the bare network, {CLASS_STEPS} passes of the batch vs {len(CLASSES)} × {CLASS_STEPS} of one "
          f"image: {classes['network batched']:.2f}s vs {classes['network one at a time']:.2f}s, "
          f"{classes['network one at a time'] / classes['network batched']:.2f}× — the most batching gives on this CPU")
    print(f"  DeepDream floors ({OCTAVES} octaves × {DREAM_STEPS} forward + backward passes of the loss): folded "
          f"{dream['floor']:.2f}s (deep_dream {dream['cnnviz'] / dream['floor']:.2f}× it), Keras model "
          f"{dream['keras.io floor']:.2f}s (keras.io {dream['keras.io'] / dream['keras.io floor']:.2f}× it); the networks "
          f"alone: {dream['keras.io floor'] / dream['floor']:.2f}×")
    print(f"  class images: batched and one at a time agree to {same:.2g} px at most (float rounding, amplified by "
          f"{CLASS_STEPS} Adam steps)")
    print(f"  PGD: {success:.0%} of the targeted attacks succeed; the floor through the unfolded Keras model: "
          f"{attack['keras floor']:.2f}s ({attack['keras floor'] / attack['PGD']:.2f}× adversarial)")
    print(f"  DeepDream from cold, tracing included: deep_dream {first['cnnviz']:.2f}s, keras.io {first['keras.io']:.2f}s "
          f"({first['keras.io'] / first['cnnviz']:.2f}×); one step of each differs by {one_step:.2g} px at most, the "
          f"whole dreams by {whole:.2g} px on average (folded batch norms round differently; 60 normalised steps "
          "amplify it)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
