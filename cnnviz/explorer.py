"""The class explorer (notebook 04): pick a photo, a class and a layer — see where the network looks.

One forward pass per (photo, layer) gives the Grad-CAM heatmaps of the top-k classes at once
(:func:`~cnnviz.gradcam_parts`). Switching among them, or back to any class seen before, only
recolours a cached (h, w) map: no TensorFlow call. A class picked in the search box outside the
top-k costs one more pass, then is cached too. Pictures are PNG bytes in ``widgets.Image``, so
tests can read them without a browser.
"""
from __future__ import annotations

import contextlib
import difflib
import io
from pathlib import Path

import ipywidgets as widgets
import keras
import matplotlib
import numpy as np
from PIL import Image

from .caching import LRUCache
from .gradcam import gradcam_parts, overlay, upsample
from .images import fit, load_image, sample_images
from .layers import conv_layers
from .models import ModelBundle, class_names

__all__ = ["ClassExplorer", "class_labels", "png_bytes"]

MAX_UPLOAD_BYTES = 20_000_000
COLORMAPS = ("jet", "turbo", "inferno", "viridis", "magma")
UPLOADED = "⬆ "  # prefix of uploaded photos in the photo list
CACHED_MAPS = 64  # (layer, class) heatmaps kept for the current photo: ~10 layers' top 5, ≤ 3.2 MB


def png_bytes(pixels) -> bytes:
    """(H, W, 3) pixels in [0, 255] → the bytes of a PNG file."""
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype("uint8")).save(buffer, format="png", compress_level=1)
    return buffer.getvalue()


def class_labels() -> list[str]:
    """Readable, unique labels of the 1000 classes: "Egyptian cat"; the two duplicated Keras names
    get their index: "crane (134)", "crane (517)"."""
    names = [name.replace("_", " ") for name in class_names()]
    return [f"{name} ({i})" if names.count(name) > 1 else name for i, name in enumerate(names)]


def _read_upload(upload: dict, size, crop: float) -> np.ndarray:
    """One FileUpload entry → pixels (H, W, 3) at ``size``; a clear ValueError when it is no photo."""
    name = Path(upload.get("name") or "").name
    name = name if name not in ("", ".", "..") else "upload"
    content = bytes(upload["content"])
    if len(content) > MAX_UPLOAD_BYTES:
        raise ValueError(f"{name} is {len(content) / 1e6:.0f} MB, over the {MAX_UPLOAD_BYTES // 1_000_000} MB "
                         "limit: downscale it first")
    try:  # from the bytes: no temporary file, so no file-name limits and no temporary path in messages
        return load_image(content, size=size, crop=crop)
    except ValueError as error:
        raise ValueError(f"{name}: {error}") from None


