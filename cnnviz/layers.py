"""Finding layers — also inside nested models — and tapping their outputs.

Transfer-learning models nest a convolutional base inside an outer model
(``Sequential([base, GlobalAveragePooling2D(), Dense(...)])``). Asking for
``keras.Model(model.inputs, [inner_layer.output, model.output])`` then fails with "Graph
disconnected": the inner layer lives in the base's own graph. :func:`tap_model` instead replays the
outer model on a fresh input, calling each nested model through a copy that also returns the inner
layer's output. The layers (and so the weights) are shared, never copied; the model is not mutated.
"""
from __future__ import annotations

import difflib
import functools
from typing import NamedTuple

import keras

from .heads import PreSoftmax, final_layers, squash_kind, squashes_output


class LayerInfo(NamedTuple):
    """One spatial layer: its name, output shape (N, h, w, c) and the nested models it lies in."""

    name: str
    shape: tuple
    path: tuple[str, ...]


def as_keras_model(model) -> keras.Model:
    """The Keras model of a :class:`~cnnviz.ModelBundle`, or the model itself."""
    return getattr(model, "model", model)


def _walk(model, path=()):
    """Yield (layer, path of enclosing models' names) depth first, in graph order."""
    for layer in model.layers:
        yield layer, path
        if isinstance(layer, keras.Model):
            yield from _walk(layer, (*path, layer.name))


def _output_shape(layer):
    try:
        return tuple(layer.output.shape)
    except (AttributeError, ValueError):  # a layer whose Sequential was never called has no output yet
        return None


def get_layer(model, name: str) -> keras.layers.Layer:
    """The layer called ``name``, searched in ``model`` and every model nested inside it.

    A wrong name raises a ``ValueError`` that lists the closest valid names.
    """
    keras_model = as_keras_model(model)
    found = [(layer, path) for layer, path in _walk(keras_model) if layer.name == name]
    if len(found) > 1:
        where = " and ".join(f"in {'/'.join(path) or keras_model.name!r}" for _, path in found)
        raise ValueError(f"{len(found)} layers are named {name!r} ({where}): cnnviz finds layers by name and cannot "
                         "tell them apart; build the model with unique layer names (name=... when creating them)")
    if found:
        return found[0][0]
    names = [layer.name for layer, _ in _walk(keras_model)]
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
    hint = f"closest: {', '.join(close)}" if close else "see cnnviz.conv_layers(model) for the spatial layers"
    raise ValueError(f"no layer named {name!r} in model {keras_model.name!r}; {hint}")


def conv_layers(model, input_size=None) -> list[LayerInfo]:
    """The spatial layers (4-D output: N, h, w, c) in order, with nested models' layers included.

    ``input_size`` (H, W) makes the shapes concrete for a model with a flexible input; a
    :class:`~cnnviz.ModelBundle` supplies its own ``input_size``.
    """
    input_size = input_size or getattr(model, "input_size", None)
    keras_model = as_keras_model(model)
    infos = [LayerInfo(layer.name, shape, path) for layer, path in _walk(keras_model)
             if not isinstance(layer, keras.layers.InputLayer) and len(shape := _output_shape(layer) or ()) == 4]
    if input_size is None or not infos:
        return infos
    probe = tap_model(keras_model, [info.name for info in infos], score=None)
    channels = keras_model.inputs[0].shape[-1]
    specs = probe.compute_output_spec(keras.KerasTensor((None, *input_size, channels)))
    return [info._replace(shape=tuple(spec.shape)) for info, spec in zip(infos, keras.tree.flatten(specs))]


def spatial_layer(model, name: str | None = None) -> keras.layers.Layer:
    """``get_layer(model, name)``, checked to be spatial; ``name=None`` picks the last spatial layer."""
    layers = conv_layers(as_keras_model(model))
    if name is None:
        if not layers:
            raise ValueError("the model has no spatial (N, h, w, c) layer to visualise")
        name = layers[-1].name
    layer = get_layer(model, name)
    if name not in [info.name for info in layers]:
        raise ValueError(f"layer {name!r} has output shape {_output_shape(layer)}, not (N, h, w, c): "
                         f"pick a convolutional layer, e.g. {layers[-1].name!r} (see cnnviz.conv_layers)")
    return layer


