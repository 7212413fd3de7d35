"""The Spark UI and its REST API answer only their owner (issue 28).

The owner runs a kernel under a real `jupyter server` (root, as the suite runs) and a job that
waits for the test. A second Unix user, made by the test, tries every page and REST path of the
owner's UI straight on 127.0.0.1 and through a `jupyter server` of their own with the server
extension, then tries to kill the job with the jobs page's CSRF token: every answer is refused and
the job completes. The owner, through their server, gets every page; the UI's key and token are
on no command line, in no log, kernel.json or the environment page. A dedicated and a shared
driver alike. The same kernels serve test_rpc_access's checks of the driver's RPC and blocks
(spark.authenticate, on by default): the other user is refused there too."""

import glob
import json
import os
import pwd
import re
import secrets
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import psutil
import pytest

from pyspark_kernel.runtime.uiauth import KEY_SETTING, TOKEN_PREFIX

from .conftest import assert_no_jvm_left, free_port, run_cli, serving_jupyter, stop_process_group, wait_for_service
from .kernels import wait_until
from .server_api import banner_link, http, request, run_over_websocket
from .test_jupyterhub import add_user, remove_user, users_environment
from .test_rpc_access import check_a_local_driver_refuses_another_user, check_the_shared_driver_refuses_another_user
from .test_shared_driver import server_jvms, servers_of

pytestmark = pytest.mark.e2e

PREFIX = "/user/owner/"
PATHS = ["", "jobs/", "jobs/job/?id=0", "stages/", "storage/", "environment/", "executors/", "SQL/",
         "api/v1/applications", "api/v1/version", "static/webui.js"]
TASKS_BOUND = 300  # seconds the job's tasks wait for the test's go-ahead at most

# Run by the other user with the system's python3, its input on stdin: nothing on its command line.
PROBE = r"""
import json, os, re, sys, urllib.error, urllib.parse, urllib.request

given = json.loads(sys.stdin.read())

class Stay(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None

opener = urllib.request.build_opener(Stay())

def fetch(url, headers, data=None):
    try:
        with opener.open(urllib.request.Request(url, data=data, headers=headers), timeout=60) as answer:
            return answer.status, answer.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode("utf-8", "replace")

found = {"get": {}, "kill": {}, "files": {}}
for name, root, headers in given["roots"]:
    found["get"][name] = {path: fetch(root + path, headers)[0] for path in given["paths"]}
    status, page = fetch(root + "jobs/", headers)
    csrf = re.findall(r'name="csrfToken" value="([0-9a-f]+)"', page)
    form = urllib.parse.urlencode({"id": given["job"], "csrfToken": csrf[0] if csrf else "0" * 32}).encode()
    found["kill"][name] = {"csrf_found": bool(csrf), "status": fetch(root + "jobs/job/kill/", headers, form)[0]}
for path in [given["token_file"], given["runtime_dir"]]:
    try:
        os.listdir(path) if path == given["runtime_dir"] else open(path).read()
        found["files"][path] = "read"
    except OSError as error:
        found["files"][path] = type(error).__name__
# The control: with the owner's token the same requests reach the UI, so a refusal above is the token's.
status, page = fetch(given["roots"][0][1] + "jobs/", {"Authorization": "Bearer " + given["control"]})
found["control"] = {"status": status, "csrf_found": "csrfToken" in page}
print(json.dumps(found))
"""


def run_as(user, code, given, timeout=300):
    home = pwd.getpwnam(user).pw_dir
    return subprocess.run(["runuser", "-u", user, "--", "env", "-i", f"HOME={home}", "PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8",
                           "/usr/bin/python3", "-c", code], input=json.dumps(given), capture_output=True, text=True, timeout=timeout, cwd="/")


def waiting_job(markers, go):
    """A cell whose two tasks each leave a marker, then wait for ``go`` to exist (bounded)."""
    return (f"import os, time\n"
            f"def wait_for_go(x):\n"
            f"    open({str(markers)!r} + '/started%d' % x, 'w').close()\n"
            f"    deadline = time.monotonic() + {TASKS_BOUND}\n"
            f"    while not os.path.exists({str(go)!r}) and time.monotonic() < deadline:\n"
            f"        time.sleep(0.1)\n"
            f"    return x\n")


