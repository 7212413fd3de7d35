"""A Jupyter server's REST API and kernel websocket, as a front end uses them."""

import json
import re
import time
import urllib.error
import urllib.request
import uuid

import websocket


def request(base, token, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method, headers={"Authorization": f"token {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as response:
        return response.status, response.read()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def http(url, token=None, method="GET", body=None, follow=True):
    """(status, headers, body text) of one request, with a server's or hub's token unless None;
    an HTTP error status is an answer, not an exception."""
    opener = urllib.request.build_opener(*([] if follow else [NoRedirect()]))
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json", **({"Authorization": f"token {token}"} if token else {})}
    try:
        with opener.open(urllib.request.Request(url, data=data, method=method, headers=headers), timeout=60) as answer:
            return answer.status, answer.headers, answer.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read().decode("utf-8", "replace")


def execute_over_websocket(base, token, kernel_id, code, timeout=120):
    """Send an execute_request on the kernel's channels websocket; return its execute_result text."""
    outputs = run_over_websocket(base, token, kernel_id, code, timeout)
    results = [content["data"]["text/plain"] for kind, content in outputs if kind == "execute_result"]
    return results[-1] if results else None


def run_over_websocket(base, token, kernel_id, code, timeout=120, headers=None):
    """Run ``code`` through the kernel's channels websocket: the cell's outputs as (msg_type,
    content), in order. A cell that fails raises, with its error."""
    url = f"ws{base[4:]}/api/kernels/{kernel_id}/channels" + ("" if headers else f"?token={token}")
    ws = websocket.create_connection(url, timeout=timeout, header=headers)
    outputs = []
    try:
        msg_id = uuid.uuid4().hex
        ws.send(json.dumps({
            "header": {"msg_id": msg_id, "username": "test", "session": uuid.uuid4().hex, "msg_type": "execute_request", "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell",
            "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {}, "allow_stdin": False},
        }))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = json.loads(ws.recv())
            if message.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if message["msg_type"] in ("stream", "display_data", "update_display_data", "execute_result"):
                outputs.append((message["msg_type"], message["content"]))
            if message["msg_type"] == "error":
                raise AssertionError(f"the cell failed: {message['content']['ename']}: {message['content']['evalue']}")
            if message["msg_type"] == "status" and message["content"]["execution_state"] == "idle":
                return outputs
        raise AssertionError("no reply from the kernel over the websocket")
    finally:
        ws.close()


LINK = re.compile(r'<a href="([^"]+)"')


def banner_link(outputs):
    """The Spark UI link of the kernel's banner in a cell's outputs: an HTML link, as a link
    through the Jupyter server (a path) must be; its text/plain ends with the same link."""
    for kind, content in outputs:
        html = content.get("data", {}).get("text/html", "") if kind == "display_data" else ""
        if html.startswith("<pre>Spark "):
            found = LINK.search(html)
            assert found, html
            assert content["data"]["text/plain"].endswith(f"| UI {found.group(1)}"), content["data"]
            return found.group(1)
    raise AssertionError(f"no banner with a UI link in {outputs}")
