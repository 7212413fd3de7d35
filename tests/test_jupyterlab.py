"""JupyterLab in a real browser: headless Chromium, driven over the DevTools protocol, shows our
kernel's card with its logo in the launcher. The screenshot stays in test-output/."""

import base64
import json
import os
import shutil
import subprocess
import time
import urllib.request

import pytest
import websocket

from .conftest import ROOT, free_port, stop_process_group, wait_for_service

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Keep Chromium off the network: this machine has none, and a test must not depend on one.
QUIET = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-default-apps", "--disable-extensions", "--window-size=1280,800"]
SCREENSHOT = os.path.join(ROOT, "test-output", "jupyterlab-launcher.png")
CARD = """(() => {
  const card = [...document.querySelectorAll('.jp-LauncherCard')].find(c => (c.getAttribute('title') || c.textContent).includes('PySpark served'));
  if (!card) return null;
  const img = card.querySelector('img');
  return {text: card.textContent.trim(), logo: img ? img.src : null, logoLoaded: img ? img.complete && img.naturalWidth > 0 : false};
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


@pytest.fixture
def chromium(tmp_path):
    if not os.path.exists(CHROMIUM):
        pytest.fail("Chromium is not installed: `make test` installs Debian's chromium (apt-get install chromium)")
    port = free_port()
    browser = subprocess.Popen([CHROMIUM, *QUIET, f"--user-data-dir={tmp_path / 'profile'}", f"--remote-debugging-port={port}",
                                "--remote-debugging-address=127.0.0.1", "--remote-allow-origins=*", "about:blank"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

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


def test_jupyterlab_launcher_shows_our_kernel_with_its_logo(jupyter_server, chromium):
    base, token, _ = jupyter_server
    chromium.call("Page.enable")
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
    shot = chromium.call("Page.captureScreenshot", format="png")["data"]
    os.makedirs(os.path.dirname(SCREENSHOT), exist_ok=True)
    with open(SCREENSHOT, "wb") as handle:
        handle.write(base64.b64decode(shot))
    assert os.path.getsize(SCREENSHOT) > 10_000
