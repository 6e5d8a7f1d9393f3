"""Small seeded networks the tests share (built fresh per call: tests may wrap or nest them)."""
import keras
import numpy as np

from cnnviz.models import ModelBundle


def preprocess(pixels):
    """The tiny bundles' preprocessing: pixels in [0, 255] → about [-1, 1] (numpy or tensors)."""
    return (pixels - 127.0) / 128.0


def tiny_base(size: int = 10, name: str = "base"):
    """conv1 (size−2, 4 channels) → conv2 (size−4, 6 channels), ReLU; seeded weights."""
    keras.utils.set_random_seed(7)
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(6, 3, activation="relu", name="conv2")(x)
    return keras.Model(inputs, x, name=name)


def tiny_classifier(size: int = 10, classes: int = 5):
    """base → GAP → Dropout → Dense ``head`` → Softmax: a GAP → Dense network like Lite0."""
    base = tiny_base(size)
    x = keras.layers.GlobalAveragePooling2D()(base.output)
    x = keras.layers.Dropout(0.2)(x)
    x = keras.layers.Dense(classes, name="head")(x)
    return keras.Model(base.input, keras.layers.Softmax(name="probabilities")(x), name="tiny")


def tiny_relu6_bundle(size: int = 9):
    """pixels → conv1 (ReLU) → conv2 → ReLU6 → GAP → Dense(4) ``head`` → Softmax, as a ModelBundle; seeded."""
    keras.utils.set_random_seed(3)
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(5, 3, activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(6, 3, name="conv2")(x)
    x = keras.layers.ReLU(6.0, name="relu6")(x)
    x = keras.layers.Dense(4, name="head")(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, keras.layers.Softmax()(x), name="tiny_relu6")
    return ModelBundle("tiny", model, (size, size), preprocess, "relu6")


def logits_model(model, head: str = "head"):
    """The same model ending at its ``head`` layer (its logits)."""
    return keras.Model(model.input, model.get_layer(head).output)


def nested_versions(model, layer: str, head: str = "head"):
    """``model``'s layers up to ``layer`` nested as one base inside a Sequential and a functional model
    with the same head weights after global average pooling (a transfer-learning shape)."""
    size = model.input.shape[1:]
    base = keras.Model(model.input, model.get_layer(layer).output, name="base")
    dense = keras.layers.Dense(model.get_layer(head).units, activation="softmax", name=head)
    sequential = keras.Sequential([keras.Input(size), base, keras.layers.GlobalAveragePooling2D(), dense])
    dense.set_weights(model.get_layer(head).get_weights())
    inputs = keras.Input(size)
    functional = keras.Model(inputs, dense(keras.layers.GlobalAveragePooling2D()(base(inputs))))
    return sequential, functional


def constant_score_model(size: int = 10):
    """A conv layer that is always 0 (ReLU of −100): flat maps, zero gradients, an image-independent score."""
    inputs = keras.Input((size, size, 3))
    dead = keras.layers.Conv2D(3, 3, activation="relu", bias_initializer=keras.initializers.Constant(-100.0),
                               name="dead")(inputs)
    return keras.Model(inputs, keras.layers.Dense(3, name="head")(keras.layers.GlobalAveragePooling2D()(dead)))


def random_images(n: int = 3, size: int = 10, low: float = -1.0, high: float = 1.0, seed: int = 0):
    return np.random.default_rng(seed).uniform(low, high, (n, size, size, 3)).astype("float32")
