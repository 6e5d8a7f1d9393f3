"""The ``cnnviz`` command (also ``python -m cnnviz``): predict, Grad-CAM and filter patterns from a shell.

    cnnviz predict coffee --top 3
    cnnviz gradcam cat --class Egyptian_cat -o cat_gradcam.png
    cnnviz filters block2a_expand_bn -o patterns.png --filters 0-15
    cnnviz explorer                 # the class explorer alone as a web page (Voilà), for a classroom

PHOTO is a path or a bundled sample's name (``cnnviz.sample_images()``). User mistakes (a missing
file, an unknown class or layer, a bad number) end with one ``cnnviz <command>: error: …`` line and
exit status 2, as argparse does for bad arguments; never with a traceback.
"""
from __future__ import annotations

import argparse
import difflib
import importlib.resources
import importlib.util
import subprocess
import sys
from pathlib import Path

from PIL import Image

from .filters import filter_grid, visualize_filters
from .heatmaps import save_gradcam
from .methods import gradcam
from .images import fit, load_image
from .models import class_names, load_model

PREDICT_CROP = 0.875  # ImageNet's evaluation crop, as in the notebooks
DEFAULT_FILTERS = 16  # the first 16: a few seconds at 128×128 on 2 CPU cores (the notebook grid has 64)


def positive_int(text: str) -> int:
    value = int(text) if text.lstrip("-").isdigit() else None
    if value is None or value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number ≥ 1, got {text!r}")
    return value


def port_number(text: str) -> int:
    value = int(text) if text.isdigit() else None
    if value is None or not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number in [1, 65535], got {text!r}")
    return value


def unit_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value <= 1:  # False for NaN too
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return value


def filter_indices(text: str) -> list[int]:
    """``16`` → the first 16 filters; ``0-15`` → filters 0 to 15 inclusive; ``3,7,12`` → those three."""
    try:
        if "-" in text:
            first, last = (int(part) for part in text.split("-"))
            indices = list(range(first, last + 1))
        elif "," in text:
            indices = [int(part) for part in text.split(",") if part.strip()]
        else:
            indices = list(range(int(text)))
    except ValueError:
        indices = []
    if not indices or min(indices) < 0:
        raise argparse.ArgumentTypeError(f"expected N (the first N filters), A-B (A ≤ B) or a list 3,7,12 of "
                                         f"indices ≥ 0; got {text!r}")
    return indices


def output_path(text: str) -> Path:
    """An image file name whose folder exists and whose suffix PIL can write (checked before any work)."""
    path = Path(text)
    if path.suffix.lower() not in Image.registered_extensions():
        raise argparse.ArgumentTypeError(f"{text!r} needs an image suffix such as .png or .jpg")
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"folder {str(path.parent)!r} does not exist")
    return path


def class_index_of(text: str, names: list[str]) -> int:
    """A class given as an index (``967``) or a name (``espresso``, ``Egyptian_cat``, ``"Egyptian cat"``)."""
    if text.strip().isdigit():
        index = int(text)
        if index >= len(names):
            raise ValueError(f"class index {index} is out of range: the model has {len(names)} classes (0–"
                             f"{len(names) - 1})")
        return index
    key = "_".join(text.split())
    matches = [i for i, name in enumerate(names) if name == key]
    matches = matches or [i for i, name in enumerate(names) if name.lower() == key.lower()]
    if len(matches) > 1:
        raise ValueError(f"{text!r} names {len(matches)} classes ({', '.join(map(str, matches))}): give the index")
    if not matches:
        close = difflib.get_close_matches(key, names, n=5, cutoff=0.6)
        hint = f"did you mean: {', '.join(close)}?" if close else "give an ImageNet class name or an index 0–999"
        raise ValueError(f"unknown class {text!r}; {hint}")
    return matches[0]


def run_predict(args) -> None:
    image = load_image(args.photo)  # before the model: a wrong photo fails in a blink
    bundle = load_model()
    for _, name, probability in bundle.predict(fit(image, bundle.input_size, PREDICT_CROP)[None], top=args.top)[0]:
        print(f"{name:<24} {probability:7.2%}")


def run_gradcam(args) -> None:
    image = load_image(args.photo)
    index = class_index_of(args.class_, class_names())  # the class names need no model: fail fast
    bundle = load_model()
    side = min(image.shape[:2])
    square = fit(image, (side, side))  # the centre square at full resolution: what the overlay shows
    model_input = fit(square, bundle.input_size)
    layer = bundle.last_conv_layer if args.layer is None else args.layer
    heatmap = gradcam(bundle, model_input, layer=layer, class_index=index)
    p = bundle.model.predict_on_batch(bundle.preprocess(model_input[None]))[0, index]
    # each cell on its receptive field's centre in the 224×224 input, drawn on the full-resolution square
    save_gradcam(square, heatmap, args.output, alpha=args.alpha, model=bundle, layer=layer,
                 input_size=bundle.input_size)
    print(f"{args.output}: Grad-CAM of {class_names()[index]} (class {index}, p = {p:.3f}) at layer "
          f"{layer}, {side}×{side}")


