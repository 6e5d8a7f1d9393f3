"""The class explorer's view, headless: set each control in Python, assert the pictures and the state
(the state alone, without widgets: tests/test_explorer_state.py)."""
import datetime
import io
import logging
import tracemalloc

import matplotlib
import numpy as np
import pytest
from PIL import Image

import cnnviz
from cnnviz import explorer_state
from cnnviz.explorer import class_labels
from cnnviz.explorer_state import explorer_method
from cnnviz.models import class_names

ESPRESSO, EGYPTIAN_CAT = class_names().index("espresso"), class_names().index("Egyptian_cat")


def picture(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype="float32")


def pictures(explorer) -> dict:
    return {name: getattr(explorer, f"{name}_view").value for name in ("original", "heatmap", "overlay")}


def upload(explorer, name: str, content: bytes):
    explorer.upload.value = ({"name": name, "type": "", "size": len(content), "content": memoryview(content),
                              "last_modified": datetime.datetime.now()},)


def png_file(pixels) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(pixels, dtype="uint8")).save(buffer, format="png")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def explorer(bundle):
    return cnnviz.ClassExplorer(bundle)


@pytest.fixture
def fresh(explorer):
    """The module's explorer back on the collage, top class, last layer, default look."""
    explorer.image_picker.value = "cat_and_coffee"
    explorer.layer_picker.value = "top_activation"
    explorer.class_picker.value = explorer.best[0]
    explorer.opacity.value, explorer.colormap.value = 0.4, "jet"
    return explorer


def test_starts_on_the_collage_with_the_top_class_at_the_last_layer(bundle, collage):
    explorer = cnnviz.ClassExplorer(bundle)
    assert (explorer.image_name, explorer.layer, explorer.forward_passes) == ("cat_and_coffee", "top_activation", 1)
    assert explorer.class_index == int(np.argmax(explorer.probabilities)) == explorer.best[0]
    assert explorer.probabilities.sum() == pytest.approx(1, abs=1e-4)
    assert [value for _, value in explorer.class_picker.options] == explorer.best and len(explorer.best) == 5
    assert f"{explorer.probability:.1%}" in explorer.caption.value
    assert class_labels()[explorer.class_index] in explorer.caption.value
    for png in pictures(explorer).values():
        assert picture(png).shape == (224, 224, 3)
    assert picture(explorer.original_view.value).std() > 20  # a photo, not a blank
    assert explorer.heatmap.shape == (7, 7) and explorer.heatmap.max() == pytest.approx(1)
    expected = cnnviz.gradcam(bundle, explorer.pixels, class_index=explorer.class_index)
    np.testing.assert_allclose(explorer.heatmap, expected, atol=1e-5)
    assert explorer.message == ""


def test_class_switch_redraws_without_a_forward_pass(bundle, fresh):
    passes, before = fresh.forward_passes, pictures(fresh)
    for class_index in fresh.best[1:]:
        fresh.class_picker.value = class_index
        now = pictures(fresh)
        assert fresh.class_index == class_index and class_labels()[class_index] in fresh.caption.value
        assert now["original"] == before["original"]
        assert now["heatmap"] != before["heatmap"] and now["overlay"] != before["overlay"]
        np.testing.assert_allclose(fresh.heatmap, cnnviz.gradcam(bundle, fresh.pixels, class_index=class_index),
                                   atol=1e-5)
        before = now
    assert fresh.forward_passes == passes


def test_search_box_reaches_any_class_and_caches_it(bundle, fresh):
    passes = fresh.forward_passes
    fresh.class_search.value = "espresso"
    assert fresh.class_index == ESPRESSO and fresh.class_picker.value in (ESPRESSO, None)
    full = cnnviz.upsample(fresh.heatmap, (224, 224))
    assert full[:, 112:].sum() / full.sum() > 0.7  # the coffee is on the right half of the collage
    far = class_labels().index("goldfish")  # surely not in the top 5: one more pass, then cached
    fresh.class_search.value = "goldfish"
    assert (fresh.class_index, fresh.class_picker.value, fresh.forward_passes) == (far, None, passes + 1)
    fresh.class_picker.value = fresh.best[0]
    fresh.class_search.value = "goldfish"
    assert fresh.forward_passes == passes + 1
    assert fresh.class_search.value == "goldfish" and fresh.probability == pytest.approx(fresh.probabilities[far])


