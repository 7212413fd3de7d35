"""A real JupyterHub (configurable-http-proxy from npm, the local process spawner) with two real
Unix users, made by the test as root: a kernel shared through a prefix shows in both users' lists,
each user's own --user kernel only in its owner's; both run Spark through the hub's API and
websocket; neither can read the other's kernel, scratch directory, JVM log or class-data-sharing
cache; only its owner reaches a Spark UI through the hub, and in a browser logged into the hub the
banner's link opens the UI, whose Executors tab lists the driver (screenshot in test-output/)."""

import json
import os
import pwd
import re
import secrets
import shutil
import stat
import subprocess
import sys
import tempfile
import time

import pytest

from .browser import chromium  # noqa: F401 - a fixture
from .conftest import ROOT, VENV_DIR, assert_no_jvm_left, free_port, link_or_copy, run_cli, stop_process_group, wait_for_service
from .server_api import banner_link, http, run_over_websocket

pytestmark = pytest.mark.e2e

CHP = os.path.join(ROOT, "node_modules", ".bin", "configurable-http-proxy")
SCREENSHOT = os.path.join(ROOT, "test-output", "jupyterhub-spark-ui-executors.png")
# The project's files a user's environment gets: the package and the template around it.
PROJECT = ["pyspark_kernel", "cookiecutter.json", "local_extensions.py", "defaults.conf", "hooks", "profiles", "schema", "{{cookiecutter.kernel_name}}"]


def system_python():
    """A Python of the project's minor version that other users can run: pyenv's live under
    root's home, which nobody else can enter."""
    wanted = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (f"/usr/bin/{wanted}", f"/usr/local/bin/{wanted}"):
        if os.access(candidate, os.X_OK) and not os.path.realpath(candidate).startswith(os.path.expanduser("~") + os.sep):
            return candidate
    pytest.fail(f"no {wanted} outside root's home for the hub's users: apt-get install {wanted} {wanted}-venv")