def run_filters(args) -> None:
    bundle = load_model()
    patterns = visualize_filters(bundle, args.layer, args.filters, size=args.size, steps=args.steps,
                                 robust=args.robust, progress=True)
    grid = filter_grid(patterns.images)
    Image.fromarray(grid).save(args.output)
    print(f"{args.output}: {len(patterns.images)} patterns of {args.layer}, grid {grid.shape[1]}×{grid.shape[0]}")


APP = ("app", "explorer.ipynb")  # the app notebook Voilà serves, package data: cnnviz/app/explorer.ipynb


def voila_command(notebook: Path, port: int, browser: bool) -> list[str]:
    """The command serving ``notebook`` on 127.0.0.1:``port``; a clear ValueError when Voilà is missing."""
    if importlib.util.find_spec("voila") is None:
        raise ValueError("Voilà is not installed here: pip install voila (or pip install 'cnnviz[notebooks]'), "
                         "or open notebooks/04_class_explorer.ipynb in JupyterLab instead")
    return [sys.executable, "-m", "voila", str(notebook), f"--port={port}", "--Voila.ip=127.0.0.1",
            "--Voila.port_retries=0", *([] if browser else ["--no-browser"])]


def run_explorer(args) -> int:
    with importlib.resources.as_file(importlib.resources.files("cnnviz").joinpath(*APP)) as notebook:
        command = voila_command(notebook, args.port, browser=not args.no_browser)
        print(f"Serving the class explorer at http://127.0.0.1:{args.port}/ with Voilà; Ctrl+C stops it.",
              flush=True)
        try:
            return subprocess.call(command)
        except KeyboardInterrupt:  # Voilà got the Ctrl+C too and shuts its kernel down
            return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cnnviz", description="What a convolutional network sees, from the "
                                     "shell. Uses the bundled EfficientNet-Lite0 (offline).")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{predict,gradcam,filters,explorer}")
    photo_help = "an image file, or a bundled sample: camera, cat, cat_and_coffee, coffee, grace_hopper, …"

    predict = commands.add_parser("predict", help="the top ImageNet classes of a photo",
                                  description="Classify a photo (centre crop 87.5%%, 224×224).")
    predict.add_argument("photo", help=photo_help)
    predict.add_argument("--top", type=positive_int, default=5, help="how many classes to list (default 5)")
    predict.set_defaults(run=run_predict, parser=predict)

    cam = commands.add_parser("gradcam", help="where the network looks for a class: a Grad-CAM overlay image",
                              description="Grad-CAM of one class on the photo's centre square, saved as an image.")
    cam.add_argument("photo", help=photo_help)
    cam.add_argument("--class", dest="class_", required=True, metavar="CLASS",
                     help='an ImageNet class name (espresso, Egyptian_cat, "Egyptian cat") or index (0–999)')
    cam.add_argument("-o", "--output", type=output_path, required=True, help="the image to write (.png, .jpg)")
    cam.add_argument("--layer", help="a spatial layer (default: top_activation, the last one)")
    cam.add_argument("--alpha", type=unit_float, default=0.4, help="heatmap opacity in [0, 1] (default 0.4)")
    cam.set_defaults(run=run_gradcam, parser=cam)

    filters = commands.add_parser("filters", help="the input pattern each filter of a layer responds to most",
                                  description="Gradient ascent in input space, one pattern per filter, as a grid.")
    filters.add_argument("layer", help="a spatial layer, e.g. block2a_expand_bn (a *_bn layer gives the "
                                       "clearest patterns); python -c 'import cnnviz; print(cnnviz.conv_layers("
                                       "cnnviz.load_model()))' lists them")
    filters.add_argument("-o", "--output", type=output_path, required=True, help="the grid image to write")
    filters.add_argument("--filters", type=filter_indices, default=list(range(DEFAULT_FILTERS)),
                         help=f"N (the first N), A-B or 3,7,12 (default: the first {DEFAULT_FILTERS})")
    filters.add_argument("--size", type=positive_int, default=128, help="pattern side in pixels, ≥ 32 "
                         "(default 128)")
    filters.add_argument("--steps", type=positive_int, help="gradient-ascent steps (default 40, robust 64)")
    filters.add_argument("--robust", action="store_true", help="robust mode: jitter, scale and a decorrelated "
                         "image parameterisation; recognisable patterns, slower")
    filters.set_defaults(run=run_filters, parser=filters)

    explorer = commands.add_parser("explorer", help="the class explorer alone as a web page (Voilà), for a class",
                                   description="Serve the class explorer (photo, class, layer, method, shared "
                                               "scale) as a web page with Voilà, without the notebook around it. "
                                               "Needs voila (in the notebooks extra).")
    explorer.add_argument("--port", type=port_number, default=8866, help="the port on 127.0.0.1 (default 8866)")
    explorer.add_argument("--no-browser", action="store_true", help="do not open a browser tab")
    explorer.set_defaults(run=run_explorer, parser=explorer)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        status = args.run(args)
    except (FileNotFoundError, ValueError) as error:  # cnnviz's messages for bad input: one line, no trace
        args.parser.error(" ".join(str(error).split()))
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