class ClassExplorer:
    """An ipywidgets app: photo × class × layer → original | heatmap | overlay, side by side.

    model: a :class:`~cnnviz.ModelBundle`. image: a sample's name (see :func:`~cnnviz.sample_images`),
    a path, or pixels (H, W, 3) in [0, 255]; None → the cat|coffee collage. top: how many best
    classes the class list offers. crop: centre crop before resizing to the model's input size.
    Shows itself as the last expression of a cell. State for tests: :attr:`image_name`,
    :attr:`class_index`, :attr:`layer`, :attr:`heatmap`, :attr:`forward_passes`, :attr:`message`.
    """

    def __init__(self, model: ModelBundle, image=None, top: int = 5, crop: float = 0.875):
        if not isinstance(model, ModelBundle):
            raise TypeError("ClassExplorer needs a cnnviz.ModelBundle (e.g. cnnviz.load_model()), "
                            f"got {type(model).__name__}")
        self.bundle, self.top, self.crop = model, top, crop
        self.labels = class_labels()
        self._label_index = {label: i for i, label in enumerate(self.labels)}
        self.forward_passes = 0  # model runs: a new photo or layer costs 1, a cached class 0
        self.renders = 0
        self.message = ""
        self.heatmap = None  # the (h, w) map on display
        self._photos = {}  # name → pixels (H, W, 3) at the model's input size
        self._heatmaps = LRUCache(CACHED_MAPS)  # (layer, class index) → (h, w) for the current photo
        self._updating = False  # True while the explorer itself sets widget values
        self._build_widgets()
        first = "cat_and_coffee" if image is None else image
        if isinstance(first, str) and first in sample_images():
            self._show_photo(first)
        else:
            name = f"{UPLOADED}{Path(first).name}" if isinstance(first, (str, Path)) else f"{UPLOADED}your image"
            pixels = (load_image(first, self.bundle.input_size, crop) if isinstance(first, (str, Path))
                      else fit(np.asarray(first, dtype="float32"), self.bundle.input_size, crop))
            self._add_photo(name, pixels)

    # ---- the widgets ------------------------------------------------------------------------------
    def _build_widgets(self):
        wide = {"description_width": "70px"}
        self.image_picker = widgets.Dropdown(options=sample_images(), description="photo", style=wide)
        self.upload = widgets.FileUpload(accept="image/*", multiple=False, description="your photo")
        self.class_picker = widgets.Dropdown(description=f"top {self.top}", style=wide,
                                             layout=widgets.Layout(width="340px"))
        self.class_picker.add_class("cnnviz-class")
        self.class_search = widgets.Combobox(options=self.labels, ensure_option=True, description="any class",
                                             placeholder="search all 1000 classes", style=wide)
        layers = conv_layers(self.bundle)
        self.layer_picker = widgets.Dropdown(options=[(f"{info.name} · {info.shape[1]}×{info.shape[2]}×"
                                                       f"{info.shape[3]}", info.name) for info in layers],
                                             value=layers[-1].name, description="layer", style=wide,
                                             layout=widgets.Layout(width="340px"))
        self.opacity = widgets.FloatSlider(value=0.4, min=0, max=1, step=0.05, description="opacity", style=wide)
        self.colormap = widgets.Dropdown(options=COLORMAPS, value="jet", description="colours", style=wide,
                                         layout=widgets.Layout(width="180px"))
        size = f"{self.bundle.input_size[1]}px"
        self.original_view, self.heatmap_view, self.overlay_view = (
            widgets.Image(format="png", layout=widgets.Layout(width=size)) for _ in range(3))
        for name, view in [("original", self.original_view), ("heatmap", self.heatmap_view),
                           ("overlay", self.overlay_view)]:
            view.add_class(f"cnnviz-{name}")  # CSS handles for the browser test
        self.colorbar = widgets.Image(format="png", layout=widgets.Layout(width=size, height="10px"))
        self.caption = widgets.HTML()
        self.status = widgets.HTML()
        titled = lambda title, *items: widgets.VBox([widgets.HTML(f"<b>{title}</b>"), *items],  # noqa: E731
                                                    layout=widgets.Layout(margin="0 16px 0 0"))
        self.widget = widgets.VBox([
            widgets.HBox([self.image_picker, self.upload]),
            widgets.HBox([self.class_picker, self.class_search]),
            widgets.HBox([self.layer_picker, self.opacity, self.colormap]),
            self.caption,
            widgets.HBox([titled("photo", self.original_view),
                          titled("heatmap", self.heatmap_view, self.colorbar,
                                 widgets.HTML("<small>0 (no evidence) → 1 (strongest)</small>")),
                          titled("overlay", self.overlay_view)]),
            self.status,
        ])
        self.widget.add_class("cnnviz-explorer")
        self.image_picker.observe(self._guarded(lambda name: self._show_photo(name)), "value")
        self.upload.observe(self._on_upload, "value")
        self.class_picker.observe(self._guarded(self._on_class), "value")
        self.class_search.observe(self._guarded(self._on_search), "value")
        self.layer_picker.observe(self._guarded(self._on_layer), "value")
        self.opacity.observe(self._guarded(lambda _: self._render()), "value")
        self.colormap.observe(self._guarded(lambda _: self._render()), "value")

    def _guarded(self, handler):
        """An observer that ignores the explorer's own updates and turns any error into a message."""
        def observer(change):
            if self._updating:
                return
            try:
                handler(change["new"])
            except Exception as error:  # noqa: BLE001 — a widget callback must never raise into the notebook
                self._say(f"⚠ {error}")
        return observer

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    # ---- state ------------------------------------------------------------------------------------
    @property
    def image_name(self) -> str:
        return self.image_picker.value

    @property
    def pixels(self) -> np.ndarray:
        """The photo as the model sees it: float32 (H, W, 3) in [0, 255]."""
        return self._photos[self.image_name]

    @property
    def layer(self) -> str:
        return self.layer_picker.value

    @property
    def class_name(self) -> str:
        return class_names()[self.class_index]

    @property
    def probability(self) -> float:
        return float(self.probabilities[self.class_index])

    # ---- events -----------------------------------------------------------------------------------
    def _on_upload(self, change):
        if not change["new"]:
            return
        upload = change["new"][0]
        try:
            pixels = _read_upload(upload, self.bundle.input_size, self.crop)
            self._add_photo(f"{UPLOADED}{Path(upload.get('name') or 'upload').name}", pixels)
        except Exception as error:  # noqa: BLE001 — keep the previous photo, explain, never raise
            self._say(f"⚠ could not use the upload: {error}. Still showing {self.image_name!r}.")
        finally:
            with self._holding():
                self.upload.value = ()  # so choosing the same file again fires

    def _add_photo(self, name: str, pixels: np.ndarray):
        self._photos[name] = pixels
        with self._holding():
            self.image_picker.options = [*dict.fromkeys([*self.image_picker.options, name])]
        self._show_photo(name)

    def _show_photo(self, name: str):
        if name not in self._photos:
            self._photos[name] = load_image(name, self.bundle.input_size, self.crop)
        pixels = self._photos[name]
        # one forward pass: the top classes' heatmaps at the current layer and all 1000 logits
        parts = gradcam_parts(self.bundle, pixels[None], self.layer, top=self.top)
        self.forward_passes += 1
        self.probabilities = np.asarray(keras.ops.softmax(parts.outputs[0]), dtype="float64")
        self.best = [int(i) for i in parts.class_indices[0]]
        self._heatmaps.clear()
        self._heatmaps.update({(self.layer, c): heatmap for c, heatmap in zip(self.best, parts.heatmaps[0])})
        with self._holding():
            self.image_picker.value = name
            self.class_picker.options = [(f"{self.labels[i]} · {self.probabilities[i]:.1%}", i) for i in self.best]
            self.class_picker.value = self.best[0]
            self.class_search.value = ""
        self.class_index = self.best[0]
        self.original_view.value = png_bytes(pixels)
        self._say("")
        self._render()

    def _on_class(self, class_index):
        if class_index is not None:
            with self._holding():
                self.class_search.value = ""
            self._select_class(class_index)

    def _on_search(self, text: str):
        if not text:
            return
        if text not in self._label_index:
            close = difflib.get_close_matches(text, self.labels, n=3, cutoff=0.5)
            self._say(f"⚠ no class called {text!r}" + (f"; did you mean {', '.join(close)}?" if close else ""))
            return
        self._select_class(self._label_index[text])

    def _select_class(self, class_index: int):
        self.class_index = int(class_index)
        with self._holding():
            self.class_picker.value = self.class_index if self.class_index in self.best else None
        self._say("")
        self._render()

    def _on_layer(self, _layer):
        self._say("")
        self._render()

    # ---- pictures ---------------------------------------------------------------------------------
    def _explain(self):
        """Heatmaps at the current layer for the top classes (and the current class): one forward pass."""
        new_layer = not any(layer == self.layer for layer, _ in self._heatmaps)
        classes = [*self.best, self.class_index] if new_layer else [self.class_index]
        classes = list(dict.fromkeys(classes))
        parts = gradcam_parts(self.bundle, self.pixels[None], self.layer, class_index=np.array([classes]))
        self.forward_passes += 1
        for class_index, heatmap in zip(classes, parts.heatmaps[0]):
            self._heatmaps[(self.layer, class_index)] = heatmap

    def _render(self):
        if (self.layer, self.class_index) not in self._heatmaps:
            self._explain()
        self.heatmap = self._heatmaps[(self.layer, self.class_index)]
        colours = matplotlib.colormaps[self.colormap.value]
        self.heatmap_view.value = png_bytes(colours(upsample(self.heatmap, self.pixels.shape[:2]))[..., :3] * 255)
        self.overlay_view.value = png_bytes(overlay(self.pixels, self.heatmap, self.opacity.value,
                                                    self.colormap.value))
        self.colorbar.value = png_bytes(colours(np.linspace(0, 1, 256))[None, :, :3].repeat(8, axis=0) * 255)
        rank = int((self.probabilities > self.probabilities[self.class_index]).sum()) + 1
        h, w = self.heatmap.shape
        self.caption.value = (f"<b>{self.labels[self.class_index]}</b> · probability {self.probability:.1%} · "
                              f"rank {rank} of {len(self.probabilities)} · heatmap {h}×{w} at {self.layer}")
        if not self.heatmap.any():
            self._say(f"The map is empty: at {self.layer}, nothing in this photo speaks FOR "
                      f"{self.labels[self.class_index]!r} (all evidence is negative).")
        self.renders += 1

    def _say(self, text: str):
        self.message = text
        colour = "#b00020" if text.startswith("⚠") else "#444"
        self.status.value = f"<span style='color:{colour}'>{text}</span>" if text else ""

    @contextlib.contextmanager
    def _holding(self):
        """Set widget values without their observers firing back."""
        self._updating = True
        try:
            yield
        finally:
            self._updating = False