def test_search_box_duplicates_and_unknown_names(fresh):
    assert class_labels().index("crane (134)") == 134 and class_labels().index("crane (517)") == 517
    fresh.class_search.value = "crane (517)"
    assert fresh.class_index == 517
    fresh.class_search.value = "expresso"
    assert fresh.class_index == 517 and "no class called 'expresso'" in fresh.message
    assert "espresso" in fresh.message  # a suggestion


def test_layer_change_gives_a_finer_map_with_one_pass(bundle, fresh):
    passes = fresh.forward_passes
    fresh.layer_picker.value = "block5c_add"
    assert fresh.heatmap.shape == (14, 14) and fresh.forward_passes == passes + 1 and "14×14" in fresh.caption.value
    np.testing.assert_allclose(fresh.heatmap, cnnviz.gradcam(bundle, fresh.pixels, "block5c_add",
                                                             fresh.class_index), atol=1e-5)
    fresh.class_picker.value = fresh.best[2]  # the top classes came with that one pass
    assert fresh.forward_passes == passes + 1
    assert [name for _, name in fresh.layer_picker.options] == [info.name for info in cnnviz.conv_layers(bundle)]


def test_opacity_and_colormap(fresh):
    before = pictures(fresh)
    fresh.opacity.value = 0.0
    assert pictures(fresh)["heatmap"] == before["heatmap"]
    np.testing.assert_allclose(picture(fresh.overlay_view.value), picture(before["original"]), atol=1)
    fresh.opacity.value = 1.0
    np.testing.assert_allclose(picture(fresh.overlay_view.value), picture(fresh.heatmap_view.value), atol=1)
    fresh.colormap.value = "viridis"
    heatmap = picture(fresh.heatmap_view.value)
    hottest = np.unravel_index(np.argmax(cnnviz.upsample(fresh.heatmap, (224, 224), fresh.state.bundle, fresh.layer)),
                             (224, 224))  # the explorer draws each cell on its receptive field's centre
    np.testing.assert_allclose(heatmap[hottest], [253, 231, 37], atol=3)  # viridis' top colour: yellow
    assert picture(fresh.colorbar.value).shape == (8, 256, 3)


def test_image_change_and_good_upload(bundle, fresh, coffee):
    passes = fresh.forward_passes
    fresh.image_picker.value = "coffee"
    assert fresh.class_name == "espresso" and fresh.forward_passes == passes + 1
    assert fresh.class_search.value == ""
    upload(fresh, "my cat.png", png_file(cnnviz.load_image("cat")))
    assert fresh.image_name == "⬆ my cat.png" and fresh.image_name in fresh.image_picker.options
    assert fresh.class_name in ("tiger_cat", "Egyptian_cat", "tabby") and fresh.message == ""
    assert fresh.upload.value == ()  # cleared: the same file can be chosen again
    fresh.image_picker.value = "coffee"
    fresh.image_picker.value = "⬆ my cat.png"  # uploaded photos stay in the list
    assert fresh.class_name in ("tiger_cat", "Egyptian_cat", "tabby")


@pytest.mark.parametrize("name, content, says", [
    ("notes.txt", b"hello, not a picture", "not an image"),
    ("broken.png", png_file(np.zeros((64, 64, 3)))[:60], "corrupt"),
    ("huge.png", None, "megapixel"),
    ("big.jpg", b"\xff" * 21_000_000, "MB limit"),
])
def test_bad_upload_keeps_the_picture_and_explains(fresh, name, content, says):
    if content is None:  # 9000×9000 pixels, but a small file
        buffer = io.BytesIO()
        Image.new("1", (9000, 9000)).save(buffer, format="png")
        content = buffer.getvalue()
    before, state = pictures(fresh), (fresh.image_name, fresh.class_index, fresh.layer)
    upload(fresh, name, content)
    assert says in fresh.message and name in fresh.message and "/tmp" not in fresh.message
    assert fresh.message in fresh.status.value
    assert pictures(fresh) == before and (fresh.image_name, fresh.class_index, fresh.layer) == state
    assert not any(option.endswith(name) for option in fresh.image_picker.options)


def test_other_inputs(bundle, coffee):
    with pytest.raises(TypeError, match="ModelBundle"):
        cnnviz.ClassExplorer(bundle.model)
    explorer = cnnviz.ClassExplorer(bundle, image=coffee, top=3)
    assert explorer.image_name == "⬆ your image" and explorer.class_name == "espresso" and len(explorer.best) == 3
    bundle_repr = explorer._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle_repr


