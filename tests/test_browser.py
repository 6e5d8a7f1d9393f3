"""The class explorer in a real browser (Playwright + the system Chromium), twice:

- notebook 04 in JupyterLab: start JupyterLab on 127.0.0.1 (free port, random token, private config) on a
  COPY of the notebook, run all its cells, pick another class in the explorer, check the overlay changed;
- the explorer alone, as `cnnviz explorer` serves it with Voilà: pick a photo, a class, the shared scale
  and a method; the heatmap picture changes each time.

Skips when Chromium or Playwright (or, for the second, Voilà) is missing; CI installs them (see .ci/run).
"""
import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI") == "true"  # CI installs both, so there a missing one fails instead of skipping
if IN_CI:
    from playwright import sync_api
else:
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed: pip install playwright")
CHROMIUM = next(filter(None, map(shutil.which, ["chromium", "chromium-browser", "google-chrome"])), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None and not IN_CI, reason="no Chromium on PATH: apt-get install chromium")

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "04_class_explorer.ipynb"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
MS = 1000  # Playwright timeouts are in milliseconds


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_up(url: str, server: subprocess.Popen, log: Path, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"JupyterLab exited with code {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.25)
    pytest.fail(f"JupyterLab did not answer within {timeout} s:\n{log.read_text()[-3000:]}")


def stop(server: subprocess.Popen, shutdown_url: str):
    """Ask the server to shut down (it stops its kernels), then end its process group if need be."""
    try:
        urllib.request.urlopen(urllib.request.Request(shutdown_url, method="POST"), timeout=5)
        server.wait(timeout=15)
    except (OSError, subprocess.TimeoutExpired):
        pass
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(server.pid, sig)  # the group of the server we started: it and its kernel
            server.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass


@pytest.fixture
def lab(tmp_path):
    """A JupyterLab server on a copy of notebook 04: yields (base url, token); always stopped."""
    root, private = tmp_path / "notebooks", tmp_path / "jupyter"
    root.mkdir()
    shutil.copy(NOTEBOOK, root / NOTEBOOK.name)  # the repository's file is never opened, so never saved
    settings = private / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false",
                                                                           "checkForUpdates": False}))
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(private / "config"), "JUPYTER_RUNTIME_DIR": str(private / "run"),
           "JUPYTERLAB_SETTINGS_DIR": str(private / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(private / "workspaces")}
    port, token = free_port(), secrets.token_hex(16)
    command = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
               f"--ServerApp.root_dir={root}", "--LabApp.expose_app_in_browser=True"]
    if hasattr(os, "getuid") and os.getuid() == 0:
        command.append("--allow-root")
    log = tmp_path / "jupyterlab.log"
    base = f"http://127.0.0.1:{port}"
    with open(log, "w") as output:
        server = subprocess.Popen(command, env=env, cwd=root, stdout=output, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    try:
        wait_until_up(f"{base}/api/status?token={token}", server, log)
        yield base, token
    finally:
        stop(server, f"{base}/api/shutdown?token={token}")


@pytest.fixture
def page():
    assert CHROMIUM, "no Chromium on PATH: .ci/run installs it with apt-get install chromium"
    with sync_api.sync_playwright() as playwright:
        # launch() gives the browser a fresh, temporary profile of its own
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=30 * MS)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 1000})
            page.set_default_timeout(30 * MS)
            yield page
        finally:
            browser.close()


NOTEBOOK_PANEL = "window.jupyterapp && window.jupyterapp.shell.currentWidget"
KERNEL_IDLE = f"""() => {{
    const panel = {NOTEBOOK_PANEL};
    const kernel = panel && panel.sessionContext && panel.sessionContext.session
                   && panel.sessionContext.session.kernel;
    return !!kernel && kernel.status === "idle";
}}"""
ALL_CELLS_RUN = f"""() => {{
    const panel = {NOTEBOOK_PANEL};
    const cells = panel.content.widgets.filter(cell => cell.model.type === "code");
    return panel.sessionContext.session.kernel.status === "idle"
           && cells.every(cell => cell.model.executionCount !== null);
}}"""


def test_explorer_switches_class_in_jupyterlab(lab, page, tmp_path):
    base, token = lab
    page.goto(f"{base}/lab/tree/{NOTEBOOK.name}?token={token}", timeout=60 * MS)
    page.wait_for_function(KERNEL_IDLE, timeout=60 * MS)
    page.evaluate("window.jupyterapp.commands.execute('notebook:clear-all-cell-outputs')")
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    page.wait_for_function(ALL_CELLS_RUN, timeout=120 * MS, polling=500)
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    assert errors.count() == 0, errors.all_inner_texts()

    explorer = page.locator(".cnnviz-explorer")
    overlay = explorer.locator(".cnnviz-overlay")
    overlay.scroll_into_view_if_needed()
    page.wait_for_function("img => img.complete && img.naturalWidth === 224", arg=overlay.element_handle())
    before = overlay.get_attribute("src")
    picker = explorer.locator(".cnnviz-class select")
    options = picker.locator("option").all_inner_texts()
    assert len(options) == 5 and all("%" in option for option in options), options
    chosen = next(option for option in options if option != picker.evaluate("s => s.selectedOptions[0].text"))
    picker.select_option(label=chosen)
    page.wait_for_function("([img, old]) => img.src !== old && img.complete && img.naturalWidth === 224",
                           arg=[overlay.element_handle(), before], timeout=20 * MS)
    assert chosen.split(" · ")[0] in explorer.inner_text()

    shot = tmp_path / "explorer.png"
    explorer.screenshot(path=shot)
    page.screenshot(path=tmp_path / "jupyterlab.png")
    if os.environ.get("CNNVIZ_SCREENSHOT"):  # keep a copy: notebook 04 shows it (images/explorer.jpg)
        from PIL import Image
        Image.open(shot).convert("RGB").save(os.environ["CNNVIZ_SCREENSHOT"], quality=85)
    assert shot.stat().st_size > 50_000  # photos and heatmaps, not a blank box


