"""The explorer's state without widgets: raw maps, own vs shared scale, the cache, methods, bad input."""
import numpy as np
import pytest

import cnnviz
from cnnviz import explorer_state
from cnnviz.explorer_state import (ExplorerState, RawMaps, explorer_method, explorer_methods, maps_at_layer,
                                   top_at_once, uses_layer)
from cnnviz.methods import METHODS
from cnnviz.models import class_names

GOLDFISH, ESPRESSO, EGYPTIAN_CAT = (class_names().index(name) for name in ("goldfish", "espresso", "Egyptian_cat"))


@pytest.fixture(scope="module")
def dense_kernel(bundle):
    """The final Dense weights W (1280, 1000): at top_activation (then GAP → Dense) α_k^c = W[k, c] / (h·w)."""
    return bundle.model.get_layer("logits").get_weights()[0]


@pytest.fixture(scope="module")
def head(bundle):
    """A tap giving top_activation's output A (N, 7, 7, 1280) for preprocessed images."""
    return cnnviz.tap_model(bundle.model, ["top_activation"])


def activations(bundle, head, pixels) -> np.ndarray:
    (layer_output,), _ = head(bundle.preprocess(pixels[None]))
    return np.asarray(layer_output)[0]


@pytest.fixture
def state(bundle):
    state = ExplorerState(bundle)
    state.select_photo("cat")
    return state


def cam_maps(bundle, head, dense_kernel):
    """An independent explorer method: CAM (Zhou et al. 2016), ReLU(A @ W[:, c]), at top_activation only."""
    def raw_maps(bundle_, pixels, layer, classes):
        assert layer == "top_activation"
        return np.maximum(np.einsum("hwc,ck->khw", activations(bundle, head, pixels), dense_kernel[:, classes]), 0)
    return explorer_method(raw_maps)


