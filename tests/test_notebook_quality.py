"""Every notebook has the habits of the best courses (issue 12): a "You will learn" list at the top, a
summary and exercises at the end, links to its neighbours that resolve, readable code, light figures."""
import base64
import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))
MAX_COLUMNS = 100
MAX_FIGURE_BYTES = 400_000
MAX_TOTAL_BYTES = 3_000_000  # notebooks 00–04 together
LINK = re.compile(r"\]\((\d\d_[^)#]+\.ipynb)(#[^)]*)?\)")


def read(path):
    return nbformat.read(path, as_version=4)


def markdown(notebook) -> str:
    return "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "markdown")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_structure(path):
    notebook = read(path)
    first = notebook.cells[0]
    assert first.cell_type == "markdown" and "you will learn" in first.source.lower()
    text = markdown(notebook)
    headings = re.findall(r"^## (.+)$", text, flags=re.M)
    assert any(h.lower().startswith(("summary", "what we saw")) for h in headings), headings
    assert any(h.lower().startswith("exercises") for h in headings), headings
    exercises = text[text.lower().index("## exercises"):]
    assert 2 <= len(re.findall(r"^\d+\. ", exercises, flags=re.M)) <= 6, "2–4 numbered exercises"
    assert "<details>" in exercises, "hints or solutions folded in <details>"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_links_to_neighbours_resolve(path):
    index = NOTEBOOKS.index(path)
    targets = {match.group(1) for match in LINK.finditer(markdown(read(path)))}
    for target in targets:
        assert (path.parent / target).is_file(), f"{path.name} links to missing {target}"
    neighbours = {NOTEBOOKS[i].name for i in (index - 1, index + 1) if 0 <= i < len(NOTEBOOKS)}
    assert neighbours <= targets, f"{path.name} should link to {sorted(neighbours - targets)}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_code_fits_a_jupyterlab_pane(path):
    long = [(i, line) for i, cell in enumerate(read(path).cells) if cell.cell_type == "code"
            for line in cell.source.splitlines() if len(line) > MAX_COLUMNS]
    assert not long, f"code lines over {MAX_COLUMNS} columns: {long[:3]}"


def figures(notebook):
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            for mime, data in output.get("data", {}).items():
                if mime.startswith("image/") and mime != "image/svg+xml":
                    yield mime, base64.b64decode(data)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_figures_are_light(path):
    for mime, data in figures(read(path)):
        assert len(data) <= MAX_FIGURE_BYTES, f"a {mime} figure of {len(data) // 1000} kB"


def test_notebooks_00_to_04_weigh_under_3_mb():
    first_five = [path for path in NOTEBOOKS if path.name[:2] in {"00", "01", "02", "03", "04"}]
    assert len(first_five) == 5
    assert sum(path.stat().st_size for path in first_five) <= MAX_TOTAL_BYTES


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_run_all_never_stops(path):
    """No cell is expected to raise (Run All on Jupyter, Colab or Binder would halt there), none stored an error."""
    for i, cell in enumerate(read(path).cells):
        if cell.cell_type != "code":
            continue
        assert "NBVAL_RAISES_EXCEPTION" not in cell.source and "raises-exception" not in cell.metadata.get("tags", [])
        assert not [o for o in cell.get("outputs", []) if o.get("output_type") == "error"], f"cell {i} stored an error"


FILE_LINK = re.compile(r"!?\[[^\]]*\]\((?!https?://|#|attachment:|\d\d_[^)#/]+\.ipynb)([^)]+)\)")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_links_open_anywhere(path):
    """Colab and nbviewer show one notebook: a link or picture may point to the web, to a neighbouring
    notebook or to an attachment of the notebook itself, never to a file of the repository."""
    assert not FILE_LINK.findall(markdown(read(path))), FILE_LINK.findall(markdown(read(path)))


SAMPLE_AT_A_SIZE = re.compile(r"load_image\(\s*[\"'](\w+)[\"'][^)]*size=")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_one_crop_convention(path):
    """Bundled photos are shown as cnnviz.sample_photo crops them (87.5%, the collage whole), so the same
    photo gets the same numbers in every notebook; a line that departs says why (a comment with "crop")."""
    for cell in read(path).cells:
        if cell.cell_type == "code":
            for line in cell.source.splitlines():
                said = "#" in line and "crop" in line.split("#", 1)[1]
                assert not SAMPLE_AT_A_SIZE.search(line) or said, line
