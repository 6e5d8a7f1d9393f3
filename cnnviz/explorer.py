"""The class explorer (notebook 04): pick a photo, a class, a layer and a method — see where the network looks.

A thin ipywidgets view over :class:`~cnnviz.explorer_state.ExplorerState`, which holds the photo,
class, layer, method and scale, and caches the raw maps: one forward pass per (photo, layer, method)
explains the top classes, so switching among them, or back to any class seen before, only recolours
a cached map. The *shared scale* box puts all classes of a photo on one scale, so a class that is not
in the photo looks weak instead of as strong as the true one. Pictures are PNG bytes in
``widgets.Image``, so tests can read them without a browser.
"""
from __future__ import annotations

import contextlib
import difflib
from pathlib import Path

import ipywidgets as widgets
import matplotlib
import numpy as np

from .explorer_state import ExplorerState, explorer_methods, maps_at_layer, uses_layer
from .heatmaps import overlay, png_bytes, upsample_where_known
from .images import load_image, sample_images
from .layers import conv_layers
from .models import class_names

__all__ = ["ClassExplorer", "ExplorerState", "class_labels", "explorer_methods", "png_bytes"]

MAX_UPLOAD_BYTES = 20_000_000
COLORMAPS = ("jet", "turbo", "inferno", "viridis", "magma")
UPLOADED = "⬆ "  # prefix of uploaded photos in the photo list
SCALE_NOTES = {False: "each map scaled to its own maximum: every class looks strong",
               True: "one scale for this photo's top classes: an absent class looks weak"}


def class_labels() -> list[str]:
    """Readable, unique labels of the 1000 classes: "Egyptian cat"; the two duplicated Keras names
    get their index: "crane (134)", "crane (517)"."""
    names = [name.replace("_", " ") for name in class_names()]
    return [f"{name} ({i})" if names.count(name) > 1 else name for i, name in enumerate(names)]


def _read_upload(upload: dict) -> tuple[str, np.ndarray]:
    """One FileUpload entry → (its file name, pixels (H, W, 3)); a clear ValueError when it is no photo."""
    name = Path(upload.get("name") or "").name
    name = name if name not in ("", ".", "..") else "upload"
    content = bytes(upload["content"])
    if len(content) > MAX_UPLOAD_BYTES:
        raise ValueError(f"{name} is {len(content) / 1e6:.0f} MB, over the {MAX_UPLOAD_BYTES // 1_000_000} MB "
                         "limit: downscale it first")
    try:  # from the bytes: no temporary file, so no file-name limits and no temporary path in messages
        return name, load_image(content)
    except ValueError as error:
        raise ValueError(f"{name}: {error}") from None


