"""JupyterLab in a real browser: headless Chromium, driven over the DevTools protocol, shows our
kernel's card with its logo in the launcher. The screenshot stays in test-output/."""

import os
import time

import pytest

from .browser import chromium  # noqa: F401 - a fixture
from .conftest import ROOT

pytestmark = pytest.mark.e2e

SCREENSHOT = os.path.join(ROOT, "test-output", "jupyterlab-launcher.png")
CARD = """(() => {
  const card = [...document.querySelectorAll('.jp-LauncherCard')].find(c => (c.getAttribute('title') || c.textContent).includes('PySpark served'));
  if (!card) return null;
  const img = card.querySelector('img');
  return {text: card.textContent.trim(), logo: img ? img.src : null, logoLoaded: img ? img.complete && img.naturalWidth > 0 : false};
})()"""


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
    chromium.screenshot(SCREENSHOT)
    assert os.path.getsize(SCREENSHOT) > 10_000
