"""How fast does the class explorer react? Median time from a control's new value to the new PNG.

    .venv/bin/python benchmarks/bench_explorer.py [--repeats 15]

Measured in the kernel (no browser): class switch (cached maps, no forward pass — target < 50 ms, issue J),
a class from the search box outside the top 5 (one forward pass), opacity, the shared-scale box and
a switch among already computed methods (redraws), layer change, photo change (one forward pass), and a
photo change with each other method of the picker. Ratios are against one compiled Grad-CAM call
measured in the same run.
"""
import argparse
import statistics
import time

import cnnviz


def median_ms(action, values, repeats: int) -> float:
    """Set each value in turn via ``action``; the median wall time per change in milliseconds."""
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        action(values[i % len(values)])
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    repeats = parser.parse_args().repeats
    bundle = cnnviz.load_model()
    explorer = cnnviz.ClassExplorer(bundle)
    labels = cnnviz.class_labels()
    layers = ["top_activation", "block6d_add", "block5c_add"]
    methods = list(cnnviz.explorer_methods())
    for method in methods:  # compute each method's maps once, outside the timings
        explorer.method_picker.value = method
    explorer.method_picker.value = methods[0]
    for layer in layers:  # trace each layer's Grad-CAM once, outside the timings
        explorer.layer_picker.value = layer
    explorer.layer_picker.value = "top_activation"

    def set_class(class_index):
        explorer.class_picker.value = class_index

    def set_far_class(i):
        explorer.state.clear_cache()  # force the forward pass a never-seen class costs
        explorer.class_search.value = labels[i]

    def set_photo(name):
        explorer.image_picker.value = name

    def set_layer(layer):
        explorer.state.clear_cache()
        explorer.layer_picker.value = layer

    def set_opacity(value):
        explorer.opacity.value = value

    def toggle_scale(on):
        explorer.shared_scale_box.value = on

    def set_method(label):  # every method once cached: a switch back is a redraw
        explorer.method_picker.value = label

    gradcam_call = median_ms(lambda _: cnnviz.gradcam(bundle, explorer.pixels), [0], repeats)
    passes = explorer.forward_passes
    rows = [("class switch, top 5 (cached)", median_ms(set_class, explorer.best * 2 + explorer.best[::-1], repeats))]
    rows.append(("  forward passes during those", explorer.forward_passes - passes))
    rows += [
        ("opacity change", median_ms(set_opacity, [0.3, 0.5, 0.7], repeats)),
        ("shared scale on/off (cached)", median_ms(toggle_scale, [True, False], repeats)),
        ("class from search (1 pass)", median_ms(set_far_class, [1, 100, 500, 900], repeats)),
        # two layers: Grad-CAM keeps 2 compiled layers per model (cnnviz.caching), a third would recompile
        ("layer change (1 pass, top 5)", median_ms(set_layer, layers[:2], repeats)),
        ("photo change (1 pass)", median_ms(set_photo, ["coffee", "cat", "grace_hopper", "rocket"], repeats)),
    ]
    # A new photo with each method (compiled already): what a learner waits for after picking a photo.
    # SmoothGrad and Integrated Gradients explain only the shown class (16 and 32 passes); the others the top 5.
    photos = ["coffee", "cat", "grace_hopper", "rocket"]
    for method in [*methods[1:], methods[0]]:  # each method's map of this photo and class, untimed: then
        set_method(method)                     # a switch is a redraw
    rows.append((f"method switch, {len(methods)} cached", median_ms(set_method, [*methods[1:], methods[0]],
                                                                    len(methods))))
    for method in methods[1:]:
        explorer.method_picker.value = method
        rows.append((f"photo change, {method}", median_ms(set_photo, photos, min(repeats, 4))))
    explorer.method_picker.value = methods[0]
    print(f"one gradcam() call, compiled: {gradcam_call:7.1f} ms (reference)")
    for name, value in rows:
        if isinstance(value, int):
            print(f"{name:<42} {value:7d}")
        else:
            print(f"{name:<42} {value:7.1f} ms   ×{value / gradcam_call:6.2f} of one gradcam() call")
    class_switch = rows[0][1]
    print(f"class switch target < 50 ms: {'met' if class_switch < 50 else 'MISSED'} ({class_switch:.1f} ms)")


if __name__ == "__main__":
    main()