class ClassExplorer:
    """An ipywidgets app: photo × class × layer × method → original | heatmap | overlay, side by side.

    model: a :class:`~cnnviz.ModelBundle`. image: a sample's name (see :func:`~cnnviz.sample_images`),
    a path, or pixels (H, W, 3) in [0, 255]; None → the cat|coffee collage. top: how many best
    classes the class list offers. crop: centre crop of your own photos before resizing to the model's
    input size (None: 87.5%; bundled photos are shown as the notebooks show them, the collage whole).
    method: a label of :func:`explorer_methods`. shared_scale: start with one scale per photo.
    Shows itself as the last expression of a cell. The state lives in :attr:`state` (no widgets);
    read it through :attr:`image_name`, :attr:`class_index`, :attr:`layer`, :attr:`method`,
    :attr:`heatmap`, :attr:`forward_passes`, :attr:`message`. Widget events never raise: a mistake
    (a bad upload, a failing method) becomes :attr:`message` and the previous picture stays.
    """

    def __init__(self, model, image=None, top: int = 5, crop: float | None = None, method: str = "Grad-CAM",
                 shared_scale: bool = False):
        self.state = ExplorerState(model, top=top, crop=crop, method=method)
        self.state.shared_scale = bool(shared_scale)
        self.top = top
        self.labels = class_labels()
        self._label_index = {label: i for i, label in enumerate(self.labels)}
        self.renders = 0
        self.message = ""
        self._updating = False  # True while the explorer itself sets widget values
        first = "cat_and_coffee" if image is None else image
        if isinstance(first, str) and first in sample_images():
            self.state.select_photo(first)
        else:
            name = f"{UPLOADED}{Path(first).name}" if isinstance(first, (str, Path)) else f"{UPLOADED}your image"
            self.state.add_photo(name, first)
        self._build_widgets()
        self._show()

    # ---- the widgets ------------------------------------------------------------------------------
    def _build_widgets(self):
        wide = {"description_width": "70px"}
        self.image_picker = widgets.Dropdown(options=sample_images(), description="photo", style=wide)
        self.upload = widgets.FileUpload(accept="image/*", multiple=False, description="your photo")
        self.class_picker = widgets.Dropdown(description=f"top {self.top}", style=wide,
                                             layout=widgets.Layout(width="340px"))
        for widget, name in ((self.image_picker, "photo"), (self.class_picker, "class")):
            widget.add_class(f"cnnviz-{name}")  # CSS handles for the browser tests
        self.class_search = widgets.Combobox(options=self.labels, ensure_option=True, description="any class",
                                             placeholder="search all 1000 classes", style=wide)
        layers = conv_layers(self.state.bundle)
        self.layer_picker = widgets.Dropdown(options=[(f"{info.name} · {info.shape[1]}×{info.shape[2]}×"
                                                       f"{info.shape[3]}", info.name) for info in layers],
                                             description="layer", style=wide, layout=widgets.Layout(width="340px"))
        self.method_picker = widgets.Dropdown(options=list(explorer_methods()), description="method", style=wide,
                                              layout=widgets.Layout(width="240px"))
        self.method_picker.add_class("cnnviz-method")
        self.layer_picker.add_class("cnnviz-layer")
        self.shared_scale_box = widgets.Checkbox(description="shared scale", indent=False,
                                                 layout=widgets.Layout(width="120px"))
        self.shared_scale_box.add_class("cnnviz-shared-scale")
        self.scale_note = widgets.HTML()
        self.opacity = widgets.FloatSlider(value=0.4, min=0, max=1, step=0.05, description="opacity", style=wide)
        self.colormap = widgets.Dropdown(options=COLORMAPS, value="jet", description="colours", style=wide,
                                         layout=widgets.Layout(width="180px"))
        size = f"{self.state.bundle.input_size[1]}px"
        self.original_view, self.heatmap_view, self.overlay_view = (
            widgets.Image(format="png", layout=widgets.Layout(width=size)) for _ in range(3))
        for name, view in [("original", self.original_view), ("heatmap", self.heatmap_view),
                           ("overlay", self.overlay_view)]:
            view.add_class(f"cnnviz-{name}")  # CSS handles for the browser tests
        self.colorbar = widgets.Image(format="png", layout=widgets.Layout(width=size, height="10px"))
        self.colorbar_note = widgets.HTML()
        self.caption = widgets.HTML()
        self.status = widgets.HTML()
        titled = lambda title, *items: widgets.VBox([widgets.HTML(f"<b>{title}</b>"), *items],  # noqa: E731
                                                    layout=widgets.Layout(margin="0 16px 0 0"))
        self.widget = widgets.VBox([
            widgets.HBox([self.image_picker, self.upload]),
            widgets.HBox([self.class_picker, self.class_search]),
            widgets.HBox([self.layer_picker, self.method_picker]),
            widgets.HBox([self.shared_scale_box, self.scale_note]),
            widgets.HBox([self.opacity, self.colormap]),
            self.caption,
            widgets.HBox([titled("photo", self.original_view),
                          titled("heatmap", self.heatmap_view, self.colorbar, self.colorbar_note),
                          titled("overlay", self.overlay_view)]),
            self.status,
        ])
        self.widget.add_class("cnnviz-explorer")
        self.image_picker.observe(self._guarded(self.state.select_photo), "value")
        self.upload.observe(self._on_upload, "value")
        self.class_picker.observe(self._guarded(self._on_class), "value")
        self.class_search.observe(self._guarded(self._on_search), "value")
        self.layer_picker.observe(self._guarded(lambda layer: setattr(self.state, "layer", layer)), "value")
        self.method_picker.observe(self._guarded(lambda method: setattr(self.state, "method", method)), "value")
        self.shared_scale_box.observe(self._guarded(lambda on: setattr(self.state, "shared_scale", on)), "value")
        self.opacity.observe(self._guarded(lambda _: None), "value")
        self.colormap.observe(self._guarded(lambda _: None), "value")

    def _guarded(self, handler):
        """An observer: apply the change to the state, then redraw. It ignores the explorer's own widget
        updates, and turns any error into a message with the widgets set back to the state's values."""
        def observer(change):
            if self._updating:
                return
            try:
                handler(change["new"])
                self._say("")
                self._show()
            except Exception as error:  # noqa: BLE001 — a widget callback must never raise into the notebook
                self._say(f"⚠ {error}")
                with contextlib.suppress(Exception):  # the state is unchanged: show it again
                    self._show(keep_search=True)  # a mistyped class name stays in the box, to be fixed
        return observer

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    # ---- the state, for notebooks and tests ---------------------------------------------------------
    image_name = property(lambda self: self.state.photo_name, doc="the photo on display")
    pixels = property(lambda self: self.state.pixels, doc="the photo as the model sees it: (H, W, 3) in [0, 255]")
    layer = property(lambda self: self.state.layer)
    method = property(lambda self: self.state.method)
    shared_scale = property(lambda self: self.state.shared_scale)
    class_index = property(lambda self: self.state.class_index)
    heatmap = property(lambda self: self.state.heatmap, doc="the (h, w) map on display, in [0, 1]")
    forward_passes = property(lambda self: self.state.forward_passes,
                              doc="method calls so far: a new photo, layer or method costs 1, a cached class 0")
    probabilities = property(lambda self: self.state.probabilities)
    best = property(lambda self: self.state.best, doc="the photo's top classes, best first")

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
        try:
            name, pixels = _read_upload(change["new"][0])
            self.state.add_photo(f"{UPLOADED}{name}", pixels)
            self._say("")
        except Exception as error:  # noqa: BLE001 — keep the previous photo, explain, never raise
            self._say(f"⚠ could not use the upload: {error}. Still showing {self.image_name!r}.")
        finally:
            with self._holding():
                self.upload.value = ()  # so choosing the same file again fires
        self._show()

    def _on_class(self, class_index):
        if class_index is not None:
            self.state.select_class(class_index)

    def _on_search(self, text: str):
        if not text:
            return
        if text not in self._label_index:
            close = difflib.get_close_matches(text, self.labels, n=3, cutoff=0.5)
            raise ValueError(f"no class called {text!r}" + (f"; did you mean {', '.join(close)}?" if close else ""))
        self.state.select_class(self._label_index[text])

    # ---- the view ---------------------------------------------------------------------------------
    def _show(self, keep_search: bool = False):
        """Set every widget from the state, then draw. The search box keeps only the current class's name
        (or, with ``keep_search``, whatever it holds)."""
        state = self.state
        photos = [*dict.fromkeys([*self.image_picker.options, *state.photos])]
        classes = [(f"{self.labels[i]} · {state.probabilities[i]:.1%}", i) for i in state.best]
        searched = self._label_index.get(self.class_search.value)
        with self._holding():
            if photos != list(self.image_picker.options):
                self.image_picker.options = photos
            self.image_picker.value = state.photo_name
            if classes != list(self.class_picker.options):
                self.class_picker.options = classes
            self.class_picker.value = state.class_index if state.class_index in state.best else None
            if not keep_search and searched != state.class_index:
                self.class_search.value = ""
            self.layer_picker.value = state.layer
            self.layer_picker.disabled = not uses_layer(state.method)  # pixel methods map the input itself
            self.method_picker.value = state.method
            self.shared_scale_box.value = state.shared_scale
        self.scale_note.value = f"<small>{SCALE_NOTES[state.shared_scale]}</small>"
        self._render()

    def _render(self):
        state, heatmap = self.state, self.state.heatmap
        colours = matplotlib.colormaps[self.colormap.value]
        # each cell drawn on its receptive field's centre: the model and the layer the map comes from
        full = upsample_where_known(heatmap, state.pixels.shape[:2], state.bundle,
                                    state.layer if maps_at_layer(state.method) else None)
        self.original_view.value = png_bytes(state.pixels)
        self.heatmap_view.value = png_bytes(colours(full)[..., :3] * 255)
        self.overlay_view.value = png_bytes(overlay(state.pixels, full, self.opacity.value, self.colormap.value))
        self.colorbar.value = png_bytes(colours(np.linspace(0, 1, 256))[None, :, :3].repeat(8, axis=0) * 255)
        top = "the strongest of this photo's top classes" if state.shared_scale else "this class's strongest"
        self.colorbar_note.value = f"<small>0 (no evidence) → 1 ({top})</small>"
        rank = int((state.probabilities > state.probabilities[state.class_index]).sum()) + 1
        h, w = heatmap.shape
        self.caption.value = (f"<b>{self.labels[state.class_index]}</b> · probability {self.probability:.1%} · "
                              f"rank {rank} of {len(state.probabilities)} · {state.method} {h}×{w} "
                              f"{f'at {state.layer}' if uses_layer(state.method) else 'on the pixels (any layer)'}"
                              + (f" · peak {heatmap.max():.2f} of the shared scale" if state.shared_scale else ""))
        if not heatmap.any() and not self.message:
            self._say(f"The map is empty: at {state.layer}, nothing in this photo speaks FOR "
                      f"{self.labels[state.class_index]!r} ({state.method}).")
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
