"""JupyterLab in a real browser: headless Chromium, driven over the DevTools protocol, shows our
kernel's card with its logo in the launcher, and a notebook on it shows a %%sql table and the live
progress of a running job, which ends as a summary. The screenshots stay in test-output/."""

import json
import os
import time

import nbformat
import pytest

from .browser import chromium  # noqa: F401 - a fixture
from .conftest import ROOT, assert_no_jvm_left

pytestmark = pytest.mark.e2e

SCREENSHOT = os.path.join(ROOT, "test-output", "jupyterlab-launcher.png")
CARD = """(() => {
  const card = [...document.querySelectorAll('.jp-LauncherCard')].find(c => (c.getAttribute('title') || c.textContent).includes('PySpark served'));
  if (!card) return null;
  const img = card.querySelector('img');
  return {text: card.textContent.trim(), logo: img ? img.src : null, logoLoaded: img ? img.complete && img.naturalWidth > 0 : false};
})()"""
NOTEBOOK_SHOT = os.path.join(ROOT, "test-output", "jupyterlab-progress-and-sql.png")
# The notebook opened through JupyterLab's own command, then its kernel (started for the notebook).
OPEN = "window.jupyterapp.restored.then(() => window.jupyterapp.commands.execute('docmanager:open', {path: 'progress.ipynb'})).then(w => { window.opened = w; return w.id; })"
KERNEL_IDLE = "(() => { const s = window.opened && window.opened.sessionContext.session; return !!(s && s.kernel && s.kernel.status === 'idle'); })()"
SHOWN = """(() => {
  const cells = document.querySelectorAll('.jp-Notebook .jp-CodeCell');
  if (cells.length < 2) return {rows: 0, progress: '', links: []};
  // The %%sql cell's own table, not its progress table (whose job is named after the query).
  const table = [...cells[0].querySelectorAll('.jp-OutputArea-output table')].find(t => !t.closest('.pyspark-kernel-progress') && t.textContent.includes('twice'));
  const progress = cells[1].querySelector('.jp-OutputArea-output .pyspark-kernel-progress');
  return {rows: table ? table.querySelectorAll('tbody tr').length : 0, progress: progress ? progress.textContent : '',
          links: progress ? [...progress.querySelectorAll('a')].map(a => a.href) : []};
})()"""


def check_launcher(chromium, base, token):
    """The launcher has a card for the kernel, with its logo."""
    chromium.call("Page.navigate", url=f"{base}/lab?token={token}")
    deadline, card = time.monotonic() + 120, None
    while time.monotonic() < deadline:
        card = chromium.evaluate(CARD)
        if card and card["logoLoaded"]:
            break
        time.sleep(0.5)
    assert card, "the launcher shows no card for the kernel 'PySpark served'"
    assert card["text"] == "PySpark served"
    assert card["logo"].endswith("/kernelspecs/served/logo-64x64.png") and card["logoLoaded"], card
    chromium.screenshot(SCREENSHOT)
    assert os.path.getsize(SCREENSHOT) > 10_000


def test_jupyterlab_shows_our_kernel_in_the_launcher_and_a_notebook_on_it_shows_a_sql_table_and_live_progress(jupyter_server, chromium, tmp_path):
    base, token, _ = jupyter_server
    cells = [nbformat.v4.new_code_cell("%%sql -n 5\nSELECT id, id * 2 AS twice FROM range(100)"),
             nbformat.v4.new_code_cell("sc.parallelize(range(4), 2).map(lambda x: __import__('time').sleep(4) or x).count()")]
    notebook = nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": {"name": "served", "display_name": "PySpark served", "language": "python"}})
    nbformat.write(notebook, tmp_path / "progress.ipynb")
    chromium.call("Page.enable")
    check_launcher(chromium, base, token)
    try:
        chromium.wait_for("!!window.jupyterapp", 120, "JupyterLab did not load")
        opened = chromium.call("Runtime.evaluate", expression=OPEN, awaitPromise=True, returnByValue=True)["result"].get("value")
        assert opened, "JupyterLab did not open progress.ipynb"
        chromium.wait_for(KERNEL_IDLE, 120, "JupyterLab did not start the notebook's kernel 'served'")
        chromium.evaluate(f"window.jupyterapp.shell.activateById({json.dumps(opened)}); window.jupyterapp.commands.execute('notebook:run-all-cells')")
        running = chromium.wait_for(f"(() => {{ const s = {SHOWN}; return s.rows && s.progress.includes('running') ? s : null; }})()", 120,
                                    "the notebook never showed the %%sql table and the running job's progress together")
        chromium.screenshot(NOTEBOOK_SHOT)
        assert running["rows"] == 5 and os.path.getsize(NOTEBOOK_SHOT) > 10_000
        # The summary replaces the live table once the cell ends (the table's job may say "succeeded" before).
        done = chromium.wait_for(f"(() => {{ const s = {SHOWN}; return s.progress.includes('job(s) done') ? s : null; }})()", 120,
                                 "the job's progress did not end as a summary")
        assert "Spark: 1 job(s) done, 2/2 tasks" in done["progress"] and len(done["links"]) == 1 and "/jobs/job/?id=" in done["links"][0], done
    finally:
        import urllib.request

        with urllib.request.urlopen(f"{base}/api/sessions?token={token}", timeout=30) as answer:
            sessions = json.load(answer)
        for session in sessions:
            urllib.request.urlopen(urllib.request.Request(f"{base}/api/sessions/{session['id']}?token={token}", method="DELETE"), timeout=60).close()
    assert_no_jvm_left("served")
