"""The ``cnnviz`` command: run as a subprocess (as a user would) for each command, errors in-process too."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import cnnviz
from cnnviz.cli import main

ROOT = Path(__file__).resolve().parents[1]


def cnnviz_command(*args, cwd):
    """``python -m cnnviz ARGS`` from ``cwd`` with this checkout first on the path."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "cnnviz", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def test_help_of_every_command(capsys):
    for argv, expected in ((["--help"], "{predict,gradcam,filters,explorer}"), (["predict", "--help"], "--top"),
                           (["gradcam", "--help"], "--class CLASS"), (["filters", "--help"], "--robust"),
                           (["explorer", "--help"], "--no-browser")):
        with pytest.raises(SystemExit) as exit:
            main(argv)
        assert exit.value.code == 0 and expected in capsys.readouterr().out, argv


def test_predict_from_the_shell(tmp_path):
    result = cnnviz_command("predict", "coffee", "--top", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and lines[0].split()[0] == "espresso" and lines[1].split()[0] == "cup"
    assert 0.9 < float(lines[0].split()[1].rstrip("%")) / 100 < 1  # 95.1% (FACTS: .951)


def test_gradcam_writes_an_overlay_of_the_centre_square(tmp_path):
    result = cnnviz_command("gradcam", "coffee", "--class", "espresso", "-o", "cam.png", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "espresso (class 967" in result.stdout and result.stderr == ""
    with Image.open(tmp_path / "cam.png") as written:
        assert written.format == "PNG" and written.size == (400, 400)  # coffee is 600×400: its centre square
        overlay = np.asarray(written.convert("RGB"), dtype="float32")
    photo = cnnviz.images.fit(cnnviz.load_image("coffee"), (400, 400))
    assert np.abs(overlay - photo).mean() > 20  # a heatmap was blended in, not the photo copied


def test_filters_writes_a_grid(tmp_path):
    result = cnnviz_command("filters", "block2a_expand_bn", "-o", "grid.png", "--filters", "0-3", "--size", "32",
                            "--steps", "5", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    with Image.open(tmp_path / "grid.png") as written:
        grid = np.asarray(written)
    assert grid.shape == (2 * 32 + 5, 2 * 32 + 5, 3)  # 2×2 patterns of 32 px, 5 px margins
    assert all(grid[r:r + 32, c:c + 32].std() > 1 for r in (0, 37) for c in (0, 37))  # 4 patterns, none blank


def test_a_user_mistake_is_one_line_and_exit_2(tmp_path):
    result = cnnviz_command("gradcam", "coffee", "--class", "expresso", "-o", "cam.png", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == ("cnnviz gradcam: error: unknown class 'expresso'; did you mean: "
                                              "espresso, espresso_maker?")
    assert not (tmp_path / "cam.png").exists()


@pytest.mark.parametrize("argv, message", [
    (["predict", "no_such_photo.jpg"], "no image file 'no_such_photo.jpg'; give a path, or one of the bundled"),
    (["predict", "coffee", "--top", "0"], "argument --top: expected a whole number ≥ 1, got '0'"),
    (["gradcam", "cat", "--class", "Egyptian cat", "-o", "missing/cam.png"], "folder 'missing' does not exist"),
    (["gradcam", "cat", "--class", "Egyptian cat", "-o", "cam.txt"], "needs an image suffix such as .png"),
    (["gradcam", "cat", "--class", "crane", "-o", "cam.png"], "'crane' names 2 classes (134, 517): give the index"),
    (["gradcam", "cat", "--class", "1000", "-o", "cam.png"], "class index 1000 is out of range"),
    (["gradcam", "cat", "--class", "285", "-o", "cam.png", "--alpha", "1.5"], "expected a number in [0, 1]"),
    (["gradcam", "cat", "--class", "285", "-o", "cam.png", "--layer", "top_activatoin"],
     "no layer named 'top_activatoin' in model 'efficientnet_lite0'; closest: top_activation"),
    (["filters", "top_bn", "-o", "grid.png", "--filters", "9-3"], "expected N (the first N filters), A-B"),
    (["filters", "top_bn", "-o", "grid.png", "--filters", "1279-1280"], "filter indices must be in [0, 1280)"),
    (["filters", "top_bn", "-o", "grid.png", "--steps", "-1"], "argument --steps: expected a whole number ≥ 1"),
    (["explorer", "--port", "70000"], "argument --port: expected a port number in [1, 65535], got '70000'"),
])
def test_user_mistakes_are_clear_errors(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit:
        main(argv)
    error = capsys.readouterr().err.splitlines()[-1]
    assert exit.value.code == 2 and error.startswith(f"cnnviz {argv[0]}: error: ") and message in error
    assert list(tmp_path.iterdir()) == []


def test_class_names_with_spaces_or_case_resolve():
    from cnnviz.cli import class_index_of
    from cnnviz.models import class_names

    names = class_names()
    assert class_index_of("Egyptian cat", names) == class_index_of("egyptian_cat", names) == 285
    assert class_index_of("967", names) == names.index("espresso") == 967


def test_explorer_without_voila_is_one_clear_line(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "voila", None)  # as if it were not installed: find_spec gives None
    monkeypatch.setattr("subprocess.call", lambda *a, **k: pytest.fail("must not start anything"))
    with pytest.raises(SystemExit) as exit:
        main(["explorer", "--no-browser"])
    error = capsys.readouterr().err.splitlines()[-1]
    assert exit.value.code == 2
    assert error.startswith("cnnviz explorer: error: Voilà is not installed here: pip install voila")


def test_explorer_runs_voila_on_the_shipped_app(monkeypatch, capsys):
    pytest.importorskip("voila")
    calls = []
    monkeypatch.setattr("subprocess.call", lambda command: calls.append(command) or 0)
    assert main(["explorer", "--port", "9001", "--no-browser"]) == 0
    (command,) = calls
    assert command[:3] == [sys.executable, "-m", "voila"] and "--port=9001" in command and "--no-browser" in command
    app = Path(command[3])
    assert app == ROOT / "cnnviz" / "app" / "explorer.ipynb" and "cnnviz.ClassExplorer" in app.read_text()
    assert "http://127.0.0.1:9001/" in capsys.readouterr().out
    monkeypatch.setattr("subprocess.call", lambda command: calls.append(command) or 3)
    assert main(["explorer"]) == 3 and "--no-browser" not in calls[-1]  # Voilà's exit status is passed on
