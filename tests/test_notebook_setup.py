"""Each notebook's first code cell, on a hosted Jupyter where cnnviz is not installed, says how to install it."""
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("0*.ipynb"))

# Makes `import <blocked>` fail as it does where the package is not installed, whatever sys.path holds
# (the editable install in .venv, this checkout).
BLOCK = """
import sys

class NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)

sys.meta_path.insert(0, NotInstalled())
"""


def first_code_cell(notebook: Path) -> str:
    return next(cell.source for cell in nbformat.read(notebook, as_version=4).cells if cell.cell_type == "code")


def run_without(blocked: str, source: str, cwd):
    return subprocess.run([sys.executable, "-c", BLOCK.format(blocked=blocked) + source], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: path.stem)
def test_first_cell_says_how_to_install_cnnviz(notebook, tmp_path):
    result = run_without("cnnviz", first_code_cell(notebook), tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr == INSTALL_HINT + "\n"


# What a learner reads when cnnviz is missing: a command for each place, no placeholder to guess.
INSTALL_HINT = ("cnnviz is not installed in this kernel. In a clone of its repository (Binder, a course JupyterHub, "
                "your laptop) run  %pip install ..  in a cell. Elsewhere (Colab) run  %pip install "
                "\"git+https://github.com/OWNER/REPOSITORY\"  with the address of the GitHub repository this "
                "notebook comes from (the page's address up to the repository's name); on Colab add --no-deps to "
                "keep Colab's own TensorFlow. Then restart the kernel.")


def test_every_notebook_starts_with_the_same_set_up_cell():
    cells = {first_code_cell(path) for path in NOTEBOOKS}
    assert len(cells) == 1, "the first code cell (install hint, cnnviz first, light figures) differs"


def test_a_missing_dependency_is_not_reported_as_a_missing_cnnviz(tmp_path):
    """cnnviz installed but TensorFlow missing: the real ModuleNotFoundError, not the install hint."""
    result = run_without("tensorflow", first_code_cell(NOTEBOOKS[0]), tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == "ModuleNotFoundError: No module named 'tensorflow'"


def test_notebooks_are_numbered_consecutively_from_00():
    numbers = [int(path.stem[:2]) for path in NOTEBOOKS]
    assert len(numbers) >= 5 and numbers == list(range(len(numbers))), [path.name for path in NOTEBOOKS]