def test_200_class_switches_no_retracing_bounded_memory(fresh):
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    tf_logger = logging.getLogger("tensorflow")
    tf_logger.addHandler(handler)
    others = [class_labels()[i] for i in (1, 100, 200, 300, 400, 500, 600, 700, 800, 900)]  # new passes
    try:
        for step in range(200):
            if step == 20:
                tracemalloc.start()
                start = tracemalloc.get_traced_memory()[0]
            if step % 20 == 19:
                fresh.class_search.value = others[step // 20]
            else:
                fresh.class_picker.value = fresh.best[step % len(fresh.best)]
        growth = tracemalloc.get_traced_memory()[0] - start
    finally:
        tracemalloc.stop()
        tf_logger.removeHandler(handler)
    assert not [r for r in records if "retracing" in r.getMessage()]
    assert growth < 5_000_000, f"memory grew by {growth / 1e6:.1f} MB over 180 class switches"
    assert fresh.renders > 200


def test_a_class_with_no_positive_evidence_says_so(bundle, fresh):
    fresh.image_picker.value = "coffee"
    # At the last layer (then GAP → Dense) Grad-CAM's weights are the Dense column: map_c ∝ ReLU(A @ W[:, c])
    activations = cnnviz.gradcam_parts(bundle, fresh.pixels[None]).activations[0]
    maps = np.einsum("hwc,ck->khw", activations, bundle.model.get_layer("logits").get_weights()[0])
    empty = int(np.flatnonzero((maps <= 0).all(axis=(1, 2)))[0])
    fresh.class_search.value = class_labels()[empty]
    assert fresh.class_index == empty and not fresh.heatmap.any() and not np.isnan(fresh.heatmap).any()
    assert "map is empty" in fresh.message
    np.testing.assert_allclose(picture(fresh.overlay_view.value), picture(fresh.original_view.value) * 0.6
                               + np.array(matplotlib.colormaps["jet"](0.0)[:3]) * 255 * 0.4, atol=1.5)
    fresh.class_picker.value = fresh.best[0]
    assert fresh.message == ""


def mean_activation(bundle, pixels, layer, classes):
    """A class-blind test method: the layer's mean activation, the same map for every class."""
    (activations,), _ = cnnviz.tap_model(bundle.model, [layer])(bundle.preprocess(pixels[None]))
    mean = np.maximum(np.asarray(activations)[0].mean(axis=-1), 0)
    return np.repeat(mean[None], len(classes), axis=0)


def test_shared_scale_box_redraws_an_absent_class_weaker_without_a_pass(bundle):
    explorer = cnnviz.ClassExplorer(bundle, image="cat")
    assert "cnnviz-shared-scale" in explorer.shared_scale_box._dom_classes and not explorer.shared_scale
    assert "own maximum" in explorer.scale_note.value
    explorer.class_search.value = "goldfish"
    passes, own, own_map = explorer.forward_passes, pictures(explorer), explorer.heatmap
    assert own_map.max() == 1
    explorer.shared_scale_box.value = True
    assert explorer.shared_scale and explorer.state.shared_scale
    assert "absent class looks weak" in explorer.scale_note.value
    shared = pictures(explorer)
    assert shared["heatmap"] != own["heatmap"] and shared["overlay"] != own["overlay"]
    assert shared["original"] == own["original"] and explorer.forward_passes == passes
    assert explorer.heatmap.max() < 0.5 and "of the shared scale" in explorer.caption.value
    own_full, full = (cnnviz.upsample(m, (224, 224), bundle, explorer.layer) for m in (own_map, explorer.heatmap))
    hottest = np.unravel_index(np.argmax(full), full.shape)  # there: dark red before, cyan-blue now
    jet = matplotlib.colormaps["jet"]
    for png, value in ((own["heatmap"], own_full[hottest]), (shared["heatmap"], full[hottest])):
        np.testing.assert_allclose(picture(png)[hottest], np.array(jet(value)[:3]) * 255, atol=3)
    assert own_full[hottest] > 0.9 > 0.5 > full[hottest]
    explorer.shared_scale_box.value = False
    assert pictures(explorer) == own
    starts_shared = cnnviz.ClassExplorer(bundle, image="cat", shared_scale=True)
    assert starts_shared.shared_scale_box.value and starts_shared.shared_scale


def test_method_picker_changes_the_map(bundle, monkeypatch):
    monkeypatch.setitem(explorer_state.EXPLORER_METHODS, "mean activation", explorer_method(mean_activation))
    explorer = cnnviz.ClassExplorer(bundle)
    assert "cnnviz-method" in explorer.method_picker._dom_classes
    assert list(explorer.method_picker.options) == list(cnnviz.explorer_methods())
    assert explorer.method_picker.options[0] == "Grad-CAM" and explorer.method_picker.options[-1] == "mean activation"
    before, passes = pictures(explorer), explorer.forward_passes
    explorer.method_picker.value = "mean activation"
    assert explorer.method == "mean activation" and explorer.forward_passes == passes + 1
    assert pictures(explorer)["heatmap"] != before["heatmap"] and "mean activation 7×7" in explorer.caption.value
    expected = mean_activation(bundle, explorer.pixels, "top_activation", [0])[0]
    np.testing.assert_allclose(explorer.heatmap, expected / expected.max(), atol=1e-5)
    explorer.class_picker.value = explorer.best[1]  # class-blind: the same picture, no new pass
    assert explorer.forward_passes == passes + 1
    np.testing.assert_allclose(explorer.heatmap, expected / expected.max(), atol=1e-5)
    explorer.method_picker.value = "saliency"  # a pixel method: a full-resolution map
    assert explorer.heatmap.shape == (224, 224) and "saliency 224×224 on the pixels" in explorer.caption.value
    assert explorer.layer_picker.disabled
    explorer.method_picker.value = "Grad-CAM"
    assert not explorer.layer_picker.disabled
    assert pictures(explorer)["heatmap"] != before["heatmap"]  # another class now, Grad-CAM's map of it
    explorer.class_picker.value = explorer.best[0]
    assert pictures(explorer) == before and explorer.forward_passes == passes + 2  # all methods cached


def test_a_failing_method_is_a_message_and_the_picture_stays(bundle, monkeypatch):
    def failing(bundle, pixels, layer, classes):
        raise RuntimeError("out of memory (pretend)")

    def fails_beyond_the_top_class(bundle, pixels, layer, classes):
        if len(classes) > 1 or classes[0] != explorer.best[0]:
            raise RuntimeError("only the top class (pretend)")
        return np.ones((1, 2, 2))
    monkeypatch.setitem(explorer_state.EXPLORER_METHODS, "failing", explorer_method(failing))
    monkeypatch.setitem(explorer_state.EXPLORER_METHODS, "lazy", explorer_method(fails_beyond_the_top_class,
                                                                                 top_at_once=False))
    explorer = cnnviz.ClassExplorer(bundle)
    before = pictures(explorer)
    explorer.method_picker.value = "failing"
    assert "out of memory (pretend)" in explorer.message and explorer.message in explorer.status.value
    assert explorer.method == explorer.method_picker.value == "Grad-CAM" and pictures(explorer) == before
    explorer.class_picker.value = explorer.best[1]
    assert explorer.message == ""
    explorer.class_picker.value = explorer.best[0]
    explorer.method_picker.value = "lazy"
    assert explorer.method == "lazy" and explorer.message == ""
    explorer.shared_scale_box.value = True  # needs the other top classes: fails, says so, and stays off
    assert "only the top class" in explorer.message
    assert not explorer.shared_scale and not explorer.shared_scale_box.value and explorer.heatmap.shape == (2, 2)


def test_non_finite_pixels_are_refused_clearly(bundle, coffee, tmp_path):
    broken = coffee.copy()
    broken[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        cnnviz.ClassExplorer(bundle, image=broken)
    explorer = cnnviz.ClassExplorer(bundle)
    before = pictures(explorer)
    grey = np.full((64, 64), 100, dtype="float32")
    grey[3, 3] = np.nan
    buffer = io.BytesIO()
    Image.fromarray(grey, mode="F").save(buffer, format="tiff")  # a 32-bit float TIFF can hold NaN
    upload(explorer, "nan.tif", buffer.getvalue())
    assert "could not use the upload" in explorer.message and "NaN" in explorer.message
    assert pictures(explorer) == before and explorer.image_name == "cat_and_coffee"