DEDICATED_JOB = "print(sorted(sc.parallelize(range(2), 2).map(wait_for_go).collect()))"
# Spark Connect has no RDDs: a Python UDF over a range of two partitions, one row each. Not
# range(2).repartition(2): its round-robin puts both rows in one partition (measured: partition 1,
# with or without adaptive execution), so one task's first row waited for the go-ahead alone.
SHARED_JOB = ("from pyspark.sql.functions import udf\n"
              "print(sorted(r[0] for r in spark.range(0, 2, 1, 2).select(udf(wait_for_go, 'long')('id')).collect()))")


def other_users_server(user, venv, port, token, home):
    """A `jupyter server` of ``user``'s own (not root: no --allow-root), with the server extension;
    its token in its environment, never on its command line."""
    log = open(os.path.join(home, "server.log"), "wb")  # noqa: SIM115 - closed with the server
    command = ["runuser", "-u", user, "--", "env", "-i", f"HOME={home}", "PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8",
               f"JUPYTER_TOKEN={token}", str(venv / "bin" / "python"), "-m", "jupyter_server", "--no-browser", "--ip=127.0.0.1",
               f"--port={port}", "--ServerApp.port_retries=0", f"--ServerApp.root_dir={home}", f"--ServerApp.base_url=/user/{user}/"]
    try:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd="/", start_new_session=True)
    finally:
        log.close()


def jvm_property(process, name):
    """A system property of a running JVM of ours, read with the jcmd beside its java."""
    jcmd = Path(process.exe()).with_name("jcmd")
    if not jcmd.exists():
        pytest.fail(f"no jcmd beside {process.exe()}: this test needs a full JDK")
    printed = subprocess.run([str(jcmd), str(process.pid), "VM.system_properties"], capture_output=True, text=True, timeout=120, check=True).stdout
    found = re.search(rf"^{re.escape(name)}=(.*)$", printed, re.M)
    return found.group(1) if found else ""


def answers(url, token):
    try:
        return http(url, token)[0] == 200
    except OSError:  # not listening yet
        return False


def kernel_logs(scratch):
    """The kernel's kernel.log and driver.log, in its scratch directory."""
    logs = [os.path.join(scratch, name) for name in ("kernel.log", "driver.log")]
    assert all(os.path.isfile(path) for path in logs), f"no kernel.log and driver.log in {scratch}: {os.listdir(scratch)}"
    return logs


def check_rpc_refused(base, token, kernel_id, driver, user, probe, xdg, secret_files):
    """``user`` can neither call the kernel's driver (its own, or the shared one under ``xdg``) nor
    fetch its blocks, and the owner's session keeps working: test_rpc_access's checks, run on this
    test's kernel rather than on a kernel started for them. ``secret_files()``: where a dedicated
    driver's session secret must not be (kernel.json, the kernel's logs)."""
    def printed(code):
        outputs = run_over_websocket(base, token, kernel_id, code, timeout=600)  # a cell that fails raises
        return "".join(c.get("text", "") for kind, c in outputs if kind == "stream").strip().splitlines()

    def status():
        return "".join(c.get("text", "") for _, c in run_over_websocket(base, token, kernel_id, "%spark status"))

    if driver == "dedicated":
        check_a_local_driver_refuses_another_user(printed, status, user, probe, secret_files)
    else:
        check_the_shared_driver_refuses_another_user(printed, status, xdg, user, probe)


