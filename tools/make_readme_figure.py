"""Regenerate notebooks/images/series.png, the README's picture: one photo through the whole series.

    python tools/make_readme_figure.py

Panels: the photo · 16 feature maps of an early layer (01) · robust filter patterns (02) · Grad-CAM
for "Egyptian cat" and for "espresso" on the cat|coffee collage (03).
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import cnnviz  # noqa: E402  (before TensorFlow: quiet logs)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "notebooks" / "images" / "series.png"
EGYPTIAN_CAT, ESPRESSO = 285, 967


def main() -> None:
    bundle = cnnviz.load_model()
    collage = cnnviz.sample_photo("cat_and_coffee")  # the series' photos: the collage whole, the cat at 87.5%
    cat = cnnviz.sample_photo("cat")
    maps = cnnviz.layer_activations(bundle, cat, ["block2b_expand_activation"])["block2b_expand_activation"]
    grid = cnnviz.activation_grid(maps[..., :16], images_per_row=4, separator=2, fill=0)
    patterns = cnnviz.visualize_filters(bundle, "block4a_expand_bn", filters=range(4), size=112, robust=True,
                                        progress=False)
    heatmaps = cnnviz.gradcam(bundle, np.stack([collage, collage]), class_index=[EGYPTIAN_CAT, ESPRESSO])
    aligned = dict(model=bundle, layer=bundle.last_conv_layer)  # each cell on its receptive field's centre

    panels = [(cat.astype("uint8"), "the photo"),
              (grid, "01 · feature maps"),
              (cnnviz.filter_grid(patterns.images, margin=4, columns=2), "02 · filter patterns"),
              (cnnviz.overlay(collage, heatmaps[0], **aligned), '03 · Grad-CAM "Egyptian cat"'),
              (cnnviz.overlay(collage, heatmaps[1], **aligned), '03 · Grad-CAM "espresso"')]
    figure, axes = plt.subplots(1, len(panels), figsize=(3.0 * len(panels), 3.3))
    for ax, (picture, title) in zip(axes, panels):
        ax.imshow(picture, cmap="viridis" if picture.ndim == 2 else None)
        ax.set_title(title, fontsize=11)
        ax.axis("off")
    figure.tight_layout()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(OUT, dpi=90)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
