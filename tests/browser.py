"""Headless Chromium for the tests, driven over the DevTools protocol."""

import json
import os
import shutil
import subprocess
import tempfile
import urllib.request

import pytest
import websocket

from .conftest import free_port, stop_process_group, wait_for_service

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Keep Chromium off the network: this machine has none, and a test must not depend on one.
QUIET = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-default-apps", "--disable-extensions", "--window-size=1280,800"]


# The rows of the Spark UI's Executors table, which its JavaScript draws from the REST API.
EXECUTORS = """(() => {
  const rows = [...document.querySelectorAll('#active-executors-table tbody tr')];
  return rows.length ? rows.map(row => row.textContent).join('\\n') : null;
})()"""


class DevTools:
    """Just enough of the Chrome DevTools protocol: send a command, wait for its answer."""

    def __init__(self, url):
        self.socket = websocket.create_connection(url, timeout=60)
        self.next_id = 0

    def call(self, method, **params):
        self.next_id += 1
        self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                return message["result"]

    def evaluate(self, expression):
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def wait_for(self, expression, timeout, failure):
        """The first truthy value of ``expression`` on the page, polled until ``timeout``."""
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.25)
        raise AssertionError(failure)

    def check_executors_tab(self, url, screenshot, failure):
        """Open a Spark UI's Executors tab; it must list the driver. The page is then saved."""
        self.call("Page.navigate", url=url)
        rows = self.wait_for(EXECUTORS, 120, failure)
        assert rows.strip().startswith("driver"), rows
        self.screenshot(screenshot)
        assert os.path.getsize(screenshot) > 10_000

    def screenshot(self, path):
        import base64

        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))


@pytest.fixture
def chromium(tmp_path):
    """A headless Chromium of its own, with an empty profile: yields its DevTools."""
    if not os.path.exists(CHROMIUM):
        pytest.fail("Chromium is not installed: `make test` installs Debian's chromium (apt-get install chromium)")
    port = free_port()
    # Its own TMPDIR, removed after: Chromium leaves its singleton socket's directory there. Short:
    # a socket's path must fit in 108 bytes, which a test's tmp_path may not leave room for.
    tmp = tempfile.mkdtemp(prefix="chromium-")
    browser = subprocess.Popen([CHROMIUM, *QUIET, f"--user-data-dir={tmp_path / 'profile'}", f"--remote-debugging-port={port}",
                                "--remote-debugging-address=127.0.0.1", "--remote-allow-origins=*", "about:blank"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                               env={**os.environ, "TMPDIR": tmp})

    def page():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json", timeout=2) as answer:
                return next((t["webSocketDebuggerUrl"] for t in json.load(answer) if t["type"] == "page"), None)
        except OSError:
            return None

    try:
        wait_for_service(page, [browser], "headless Chromium did not open its DevTools port")
        tools = DevTools(page())
        yield tools
        tools.socket.close()
    finally:
        stop_process_group(browser)
        shutil.rmtree(tmp, ignore_errors=True)