@pytest.mark.parametrize("driver", ["dedicated", "shared"])
def test_another_user_gets_nothing_from_the_spark_ui_and_cannot_kill_a_job_while_its_owner_gets_every_page(tmp_path, driver, probe):
    if os.geteuid() != 0:
        pytest.skip("the test makes a Unix user: run it as root, as CI does")
    name = f"uiacc-{driver}"
    data = tmp_path / "jupyter"
    flags = ["--spark_driver", "shared", "--driver_linger", "5", "--no-class_data_sharing"] if driver == "shared" else []
    done = run_cli("create", "-k", name, "-d", str(data / "kernels"), "--spark_master", "local[2]", *flags)
    assert done.returncode == 0, done.stderr
    # The shared driver's directory: this test's own (0700), short, as its Unix socket needs.
    xdg = Path(tempfile.mkdtemp(prefix="psk-xdg-"))
    markers, go = tmp_path / "markers", tmp_path / "go"
    markers.mkdir()
    other = f"uiacc{secrets.token_hex(3)}"
    where = Path(tempfile.mkdtemp(prefix="pyspark-kernel-ui-access-", dir="/tmp"))
    os.chmod(where, 0o755)
    runtime_dir = tmp_path / "runtime"
    other_server, kernel_id, job_thread = None, None, None
    try:
        home = add_user(other)
        # The kernel's log at DEBUG, as test_rpc_access's kernels: the more it logs, the more a secret could leak.
        env = {"JUPYTERHUB_SERVICE_PREFIX": PREFIX, "XDG_RUNTIME_DIR": str(xdg), "PYSPARK_KERNEL_LOG_LEVEL": "DEBUG"}
        with serving_jupyter(tmp_path, data, base_url=PREFIX, env=env) as (base, token):
            origin = base[:-len(PREFIX.rstrip("/"))]
            kernel_id = json.loads(request(base, token, "POST", "/api/kernels", {"name": name})[1])["id"]
            link = banner_link(run_over_websocket(base, token, kernel_id, "spark.range(10).count()", timeout=600))
            port = int(re.fullmatch(rf"{PREFIX}sparkui/(\d+)/jobs/", link).group(1))
            [token_file] = glob.glob(str(runtime_dir / f"{TOKEN_PREFIX}{port}-*.jws"))
            assert oct(os.stat(token_file).st_mode & 0o777) == "0o600"
            ui_token = Path(token_file).read_text()
            status = "".join(c.get("text", "") for _, c in run_over_websocket(base, token, kernel_id, "%spark status"))
            assert f"$(cat {token_file})" in status, status  # how to open it without the server
            scratch = os.path.dirname(re.search(r"^JVM log: (.+)$", status, re.M).group(1))

            # The owner's job runs, waiting for the test.
            run_over_websocket(base, token, kernel_id, waiting_job(markers, go))
            ran = {}

            def run_job():
                try:
                    ran["outputs"] = run_over_websocket(base, token, kernel_id, DEDICATED_JOB if driver == "dedicated" else SHARED_JOB, timeout=TASKS_BOUND + 120)
                except AssertionError as error:  # the cell failed: said below, not after the whole bound
                    ran["error"] = str(error)

            job_thread = threading.Thread(target=run_job, daemon=True)
            job_thread.start()
            wait_until(lambda: len(os.listdir(markers)) == 2 or not job_thread.is_alive(), 300,
                       "the owner's job, still running, never started both its tasks")
            assert len(os.listdir(markers)) == 2, f"the owner's job ended before both its tasks started: {ran}"
            ui = f"{origin}{PREFIX}sparkui/{port}/"
            app_id = json.loads(http(ui + "api/v1/applications", token)[2])[0]["id"]
            running = [job["jobId"] for job in json.loads(http(f"{ui}api/v1/applications/{app_id}/jobs?status=running", token)[2])]
            assert running, "the owner's REST API shows no running job"

            # The other user: straight on 127.0.0.1, and through a Jupyter server of their own.
            venv = users_environment(where)
            other_port, other_token = free_port(), secrets.token_hex(16)
            other_server = other_users_server(other, venv, other_port, other_token, home)
            other_base = f"http://127.0.0.1:{other_port}/user/{other}/"
            wait_for_service(lambda: answers(f"{other_base}api/status", other_token), [other_server], f"{other}'s Jupyter server did not start; see {home}/server.log")
            given = {"roots": [["direct", f"http://127.0.0.1:{port}/", {}],
                               ["own server", f"{other_base}sparkui/{port}/", {"Authorization": f"token {other_token}"}]],
                     "paths": PATHS, "job": running[0], "control": ui_token, "token_file": token_file, "runtime_dir": str(runtime_dir)}
            tried = run_as(other, PROBE, given)
            assert tried.returncode == 0, tried.stderr
            found = json.loads(tried.stdout)
            print(f"\n{driver}: what {other} got: {json.dumps(found)}")
            assert found["control"] == {"status": 200, "csrf_found": True}, found["control"]  # the probe reaches the UI
            for where_from, statuses in found["get"].items():
                assert all(not 200 <= code < 300 for code in statuses.values()), (where_from, statuses)
                assert statuses["jobs/"] == 403 and statuses["api/v1/applications"] == 403, (where_from, statuses)
            for where_from, kill in found["kill"].items():
                assert not kill["csrf_found"] and not 200 <= kill["status"] < 400, (where_from, kill)
            assert set(found["files"].values()) == {"PermissionError"}, found["files"]

            # The owner, through their own server, gets every page while the job runs.
            for path in PATHS[1:]:
                status_code, _, page = http(ui + path, token)
                assert status_code == 200, f"{path}: {status_code} {page[:300]}"
            environment = http(ui + "environment/", token)[2] + http(f"{ui}api/v1/applications/{app_id}/environment", token)[2]
            go.touch()
            job_thread.join(TASKS_BOUND + 150)
            printed = [c.get("text", "") for kind, c in ran.get("outputs", []) if kind == "stream"]
            assert "[0, 1]\n" in printed, ran  # the job completed: nobody killed it

            # Neither the key nor the token anywhere another user, or a saved notebook, could read.
            if driver == "dedicated":
                key = "".join(c.get("text", "") for kind, c in run_over_websocket(base, token, kernel_id, f"print(sc.getConf().get({KEY_SETTING!r}))")
                              if kind == "stream").strip()
            else:  # a Connect session cannot read it: the server JVM's own properties (spark-submit makes its conf system properties)
                [jvm] = server_jvms(xdg)
                key = jvm_property(jvm, KEY_SETTING)
            assert len(key) >= 43, f"the key read has {len(key)} characters"  # 256 bits, base64url; never printed
            secret_texts = [ui_token, key]
            command_lines = " ".join(" ".join(p.info["cmdline"] or []) for p in psutil.process_iter(["cmdline"]))
            assert "param.secretKey" not in command_lines
            logs = [Path(root, f).read_text(errors="replace") for root, _, files in os.walk(scratch) for f in files if f.endswith(".log")]
            logs += [Path(path).read_text(errors="replace") for path in glob.glob(str(xdg / "pyspark-kernel" / "*.log"))]
            places = {"command lines": command_lines, "kernel.json": (data / "kernels" / name / "kernel.json").read_text(),
                      "logs": "\n".join(logs), "environment page": environment}
            for secret in secret_texts:
                for place, text in places.items():
                    assert secret not in text, f"the UI's {'token' if secret == ui_token else 'key'} is in {place}"
            if driver == "shared":  # its 0600 properties file held the key until the JVM had read it
                kept = [path for path in xdg.rglob("*") if path.is_file() and key.encode() in path.read_bytes()]
                assert not kept, f"the UI's key is in {kept}"

            # The same other user against the driver's RPC and blocks: test_rpc_access's checks, on this kernel.
            check_rpc_refused(base, token, kernel_id, driver, other, probe, xdg, lambda: [data / "kernels" / name / "kernel.json", *kernel_logs(scratch)])

            request(base, token, "DELETE", f"/api/kernels/{kernel_id}")
            kernel_id = None
            # The kernel's watchdog removes it once the kernel has exited, however it exited.
            wait_until(lambda: not glob.glob(str(runtime_dir / f"{TOKEN_PREFIX}*")), 120, "the kernel left its UI token file")
    finally:
        if job_thread is not None and not go.exists():
            go.touch()
        if other_server is not None:
            stop_process_group(other_server)
        remove_user(other)
        shutil.rmtree(where, ignore_errors=True)
    assert subprocess.run(["id", other], capture_output=True).returncode != 0, f"the user {other} is still there"
    if driver == "shared":
        try:
            wait_until(lambda: not server_jvms(xdg) and not servers_of(xdg), 120, "the shared driver did not leave after its last notebook")
        finally:
            for process in server_jvms(xdg) + servers_of(xdg):
                process.kill()
            shutil.rmtree(xdg, ignore_errors=True)
    else:
        shutil.rmtree(xdg, ignore_errors=True)
        assert_no_jvm_left(name)