def users_environment(where):
    """A venv of the system's Python with the project's packages hard-linked in (no download),
    and the project itself beside it: what `pip install pyspark-kernel-template[server]` gives a hub."""
    venv = where / "env"
    subprocess.run([system_python(), "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = next((venv / "lib").glob("python3*/site-packages"))
    ours = next(p for p in sys.path if p.startswith(VENV_DIR) and p.endswith("site-packages"))
    for entry in os.listdir(ours):
        if entry.lower().startswith(("__editable__", "pyspark_kernel")) or entry == "__pycache__":
            continue
        source = os.path.join(ours, entry)
        if os.path.isdir(source):
            # Byte code too (make venv compiles it; a hard link keeps the mtime it checks): the users
            # cannot write it here, and every process of theirs would compile its imports anew.
            shutil.copytree(source, site / entry, copy_function=link_or_copy, symlinks=True)
        else:
            link_or_copy(source, site / entry)
    project = where / "project"
    project.mkdir()
    for entry in PROJECT:
        source = os.path.join(ROOT, entry)
        if os.path.isdir(source):
            shutil.copytree(source, project / entry, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, project / entry)
    (site / "pyspark-kernel-project.pth").write_text(f"{project}\n")
    # The server's configuration: jupyter-server-proxy's and pyspark-kernel's extensions enabled.
    shutil.copytree(os.path.join(VENV_DIR, "etc", "jupyter"), venv / "etc" / "jupyter")
    return venv


def add_user(name):
    subprocess.run(["useradd", "--create-home", "--user-group", "--shell", "/bin/sh", name], check=True, capture_output=True, timeout=60)
    return pwd.getpwnam(name).pw_dir


def remove_user(name):
    """The user, its processes, its home and what they left in /tmp (userdel leaves that: the
    JVMs' hsperfdata_<name>, a kernel's scratch directory whose watchdog was killed with it)."""
    uid = pwd.getpwnam(name).pw_uid
    subprocess.run(["pkill", "-KILL", "-u", name], capture_output=True, timeout=30)
    deadline = time.monotonic() + 30
    while subprocess.run(["pgrep", "-u", name], capture_output=True).returncode == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    subprocess.run(["userdel", "--remove", name], capture_output=True, timeout=60)
    for tmp in {tempfile.gettempdir(), "/tmp"}:  # the JVMs' hsperfdata is in /tmp whatever TMPDIR says
        remove_files_of(uid, tmp)


def remove_files_of(uid, directory):
    for entry in os.scandir(directory):
        try:
            if entry.stat(follow_symlinks=False).st_uid != uid:
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
        except FileNotFoundError:  # another test's file, gone meanwhile
            continue


def as_user(name, *command, timeout=300):
    home = pwd.getpwnam(name).pw_dir
    return subprocess.run(["runuser", "-u", name, "--", "env", "-i", f"HOME={home}", "PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8", *command],
                          capture_output=True, text=True, timeout=timeout, cwd="/")


def hub_config(hub_dir, ports, venv, shared, users, password, service_token):
    settings = {
        "bind_url": f"http://127.0.0.1:{ports[0]}/", "hub_bind_url": f"http://127.0.0.1:{ports[1]}/", "api_url": f"http://127.0.0.1:{ports[2]}",
        "chp": CHP, "db_url": f"sqlite:///{hub_dir / 'hub.sqlite'}", "cookie_secret_file": str(hub_dir / "cookie_secret"),
        "pid_file": str(hub_dir / "proxy.pid"), "users": sorted(users), "password": password, "token": service_token,
        "cmd": [str(venv / "bin" / "python"), "-m", "jupyterhub.singleuser"],
        "environment": {"JUPYTER_PATH": str(shared / "share" / "jupyter"), "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"},
    }
    # Values as JSON data, read back by the config: nothing of them is ever Python source.
    (hub_dir / "settings.json").write_text(json.dumps(settings))
    (hub_dir / "jupyterhub_config.py").write_text(f"""import json
s = json.load(open({str(hub_dir / 'settings.json')!r}))
c.JupyterHub.bind_url = s["bind_url"]
c.JupyterHub.hub_bind_url = s["hub_bind_url"]
c.ConfigurableHTTPProxy.api_url = s["api_url"]
c.ConfigurableHTTPProxy.command = [s["chp"]]
c.ConfigurableHTTPProxy.pid_file = s["pid_file"]
c.JupyterHub.db_url = s["db_url"]
c.JupyterHub.cookie_secret_file = s["cookie_secret_file"]
c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = s["password"]
c.Authenticator.allowed_users = set(s["users"])
c.JupyterHub.spawner_class = "localprocess"
c.Spawner.cmd = s["cmd"]
c.Spawner.environment = s["environment"]
c.Spawner.env_keep = []
c.Spawner.start_timeout = 300
c.Spawner.http_timeout = 300
c.JupyterHub.services = [{{"name": "tester", "api_token": s["token"]}}]
c.JupyterHub.load_roles = [{{"name": "tester", "scopes": ["admin:users", "admin:servers", "tokens"], "services": ["tester"]}}]
c.JupyterHub.cleanup_servers = True
""")


def answers(url):
    try:
        return http(url, None)[0] == 200
    except OSError:  # not listening yet
        return False


def wait_until_ready(hub, service_token, user, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, _, body = http(f"{hub}/hub/api/users/{user}", service_token)
        if status == 200 and json.loads(body).get("servers", {}).get("", {}).get("ready"):
            return
        time.sleep(0.5)
    raise AssertionError(f"the single-user server of {user} was not ready after {timeout} s")


def unreadable_by(user, path):
    """Whether ``user`` is refused ``path`` (listing it, or reading it)."""
    command = ["ls", str(path)] if os.path.isdir(path) else ["cat", str(path)]
    done = as_user(user, *command)
    return done.returncode != 0 and "Permission denied" in done.stderr


def test_a_hub_shares_kernels_keeps_private_ones_private_and_serves_each_spark_ui_to_its_owner(tmp_path, chromium):
    if os.geteuid() != 0:
        pytest.skip("the JupyterHub test makes Unix users: run it as root, as CI does")
    tag = secrets.token_hex(3)
    ann, bob = f"pskann{tag}", f"pskbob{tag}"
    where = tempfile.mkdtemp(prefix="pyspark-kernel-hub-", dir="/tmp")
    os.chmod(where, 0o755)  # the users' environment and the shared kernels live here
    hub_dir = tmp_path / "hub"
    hub_dir.mkdir()
    hub_process = None
    homes = {}
    try:
        from pathlib import Path

        where = Path(where)
        venv = users_environment(where)
        shared = where / "prefix"
        # No class-data sharing for the shared kernel: the archive's modes are checked on ann's.
        done = run_cli("create", "-k", "team", "--prefix", str(shared), "-e", str(venv), "--display_name", "PySpark (team)", "--no-class_data_sharing")
        assert done.returncode == 0, done.stderr
        for user in (ann, bob):
            homes[user] = add_user(user)
            made = as_user(user, str(venv / "bin" / "python"), "-m", "pyspark_kernel", "create", "--user", "-k", f"own-{user}", "-e", str(venv), "--warm_up", "jvm")
            assert made.returncode == 0, made.stdout + made.stderr
        ports = [free_port(), free_port(), free_port()]
        password, service_token = secrets.token_hex(12), secrets.token_hex(24)
        hub_config(hub_dir, ports, venv, shared, (ann, bob), password, service_token)
        hub = f"http://127.0.0.1:{ports[0]}"
        started = time.monotonic()
        with open(hub_dir / "hub.log", "wb") as log:
            hub_process = subprocess.Popen([os.path.join(VENV_DIR, "bin", "jupyterhub"), "-f", str(hub_dir / "jupyterhub_config.py")],
                                           cwd=hub_dir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for_service(lambda: answers(f"{hub}/hub/api/"), [hub_process], f"JupyterHub did not start; see {hub_dir}/hub.log")

        tokens, kernels, links = {}, {}, {}
        for user in (ann, bob):
            status, _, body = http(f"{hub}/hub/api/users/{user}/tokens", service_token, "POST", {"note": "pyspark-kernel test", "expires_in": 3600})
            assert status in (200, 201), body
            tokens[user] = json.loads(body)["token"]
            status, _, body = http(f"{hub}/hub/api/users/{user}/server", service_token, "POST", {})
            assert status in (201, 202), body
        for user in (ann, bob):
            wait_until_ready(hub, service_token, user)
            status, _, body = http(f"{hub}/user/{user}/api/kernelspecs", tokens[user])
            assert status == 200, body
            listed = set(json.loads(body)["kernelspecs"])
            other = bob if user == ann else ann
            assert {"team", f"own-{user}"} <= listed and f"own-{other}" not in listed, (user, listed)
        # ann runs her own kernel, bob the shared one: each a Spark cell through the hub's websocket.
        for user, kernel in ((ann, f"own-{ann}"), (bob, "team")):
            status, _, body = http(f"{hub}/user/{user}/api/kernels", tokens[user], "POST", {"name": kernel})
            assert status == 201, body
            kernels[user] = json.loads(body)["id"]
        for user in (ann, bob):
            outputs = run_over_websocket(f"{hub}/user/{user}", None, kernels[user], "print(spark.range(1000).count())", timeout=600,
                                         headers=[f"Authorization: token {tokens[user]}"])
            assert "1000\n" in [content.get("text") for kind, content in outputs if kind == "stream"], outputs
            links[user] = banner_link(outputs)
            assert re.fullmatch(rf"/user/{user}/sparkui/\d+/jobs/", links[user]), links[user]
        status_lines = run_over_websocket(f"{hub}/user/{ann}", None, kernels[ann], "%spark status", headers=[f"Authorization: token {tokens[ann]}"])
        log_path = re.search(r"^JVM log: (.+)$", "".join(c.get("text", "") for _, c in status_lines), re.M).group(1)

        # Private stays private: bob cannot read ann's kernel, scratch directory, JVM log or archive cache.
        own_kernel = Path(homes[ann]) / ".local" / "share" / "jupyter" / "kernels" / f"own-{ann}"
        cds = Path(homes[ann]) / ".cache" / "pyspark-kernel" / "cds"
        for path in (own_kernel, own_kernel / "kernel.json", os.path.dirname(log_path), log_path, cds):
            assert stat.S_IMODE(os.stat(path).st_mode) & 0o077 == 0, f"{path} is {oct(stat.S_IMODE(os.stat(path).st_mode))}"
            assert unreadable_by(bob, path), f"{bob} can read {path}"
        team = shared / "share" / "jupyter" / "kernels" / "team"
        for root, _dirs, files in os.walk(team):
            for name in [root, *(os.path.join(root, f) for f in files)]:
                assert stat.S_IMODE(os.stat(name).st_mode) & 0o022 == 0, f"{name} is group- or world-writable"
        assert as_user(bob, "cat", str(team / "kernel.json")).returncode == 0

        # ann's Spark UI through the hub: hers to open, not bob's.
        ui = f"{hub}{links[ann][:-len('jobs/')]}"
        for page in ("jobs/", "stages/", "executors/", "api/v1/applications"):
            status, _, body = http(ui + page, tokens[ann])
            assert status == 200, f"{page}: {status} {body[:300]}"
        app_id = json.loads(http(ui + "api/v1/applications", tokens[ann])[2])[0]["id"]
        status, _, body = http(f"{ui}api/v1/applications/{app_id}/allexecutors", tokens[ann])
        assert status == 200 and "driver" in [e["id"] for e in json.loads(body)], body
        status, headers, _ = http(ui + "jobs/", tokens[bob], follow=False)
        assert status == 403 or (status == 302 and "/hub/" in headers.get("Location", "")), (status, headers.get("Location"))
        status, headers, _ = http(ui + "jobs/", None, follow=False)
        assert status == 403 or (status == 302 and "/hub/" in headers.get("Location", "") or "login" in headers.get("Location", "")), (status, headers.get("Location"))
        # Through bob's own server, the path to ann's UI port gets Spark's own 403: his server holds no token of hers.
        status, _, body = http(ui.replace(f"/user/{ann}/", f"/user/{bob}/") + "jobs/", tokens[bob], follow=False)
        assert status == 403, (status, body[:300])

        # In a browser logged into the hub as ann, the banner's link opens the UI.
        chromium.call("Page.enable")
        chromium.call("Page.navigate", url=f"{hub}/hub/login")
        chromium.wait_for("!!document.querySelector('#username_input')", 60, "the hub's login page did not load")
        chromium.evaluate(f"""(() => {{ document.querySelector('#username_input').value = {json.dumps(ann)};
            document.querySelector('#password_input').value = {json.dumps(password)};
            document.querySelector('#login_submit').click(); return true; }})()""")
        chromium.wait_for(f"location.pathname.startsWith('/user/{ann}/')", 120, f"the hub did not log {ann} in and open her server")
        chromium.call("Page.navigate", url=f"{hub}{links[ann]}")
        chromium.wait_for("location.pathname.endsWith('/jobs/') && document.readyState === 'complete'", 60, "the banner's UI link did not open in the browser")
        chromium.check_executors_tab(f"{ui}executors/", SCREENSHOT, "the Executors tab lists no executor through the hub")
        print(f"\nhub: {time.monotonic() - started:.1f} s from the hub's start to the screenshot")
    finally:
        if hub_process is not None:
            stop_process_group(hub_process)  # with cleanup_servers, the users' servers and kernels stop too
        for user in homes:
            remove_user(user)
        shutil.rmtree(where, ignore_errors=True)
    for user in (ann, bob):
        assert subprocess.run(["id", user], capture_output=True).returncode != 0, f"the user {user} is still there"
    assert_no_jvm_left(f"own-{ann}")
    assert_no_jvm_left("team")