def test_a_photo_costs_one_pass_and_gives_its_top_classes(bundle, state, cat, head, dense_kernel):
    assert (state.photo_name, state.layer, state.method, state.forward_passes) == ("cat", "top_activation",
                                                                                   "Grad-CAM", 1)
    logits = bundle.model.predict_on_batch(bundle.preprocess(cat[None]))  # the model ends in a softmax layer
    assert state.best == [int(i) for i in np.argsort(-np.asarray(logits)[0])[:5]] and state.class_index == state.best[0]
    np.testing.assert_allclose(state.probabilities, np.asarray(logits)[0], atol=1e-5)
    np.testing.assert_array_equal(state.pixels, cat)
    # raw Grad-CAM at the head is CAM / (h·w): an independent formula for the magnitude, not only the shape
    expected = np.maximum(activations(bundle, head, cat) @ dense_kernel[:, state.class_index], 0) / 49
    np.testing.assert_allclose(state.raw_heatmap, expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(state.heatmap, cnnviz.gradcam(bundle, cat, class_index=state.class_index), atol=1e-5)
    assert state.heatmap.max() == 1 and state.scale == pytest.approx(expected.max(), rel=1e-4)


def test_shared_scale_makes_an_absent_class_weak(state):
    state.select_class(GOLDFISH)
    own = state.heatmap
    assert own.max() == 1  # its own maximum: the goldfish map looks as strong as the cat's
    passes = state.forward_passes
    state.shared_scale = True
    shared = state.heatmap
    tops = [state._maps[("Grad-CAM", "top_activation", c)].max() for c in state.best]
    assert state.scale == pytest.approx(max(max(tops), state.raw_heatmap.max()))
    assert shared.max() < 0.5, f"goldfish on the cat photo reaches {shared.max():.2f} of the shared scale"
    np.testing.assert_allclose(shared * state.scale, own * state.raw_heatmap.max(), rtol=1e-5, atol=1e-6)
    peaks = []
    for class_index in state.best:
        state.select_class(class_index)
        peaks.append(state.heatmap.max())
    # the cat classes (tiger cat, Egyptian cat, tabby: 0.97, 1, 0.81 measured) keep the top of the scale
    assert max(peaks) == 1 and min(peaks[:3]) > 0.5 > shared.max()
    assert state.forward_passes == passes  # toggling and switching: nothing recomputed


def test_switching_among_cached_classes_costs_no_pass(bundle, state, cat):
    passes = state.forward_passes
    for class_index in [*state.best[1:], state.best[0]]:
        state.select_class(class_index)
        np.testing.assert_allclose(state.heatmap, cnnviz.gradcam(bundle, cat, class_index=class_index), atol=1e-5)
    assert state.forward_passes == passes
    state.select_class(ESPRESSO)  # outside the top 5: one pass, then cached
    state.select_class(state.best[0])
    state.select_class(ESPRESSO)
    assert state.forward_passes == passes + 1


def test_a_layer_change_explains_the_top_classes_in_one_pass(bundle, state, cat):
    passes = state.forward_passes
    state.layer = "block5c_add"
    assert state.forward_passes == passes + 1 and state.heatmap.shape == (14, 14)
    for class_index in state.best:
        state.select_class(class_index)
        np.testing.assert_allclose(state.heatmap, cnnviz.gradcam(bundle, cat, "block5c_add", class_index), atol=1e-5)
    state.layer = "top_activation"  # still cached
    assert state.forward_passes == passes + 1 and state.heatmap.shape == (7, 7)


def test_the_cache_is_bounded_least_recently_used_out(bundle, monkeypatch):
    calls = []

    def numbered(bundle, pixels, layer, classes):  # class c's map is c + 1 everywhere: easy to check
        calls.append(list(classes))
        return np.ones((len(classes), 2, 2)) * (np.asarray(classes)[:, None, None] + 1)
    monkeypatch.setitem(explorer_state.EXPLORER_METHODS, "numbered", explorer_method(numbered))
    state = ExplorerState(bundle, cache_size=8, method="numbered")
    state.select_photo("coffee")
    assert len(state._maps) == 5 and calls == [list(state.best)]
    for class_index in range(10, 20):
        state.select_class(class_index)
        assert len(state._maps) <= 8 and state.heatmap.max() == 1 and state.raw_heatmap.max() == class_index + 1
    assert ("numbered", "top_activation", 19) in state._maps and ("numbered", "top_activation", 10) not in state._maps
    assert calls[-1][-1] == 19 and set(calls[-1][:-1]) in (set(), set(state.best))  # the top classes come back
    calls.clear()                                                                   # once all were evicted
    state.select_class(10)  # least recently used: evicted, computed again
    assert len(calls) == 1 and 10 in calls[0] and state.raw_heatmap.max() == 11 and len(state._maps) <= 8
    with pytest.raises(ValueError, match="cache_size"):
        ExplorerState(bundle, top=5, cache_size=5)


def test_a_new_photo_forgets_the_old_maps(bundle, state, coffee):
    state.select_class(ESPRESSO)
    state.select_photo("coffee")
    assert state.class_index == ESPRESSO == state.best[0]  # the coffee's own top class
    assert all(key[2] in state.best for key in state._maps)  # only this photo's maps
    np.testing.assert_allclose(state.heatmap, cnnviz.gradcam(bundle, coffee, class_index=ESPRESSO), atol=1e-5)
    state.add_photo("my coffee", cnnviz.load_image("coffee"))  # full size in: fitted with the centre crop
    np.testing.assert_array_equal(state.pixels, coffee)


def test_a_registered_method_is_one_line_and_cached_apart(bundle, head, dense_kernel, state, monkeypatch):
    monkeypatch.setitem(explorer_state.EXPLORER_METHODS, "CAM by hand", cam_maps(bundle, head, dense_kernel))
    assert list(explorer_methods())[0] == "Grad-CAM" and list(explorer_methods())[-1] == "CAM by hand"
    gradcam_map, passes = state.heatmap, state.forward_passes
    state.method = "CAM by hand"
    assert state.forward_passes == passes + 1
    np.testing.assert_allclose(state.heatmap, gradcam_map, atol=1e-5)  # CAM = Grad-CAM at the head, normalised
    np.testing.assert_allclose(state.raw_heatmap, 49 * state._maps[("Grad-CAM", "top_activation",
                                                                    state.class_index)], rtol=1e-4, atol=1e-5)
    state.select_class(state.best[3])  # the top classes came with that call
    state.method = "Grad-CAM"
    assert state.forward_passes == passes + 1


def test_explorer_method_finds_the_top_classes_itself(bundle, cat):
    method = explorer_method(lambda bundle, pixels, layer, classes: np.ones((len(classes), 2, 2)))
    found = method(bundle, cat, "top_activation", None, 3)
    reference = explorer_methods()["Grad-CAM"](bundle, cat, "top_activation", None, 3)
    np.testing.assert_array_equal(found.classes, reference.classes)
    np.testing.assert_allclose(found.logits, reference.logits, rtol=1e-4, atol=1e-4)  # logits, not probabilities
    assert found.logits.min() < 0
    assert found.maps.shape == (3, 2, 2)
    assert list(method(bundle, cat, "top_activation", [1, 2], 3).classes) == [1, 2]


def test_empty_maps_stay_zero_not_nan(bundle, monkeypatch, state):
    monkeypatch.setitem(explorer_state.EXPLORER_METHODS, "nothing",
                        explorer_method(lambda bundle, pixels, layer, classes: np.zeros((len(classes), 3, 3))))
    state.method = "nothing"
    for shared in (False, True):
        state.shared_scale = shared
        assert state.scale == 0 and not state.heatmap.any() and np.isfinite(state.heatmap).all()


@pytest.mark.parametrize("maps, classes", [(np.full((1, 2, 2), -1.0), [0]), (np.full((1, 2, 2), np.nan), [0]),
                                           (np.ones((2, 2)), [0]), (np.ones((1, 2, 2)), None)])
def test_a_broken_method_is_a_clear_error(bundle, monkeypatch, state, maps, classes):
    def broken(bundle, pixels, layer, asked, top):
        given = np.array(classes if classes is not None else [999 - asked[0]] if asked is not None else [0])
        return RawMaps(given, maps, np.zeros(1000))
    monkeypatch.setitem(explorer_state.EXPLORER_METHODS, "broken", broken)
    with pytest.raises(ValueError, match="must return .* finite maps ≥ 0 for the k classes asked"):
        state.method = "broken"
    assert state.method == "Grad-CAM"


def test_a_failing_class_leaves_the_state_as_it_was(bundle, monkeypatch, state):
    def fails_for_espresso(bundle, pixels, layer, classes):
        if ESPRESSO in classes:
            raise RuntimeError("no espresso today")
        return np.ones((len(classes), 2, 2))
    monkeypatch.setitem(explorer_state.EXPLORER_METHODS, "picky", explorer_method(fails_for_espresso))
    state.method = "picky"
    before = state.class_index
    with pytest.raises(RuntimeError, match="no espresso today"):
        state.select_class(ESPRESSO)
    assert state.class_index == before and state.heatmap.shape == (2, 2)
    with pytest.raises(ValueError, match="no photo yet"):
        ExplorerState(bundle).heatmap


def test_bad_input_is_a_clear_error_and_changes_nothing(bundle, state, cat):
    before = (state.photo_name, state.class_index, state.layer, state.method, state.heatmap.copy())
    with pytest.raises(ValueError, match="unknown method 'LayerKAM'; choose one of Grad-CAM"):
        state.method = "LayerKAM"
    with pytest.raises(ValueError, match="no layer named 'top_activatoin'"):
        state.layer = "top_activatoin"
    with pytest.raises(ValueError, match="class index 1000 is out of range"):
        state.select_class(1000)
    with pytest.raises(TypeError, match="must be an int"):
        state.select_class(True)
    with pytest.raises(ValueError, match="no photo 'kitten'"):
        state.select_photo("kitten")
    for bad in (np.nan, np.inf):
        pixels = cat.copy()
        pixels[10, 10, 1] = bad
        with pytest.raises(ValueError, match="NaN or infinite"):
            state.add_photo("broken", pixels)
    with pytest.raises(ValueError, match=r"got shape \(224, 224\)"):
        state.add_photo("grey", cat[..., 0])
    assert "broken" not in state.photos and "grey" not in state.photos
    after = (state.photo_name, state.class_index, state.layer, state.method, state.heatmap)
    assert after[:4] == before[:4]
    np.testing.assert_array_equal(after[4], before[4])
    with pytest.raises(TypeError, match="ModelBundle"):
        ExplorerState(bundle.model)
    with pytest.raises(ValueError, match="top must be"):
        ExplorerState(bundle, top=0)


# Each picker entry against the public function it wraps (max-normalised, as the explorer shows it alone),
# with the explorer's cheaper options: the picker is the registry.
PUBLIC = {label: METHODS[name] for label, name in zip(explorer_methods(), METHODS)}


def test_the_picker_offers_the_method_family():
    assert list(explorer_methods()) == [f"{m.label} ({m.explorer_note})" if m.explorer_note else m.label
                                        for m in METHODS.values()]
    assert [label for label in PUBLIC if not uses_layer(label)] == [
        "saliency", "SmoothGrad (16 samples)", "Integrated Gradients (32 steps)", "guided backprop",
        "occlusion (48 px patches)", "RISE (256 masks)"]
    assert [label for label in PUBLIC if not top_at_once(label)] == ["SmoothGrad (16 samples)",
                                                                     "Integrated Gradients (32 steps)"]


@pytest.mark.parametrize("label", PUBLIC)
def test_each_method_shows_what_its_function_gives(bundle, coffee, label):
    state = ExplorerState(bundle, method=label)
    state.select_photo("coffee")
    assert state.forward_passes == 1 and state.best[0] == ESPRESSO
    assert len(state._maps) == (5 if top_at_once(label) else 1)  # costly methods: the shown class only
    method = PUBLIC[label]
    expected = method(bundle, coffee, class_index=ESPRESSO, normalize=True, **method.explorer_options)
    np.testing.assert_allclose(state.heatmap, expected, atol=1e-4)
    assert state.heatmap.shape == ((7, 7) if maps_at_layer(label) else (224, 224))


def test_a_costly_method_explains_classes_as_they_are_shown(bundle, monkeypatch):
    calls = []

    def numbered(bundle, pixels, layer, classes):
        calls.append(list(classes))
        return np.ones((len(classes), 4, 4)) * (np.asarray(classes)[:, None, None] + 1)
    monkeypatch.setitem(explorer_state.EXPLORER_METHODS, "slow",
                        explorer_method(numbered, uses_layer=False, top_at_once=False))
    state = ExplorerState(bundle, method="slow")
    state.select_photo("cat")
    state.select_class(state.best[1])
    assert calls == [[state.best[0]], [state.best[1]]]
    state.layer = "block5c_add"  # a pixel method: its maps serve every layer
    assert len(calls) == 2 and state.heatmap.shape == (4, 4)
    state.shared_scale = True  # the scale needs all top classes: the three missing ones in one call
    assert state.scale == max(state.best) + 1 and calls[-1] == state.best[2:] and len(calls) == 3
