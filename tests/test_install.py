"""The wheel and the sdist each give a working cnnviz when installed (not editable), used from elsewhere.

Each artefact is installed with ``pip install --no-deps --target``; a fresh interpreter whose working
directory is outside the repository, with that target first on PYTHONPATH, must import the installed
copy (not this checkout, not the editable install in .venv) and find the model, the class names and the
photos inside it.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from network import skip_offline

ROOT = Path(__file__).resolve().parents[1]
NOT_SHIPPED = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "notebooks",
                                     "benchmarks", ".ipynb_checkpoints")

SMOKE = """
import json, sys
from importlib.resources import files
from pathlib import Path

import cnnviz
from cnnviz.cli import main

bundle = cnnviz.load_model()
coffee = cnnviz.load_image("coffee", size=bundle.input_size, crop=0.875)
heatmap = cnnviz.gradcam(bundle, coffee, class_index=967)
main(["predict", "cat", "--top", "1"])
print(json.dumps({
    "file": cnnviz.__file__,
    "top": bundle.predict(coffee[None], top=1)[0][0][1],
    "samples": cnnviz.sample_images(),
    "cat": list(cnnviz.load_image("cat").shape),
    "heatmap": [list(heatmap.shape), float(heatmap.min()), float(heatmap.max())],
    "licences": [word in (files("cnnviz") / "data" / "README.md").read_text() for word in ("Apache-2.0", "MIT", "CC0")],
    "app": [cell["source"] for cell in json.loads((files("cnnviz") / "app" / "explorer.ipynb").read_text())["cells"]
            if cell["cell_type"] == "code"],
}))
"""


def run(*command, cwd=None, env=None):
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{command}\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    return result


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory):
    """{kind: file} for a wheel and an sdist built from a copy of this checkout (the tree stays clean)."""
    skip_offline()
    work = tmp_path_factory.mktemp("build")
    source = work / "cnnviz-src"
    shutil.copytree(ROOT, source, ignore=NOT_SHIPPED)
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(work / "dist"), str(source))
    run(sys.executable, "-m", "build", "--sdist", "--outdir", str(work / "dist"), str(source))
    return {"wheel": next((work / "dist").glob("cnnviz-*.whl")), "sdist": next((work / "dist").glob("cnnviz-*.tar.gz"))}


@pytest.mark.parametrize("kind", ["wheel", "sdist"])
def test_installed_package_works_from_another_directory(kind, artefacts, tmp_path):
    target, elsewhere = tmp_path / "site", tmp_path / "elsewhere"
    elsewhere.mkdir()
    run(sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(artefacts[kind]))
    assert "cnnviz.cli" in (target / "bin" / "cnnviz").read_text()  # the console script

    env = {**os.environ, "PYTHONPATH": str(target)}  # not this checkout: the installed copy only
    result = run(sys.executable, "-c", SMOKE, cwd=elsewhere, env=env)
    report = json.loads(result.stdout.splitlines()[-1])
    assert Path(report["file"]).resolve() == (target / "cnnviz" / "__init__.py").resolve()
    assert report["top"] == "espresso"
    assert report["samples"] == ["camera", "cat", "cat_and_coffee", "coffee", "grace_hopper", "motorcycle", "rocket"]
    assert report["cat"] == [300, 451, 3]
    shape, low, high = report["heatmap"]
    assert shape == [7, 7] and 0 <= low < high == 1.0  # Grad-CAM at top_activation, normalised
    assert report["licences"] == [True, True, True]  # cnnviz/data/README.md, the data's licences, is installed
    assert any("cnnviz.ClassExplorer" in "".join(source) for source in report["app"])  # what `cnnviz explorer` serves
    assert result.stdout.split()[0] in ("tiger_cat", "Egyptian_cat")  # the cnnviz command's predict
    assert list(target.glob("cnnviz-*.dist-info/licenses/LICENSE"))
