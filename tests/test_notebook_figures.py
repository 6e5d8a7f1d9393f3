"""compact_figures: pictures stored as JPEG, plots as PNG, in a real IPython shell."""
import io

import matplotlib

matplotlib.use("module://matplotlib_inline.backend_inline")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from IPython.core.interactiveshell import InteractiveShell  # noqa: E402

from PIL import Image  # noqa: E402

import cnnviz  # noqa: E402


@pytest.fixture
def shell():
    shell = InteractiveShell.instance()
    assert cnnviz.compact_figures() is None  # nothing to show under a notebook's set-up cell
    from matplotlib.figure import Figure
    assert Figure in shell.display_formatter.formatters["image/jpeg"].type_printers
    yield shell
    plt.close("all")


def test_pictures_become_jpeg_and_plots_stay_png(shell):
    photo = np.random.default_rng(0).random((224, 224, 3))
    picture, ax = plt.subplots(figsize=(6, 6))
    ax.imshow(photo)
    plot, ax = plt.subplots(figsize=(6, 4))
    ax.plot(np.arange(10) ** 2)
    shown, _ = shell.display_formatter.format(picture)
    assert "image/jpeg" in shown and "image/png" not in shown
    assert shown["image/jpeg"][:2] == b"\xff\xd8"  # a JPEG file
    drawn, _ = shell.display_formatter.format(plot)
    assert "image/png" in drawn and "image/jpeg" not in drawn
    jpeg = Image.open(io.BytesIO(shown["image/jpeg"]))
    png = Image.open(io.BytesIO(_png(picture)))
    assert jpeg.mode == "RGB" and jpeg.size == png.size  # same picture, same resolution
    assert len(shown["image/jpeg"]) < len(_png(picture)) / 2  # and much lighter than matplotlib's PNG


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


def test_outside_ipython_nothing_happens(monkeypatch):
    import IPython
    monkeypatch.setattr(IPython, "get_ipython", lambda: None)
    backend = matplotlib.get_backend()
    assert cnnviz.compact_figures() is None
    assert matplotlib.get_backend() == backend  # no backend switched, no formatter touched


def test_in_a_real_kernel_pictures_are_stored_as_jpeg():
    """The inline backend is loaded at the first plot and resets the formatters: compact_figures must
    survive that, in a kernel as nbconvert and nbval run it."""
    import nbformat
    from nbclient import NotebookClient
    from nbformat.v4 import new_code_cell, new_notebook

    notebook = new_notebook(cells=[
        new_code_cell("import cnnviz\ncnnviz.compact_figures()\nimport matplotlib.pyplot as plt\nimport numpy as np"),
        new_code_cell("plt.imshow(np.random.default_rng(0).random((64, 64, 3)))\nplt.show()"),
        new_code_cell("plt.plot([1, 3, 2])\nplt.show()"),
    ])
    NotebookClient(notebook, timeout=120, kernel_name="python3").execute()
    picture, plot = ({mime for output in cell.outputs for mime in output.get("data", {})}
                     for cell in notebook.cells[1:])
    assert "image/jpeg" in picture and "image/png" not in picture
    assert "image/png" in plot and "image/jpeg" not in plot
    nbformat.validate(notebook)