def _replay(model, inputs, targets: set, captured: dict, strip_softmax: bool):
    """Call ``model`` on symbolic ``inputs`` layer by layer, storing targets' outputs in ``captured``.

    Nested models holding a target are replayed recursively. With ``strip_softmax`` the model's
    final softmax, log-softmax or sigmoid (a layer, or a Dense layer's activation, possibly followed
    by Reshape / Flatten / Identity / Dropout) is left out: logits; ``captured["head"]`` says which.
    """
    final = final_layers(model)

    def call(layer, *args, **kwargs):
        strip = strip_softmax and layer in final
        if strip and squashes_output(layer):
            captured["head"] = squash_kind(layer)
            if isinstance(layer, keras.layers.Dense):
                output = PreSoftmax(layer, name=f"{layer.name}_logits")(*args)
            else:
                output = args[0]  # Softmax / Activation / Lambda: its input is the logits
        elif isinstance(layer, keras.Model) and ((strip and layer is final[-1])
                                                 or any(t in _all_layers(layer) for t in targets)):
            output = _replay(layer, args[0], targets, captured, strip and layer is final[-1])
        else:
            output = layer(*args, **kwargs)
        if layer in targets:
            captured[layer.name] = output
        return output

    if isinstance(model, keras.Sequential):
        x = inputs
        for layer in model.layers:
            x = call(layer, x)
        return x
    if isinstance(model.input, (list, tuple)):  # a model built with `inputs=[x]` wants the same structure
        inputs = [inputs]
    clone = keras.models.clone_model(model, input_tensors=inputs, clone_function=lambda layer: layer,
                                     call_function=call)
    for layer in model.layers:  # InputLayers are not "called"; capture them directly
        if isinstance(layer, keras.layers.InputLayer) and layer in targets:
            captured[layer.name] = keras.tree.flatten(inputs)[0]
    return clone.outputs[0] if len(clone.outputs) == 1 else clone.outputs


def _all_layers(model) -> list:
    return [layer for layer, _ in _walk(model)]


def _input_shape(model) -> tuple:
    """The model's one image input shape (None, H, W, C); a clear ValueError for models cnnviz cannot
    explain (no layers, several inputs, an unbuilt Sequential)."""
    if not model.layers or (len(model.layers) == 1 and isinstance(model.layers[0], keras.layers.InputLayer)):
        raise ValueError(f"model {model.name!r} has no layers: there is no spatial (N, h, w, c) layer to "
                         "visualise")
    try:
        inputs = model.inputs or []
    except (AttributeError, ValueError):  # an unbuilt Sequential: reported below
        inputs = []
    if len(inputs) > 1:
        raise ValueError(f"model {model.name!r} has {len(model.inputs)} inputs; cnnviz explains models with one "
                         "image input: wrap yours, e.g. keras.Model(image, model([image, fixed_other_input]))")
    try:
        return tuple(model.inputs[0].shape)
    except (AttributeError, ValueError, TypeError) as error:
        raise ValueError(f"model {model.name!r} has no defined input yet (a Keras 3 Sequential gets one when "
                         "it is built): start it with keras.Input(shape=...) or call model.build((None, H, W, 3))"
                         ) from error


def _input_tensor(model):
    return keras.Input(batch_shape=_input_shape(model), name="tap_input")


def leaves_layers_unchanged(build):
    """Decorator for a function ``build(model, ...)`` that makes a new model from ``model``'s layers.

    Keras records each symbolic call of a layer IN the layer (a "node" in ``_inbound_nodes`` /
    ``_outbound_nodes``, no public API): every tap model would add one to each layer it calls, for
    ever (~0.16 MiB per Lite0 tap) and change the user's model. The new model keeps its own nodes;
    the layers' lists are put back as they were.
    """
    @functools.wraps(build)
    def wrapper(model, *args, **kwargs):
        lengths = [(layer, len(getattr(layer, "_inbound_nodes", ())), len(getattr(layer, "_outbound_nodes", ())))
                   for layer in _all_layers(as_keras_model(model))]
        try:
            return build(model, *args, **kwargs)
        finally:
            for layer, inbound, outbound in lengths:
                del getattr(layer, "_inbound_nodes", [])[inbound:]
                del getattr(layer, "_outbound_nodes", [])[outbound:]
    return wrapper


