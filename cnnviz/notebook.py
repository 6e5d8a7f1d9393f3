"""Notebook plumbing: light inline figures (every notebook's first cell calls :func:`compact_figures`).

Matplotlib's inline backend stores each figure as an RGBA PNG: right for line plots, five times too
heavy for photos and heatmaps, which made the notebooks weigh 9.5 MB. Here figures that show pictures
(``imshow``/``matshow``) are stored as JPEG, the others (curves, bars) stay PNG.
"""
from __future__ import annotations

import io

__all__ = ["compact_figures"]

JPEG_QUALITY = 88  # no visible loss at the displayed size


def has_pictures(figure) -> bool:
    """Whether any axes of the matplotlib ``figure`` shows an image (imshow, matshow)."""
    return any(ax.images for ax in figure.axes)


def _saved(figure, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format=fmt, bbox_inches="tight", **kwargs)
    return buffer.getvalue()


def figure_as_jpeg(figure) -> bytes | None:
    """The figure as JPEG bytes when it shows pictures, else None (IPython then skips the format)."""
    return _saved(figure, "jpeg", pil_kwargs={"quality": JPEG_QUALITY}) if has_pictures(figure) else None


def figure_as_png(figure) -> bytes | None:
    """The figure as PNG bytes when it shows no pictures (a line or bar plot), else None."""
    return None if has_pictures(figure) else _saved(figure, "png")


def compact_figures() -> None:
    """Inline figures as JPEG when they show pictures, PNG otherwise (outside IPython: nothing to do).

    Returns nothing, so that a notebook's set-up cell shows no output.

    Call it once per notebook, after ``import cnnviz``. ``%config InlineBackend.figure_formats = ...``
    afterwards takes over again.
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None:
        return
    import matplotlib
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    # pyplot loads its backend lazily, and loading the inline backend resets the figure formatters: load
    # it now, so that it does not undo what follows at the first plot.
    plt.switch_backend(matplotlib.get_backend())

    formatters = shell.display_formatter.formatters
    formatters["image/png"].for_type(Figure, figure_as_png)
    formatters["image/jpeg"].for_type(Figure, figure_as_jpeg)
