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