def _pick_output(model, outputs, output):
    """The one output to explain: ``outputs`` itself for a one-output model, else ``outputs[output]``,
    ``output`` an index or a name from ``model.output_names``."""
    if not isinstance(outputs, (list, tuple)):
        if output not in (None, 0, getattr(model, "output_names", [None])[0]):
            raise ValueError(f"output={output!r}: model {model.name!r} has one output")
        return outputs
    names = list(getattr(model, "output_names", None) or [f"output_{i}" for i in range(len(outputs))])
    if output is None:
        raise ValueError(f"model {model.name!r} has {len(outputs)} outputs ({', '.join(map(repr, names))}): "
                         "choose one with output=<name or index>")
    if isinstance(output, str) and output in names:
        return outputs[names.index(output)]
    if isinstance(output, int) and not isinstance(output, bool) and -len(outputs) <= output < len(outputs):
        return outputs[output]
    raise ValueError(f"output={output!r} is not an output of model {model.name!r}: give one of "
                     f"{', '.join(map(repr, names))} or an index 0 … {len(outputs) - 1}")


SCORES = ("logits", "output", None)


@leaves_layers_unchanged
def build_tap(model, layer_names, score="logits", output=None) -> tuple[keras.Model, str | None]:
    """:func:`tap_model` and what it took off the output: "softmax", "log_softmax", "sigmoid" or None."""
    if score not in SCORES:
        raise ValueError(f"score must be 'logits', 'output' or None, got {score!r}")
    keras_model = as_keras_model(model)
    check_channels_last(keras_model)
    layers = [get_layer(keras_model, name) for name in layer_names]
    captured = {}
    inputs = _input_tensor(keras_model)
    result = _replay(keras_model, inputs, set(layers), captured, strip_softmax=(score == "logits"))
    activations = [captured[layer.name] for layer in layers]
    # A one-element list of outputs would be unwrapped by Keras; nesting it keeps "always a list".
    outputs = (activations,) if score is None else (activations, _pick_output(keras_model, result, output))
    try:
        tap = keras.Model(inputs, outputs, name=f"{keras_model.name}_tap")
    except ValueError as error:
        if "is used" not in str(error):
            raise
        raise ValueError(f"model {keras_model.name!r} and a model nested in it share a layer name ({error}); cnnviz "
                         "opens nested models to reach their layers, so names must be unique across them: build "
                         "the model with unique layer names") from None
    return tap, (None if score is None else captured.get("head"))


def tap_model(model, layer_names, score="logits", output=None) -> keras.Model:
    """A model: input images → ([activation of each named layer], score).

    ``score="logits"``: the class scores before the final softmax, log-softmax or sigmoid (a Softmax
    layer, or an Activation, Dense or Lambda layer applying one, also when Reshape / Flatten / Identity
    follow it, is left out; nothing is mutated); ``"output"``: the model's own output; ``None``: no
    score, only activations. ``output``: for a model with several outputs, which one (name or index).
    Works when layers sit inside nested models. One forward pass gives everything.
    """
    return build_tap(model, layer_names, score, output)[0]


def check_channels_last(keras_model) -> None:
    """A ValueError for a model computing channels-first: cnnviz reads every map as (N, h, w, c)."""
    for layer, _ in _walk(keras_model):
        if getattr(layer, "data_format", None) == "channels_first":
            raise ValueError(f"layer {layer.name!r} of model {keras_model.name!r} is channels_first; cnnviz reads "
                             "activations as (N, h, w, c): build the model channels_last (the Keras default, "
                             "data_format='channels_last' or keras.config.set_image_data_format)")


def check_images(model, batch) -> None:
    """A ValueError unless ``batch`` (N, H, W, C) fits the model's input: its channels, and its size when
    the model fixes one (a channels-first model is refused first)."""
    check_channels_last(as_keras_model(model))
    declared = _input_shape(as_keras_model(model))  # (None, H, W, C), H and W may be None
    channels = batch.shape[-1]
    if declared[-1] is not None and channels != declared[-1]:
        hint = ("make them grey: images.mean(axis=-1, keepdims=True)" if declared[-1] == 1 else
                {1: "for grey images repeat the channel: np.repeat(images, 3, axis=-1), or use cnnviz.load_image",
                 4: "drop the alpha channel (images[..., :3]) or use cnnviz.load_image, which composites it"
                 }.get(channels, "use cnnviz.load_image to read photos as RGB"))
        raise ValueError(f"the model takes {declared[-1]}-channel images, got {channels} channels "
                         f"(shape {batch.shape}): {hint}")
    size = tuple(declared[1:3])
    if None not in size and tuple(batch.shape[1:3]) != size:
        raise ValueError(f"the model takes {size[0]}×{size[1]} images, got {batch.shape[1]}×{batch.shape[2]}: "
                         f"resize them, e.g. cnnviz.load_image(photo, size=({size[0]}, {size[1]}))")