# ---- the explorer alone, served by Voilà (`cnnviz explorer`, `make explorer`) ---------------------------------

def wait_for_port(port: int, server: subprocess.Popen, log: Path, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"cnnviz explorer exited with code {server.returncode}:\n{log.read_text()[-3000:]}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.25)
    pytest.fail(f"Voilà did not listen within {timeout} s:\n{log.read_text()[-3000:]}")


@pytest.fixture
def voila(tmp_path):
    """`python -m cnnviz explorer --no-browser` (this checkout first on the path), private Jupyter folders:
    yields the page's URL; the server and its kernel are always stopped."""
    if importlib.util.find_spec("voila") is None and not IN_CI:
        pytest.skip("Voilà is not installed: pip install voila (in the notebooks extra)")
    private = tmp_path / "jupyter"
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(private / "config"), "JUPYTER_RUNTIME_DIR": str(private / "run"),
           "JUPYTER_DATA_DIR": str(private / "data"),
           "PYTHONPATH": os.pathsep.join([str(NOTEBOOK.parents[1]), os.environ.get("PYTHONPATH", "")])}
    port, log = free_port(), tmp_path / "voila.log"
    with open(log, "w") as output:
        server = subprocess.Popen([sys.executable, "-m", "cnnviz", "explorer", "--no-browser", "--port", str(port)],
                                  env=env, cwd=tmp_path, stdout=output, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    try:
        wait_for_port(port, server, log)
        yield f"http://127.0.0.1:{port}/", log
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):  # Ctrl+C first: Voilà stops its kernel
            try:
                os.killpg(server.pid, sig)  # the group of the command we started: it, Voilà and the kernel
                server.wait(timeout=15)
                break
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                pass


def changed(page, image, before: str, what: str):
    """Wait until ``image`` shows a new, fully loaded 224-pixel-wide picture after ``what``; → its new src."""
    try:
        page.wait_for_function("([img, old]) => img.src !== old && img.complete && img.naturalWidth === 224",
                               arg=[image.element_handle(), before], timeout=120 * MS)  # a first compile: ~30 s
    except sync_api.TimeoutError:
        pytest.fail(f"the heatmap did not change after {what}; the page says: {page.inner_text('body')[-1500:]}")
    return image.get_attribute("src")


def test_voila_page_picks_photo_class_method_and_scale(voila, page, tmp_path):
    url, log = voila
    page.goto(url, timeout=120 * MS)  # Voilà runs the app notebook while the page loads
    explorer = page.locator(".cnnviz-explorer")
    explorer.wait_for(timeout=120 * MS)
    heatmap = explorer.locator(".cnnviz-heatmap")
    page.wait_for_function("img => img.complete && img.naturalWidth === 224", arg=heatmap.element_handle())
    text = page.inner_text("body")
    assert "What does the network see?" in text and "ClassExplorer(" not in text  # its prose, not its code
    shown = heatmap.get_attribute("src")

    explorer.locator(".cnnviz-photo select").select_option(label="coffee")
    shown = changed(page, heatmap, shown, "picking the coffee photo")
    page.wait_for_function("el => el.innerText.includes('espresso')", arg=explorer.element_handle())

    picker = explorer.locator(".cnnviz-class select")
    options = [option.replace("\xa0", " ") for option in picker.locator("option").all_inner_texts()]
    assert len(options) == 5 and options[0].startswith("espresso · "), options
    picker.select_option(index=1)  # a class that is not the photo's strongest
    shown = changed(page, heatmap, shown, "picking another class")
    assert options[1].split(" · ")[0] in explorer.inner_text().replace("\xa0", " ")

    explorer.locator(".cnnviz-shared-scale input[type=checkbox]").check()  # espresso now sets the scale
    shown = changed(page, heatmap, shown, "ticking the shared scale")
    page.wait_for_function("el => el.innerText.includes('of the shared scale')", arg=explorer.element_handle())

    methods = [option.replace("\xa0", " ") for option in
               explorer.locator(".cnnviz-method select option").all_inner_texts()]
    assert methods[:3] == ["Grad-CAM", "Grad-CAM++", "LayerCAM"], methods
    assert any(method.startswith("SmoothGrad") for method in methods), methods  # "SmoothGrad (16 samples)"
    explorer.locator(".cnnviz-method select").select_option(index=methods.index("LayerCAM"))
    shown = changed(page, heatmap, shown, "picking LayerCAM")
    page.wait_for_function("el => el.innerText.includes('LayerCAM')", arg=explorer.element_handle())

    assert "⚠" not in explorer.inner_text()
    shot = tmp_path / "voila.png"
    page.screenshot(path=shot, full_page=True)
    if os.environ.get("CNNVIZ_VOILA_SCREENSHOT"):  # keep a copy to look at
        shutil.copy(shot, os.environ["CNNVIZ_VOILA_SCREENSHOT"])
    assert shot.stat().st_size > 50_000
    assert "Traceback" not in log.read_text()
