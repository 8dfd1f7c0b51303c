"""Fixtures of the FaaS functions' suite: moto, a private redis-server, Swift if it runs, and
action proxies (one per function, reused by the tests as a warm container is).

Run by `scripts/faas-functions.sh test`, which starts moto and exports its endpoint. Missing
parts are skipped with the reason, unless `CI=true` or `FAASCACHE_REQUIRE` names them (a comma
list: `redis`, `swift`, or `all`) — then they fail, as the project's other suites do.
"""

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
FAAS = os.path.dirname(HERE)
ROOT = os.path.normpath(os.path.join(FAAS, "..", ".."))
FUNCTIONS = os.path.join(FAAS, "functions")
PROXY = os.path.join(FAAS, "runtime", "actionproxy.py")
PYTHON = os.environ.get("FAAS_PYTHON") or sys.executable

sys.path.insert(0, FUNCTIONS)
sys.path.insert(0, FAAS)


def need(part, reason):
    """Skip (with `reason`) unless CI=true or FAASCACHE_REQUIRE names `part`: then fail."""
    required = {p.strip() for p in os.environ.get("FAASCACHE_REQUIRE", "").split(",") if p.strip()}
    if os.environ.get("CI") == "true" or part in required or "all" in required:
        pytest.fail(f"{reason} (required: CI=true or FAASCACHE_REQUIRE)")
    pytest.skip(reason)


# Under CI=true nothing may be skipped: a skipped test fails the run (the shared plugin).
sys.path.insert(0, os.path.join(ROOT, "scripts", "pytest"))
import no_skip_in_ci  # noqa: E402


def pytest_configure(config):
    config.pluginmanager.register(no_skip_in_ci.NoSkipInCi(), "no-skip-in-ci")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proxy:
    """One actionproxy process (a warm container) and a client for its two endpoints."""

    def __init__(self, *extra_args):
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([PYTHON, PROXY, "--port", "0", *extra_args],
                                     stdout=subprocess.PIPE, stderr=self.stderr, text=True)
        line = self.proc.stdout.readline()  # the contract's one line, once it accepts
        if not line.startswith("actionproxy listening on "):
            self.close()
            raise RuntimeError(f"actionproxy did not start: {line!r} {self.log()}")
        self.host, port = line.split()[-1].rsplit(":", 1)
        self.port = int(port)

    def request(self, path, body, method="POST", headers=None):
        """(status, decoded JSON body) of one request; `body` is bytes or a JSON-able value."""
        raw = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
        try:
            conn.request(method, path, body=raw, headers=headers or {"Content-Type": "application/json"})
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, (json.loads(data) if data else None)
        finally:
            conn.close()

    def init_file(self, function):
        with open(os.path.join(FUNCTIONS, f"{function}.py")) as f:
            code = f.read()
        return self.request("/init", {"value": {"name": function, "main": "main", "code": code, "binary": False}})

    def run(self, args):
        status, body = self.request("/run", {"value": args, "activation_id": uuid.uuid4().hex,
                                             "deadline": str(int(time.time() * 1000) + 60000)})
        assert status == 200, f"/run answered {status}: {body}; proxy log: {self.log()}"
        return body

    def alive(self):
        return self.proc.poll() is None

    def log(self):
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")[-4000:]

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def proxy():
    """A fresh, uninitialized proxy for one test."""
    made = []

    def make(*extra):
        p = Proxy(*extra)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


@pytest.fixture(scope="session")
def warm():
    """One initialized proxy per function for the whole session: warm containers."""
    proxies = {}

    def get(function):
        if function not in proxies:
            p = Proxy()
            status, body = p.init_file(function)
            assert (status, body) == (200, {"ok": True}), f"/init {function}: {status} {body} {p.log()}"
            proxies[function] = p
        return proxies[function]

    yield get
    for p in proxies.values():
        p.close()


@pytest.fixture(scope="session")
def moto():
    """moto's S3 (started by scripts/faas-functions.sh test, or here through scripts/moto.sh)."""
    endpoint = os.environ.get("FAASCACHE_MOTO_ENDPOINT")
    bucket = os.environ.get("FAASCACHE_MOTO_BUCKET", "faascache-test")
    if not endpoint:
        out = subprocess.run([os.path.join(ROOT, "scripts", "moto.sh"), "start"], capture_output=True, text=True)
        if out.returncode != 0:
            pytest.fail(f"scripts/moto.sh start failed: {out.stderr}")
        env = subprocess.run([os.path.join(ROOT, "scripts", "moto.sh"), "env"], capture_output=True, text=True).stdout
        vals = dict(line.split(" ", 1)[1].split("=", 1) for line in env.splitlines() if line.startswith("export "))
        endpoint, bucket = vals["FAASCACHE_MOTO_ENDPOINT"], vals["FAASCACHE_MOTO_BUCKET"]
    # moto checks no signatures: any key pair works.
    return {"kind": "s3", "endpoint": endpoint, "access_key": "testing", "secret_key": "testing",
            "region": "us-east-1"}, bucket


@pytest.fixture(scope="session")
def redis_addr():
    """A private redis-server on a free port (no persistence), or a skip if there is none."""
    exe = shutil.which("redis-server")
    if not exe:
        need("redis", "redis-server is not on PATH: the redis+s3 store kind is not tested")
    port = free_port()
    work = tempfile.mkdtemp(prefix="faas-redis-")
    proc = subprocess.Popen([exe, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                             "--appendonly", "no", "--dir", work, "--protected-mode", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import redis

    r = redis.Redis(host="127.0.0.1", port=port)
    for _ in range(100):
        try:
            r.ping()
            break
        except redis.exceptions.ConnectionError:
            if proc.poll() is not None:
                pytest.fail(f"redis-server exited ({proc.returncode})")
            time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("redis-server did not answer PING in 5 s")
    yield f"127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)
    shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="session")
def swift():
    """Swift's endpoints, if `scripts/swift.sh status` says it runs (the suite does not start it)."""
    status = subprocess.run([os.path.join(ROOT, "scripts", "swift.sh"), "status"], capture_output=True, text=True)
    if status.returncode != 0:
        need("swift", "Swift is not running (scripts/swift.sh start): the swift store kind is not tested")
    env = subprocess.run([os.path.join(ROOT, "scripts", "swift.sh"), "env"], capture_output=True, text=True).stdout
    vals = dict(line.split(" ", 1)[1].split("=", 1) for line in env.splitlines() if line.startswith("export "))
    return vals


@pytest.fixture(scope="session")
def prefix():
    """Keys of this session live under a prefix of their own (the stores are shared)."""
    return f"faas-tests/{uuid.uuid4().hex[:12]}/"


def faascache_bin():
    env = os.environ.get("FAASCACHE_BIN")
    if env:
        return env
    for profile in ("release", "debug"):
        p = os.path.join(ROOT, "target", profile, "faascache")
        if os.path.exists(p):
            return p
    return None


@pytest.fixture(scope="session")
def faascache_cluster(moto, tmp_path_factory):
    """A two-server `faascache cluster up` whose servers reach moto (backed tables), or a skip
    when the Python client's wheel was not installed or there is no faascache binary."""
    try:
        import faascache  # noqa: F401
    except ImportError:
        need("faascache", "the FaaSCache Python client is not in the venv (no wheel at install): "
                          "the faascache store kind is not tested")
    exe = faascache_bin()
    if not exe:
        need("faascache", "no faascache binary (FAASCACHE_BIN or target/{release,debug}/faascache): "
                          "the faascache store kind is not tested")
    cfg, _bucket = moto
    work = tmp_path_factory.mktemp("cluster")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "OS_", "ST_", "FAASCACHE_STORE"))}
    env.update(AWS_ENDPOINT_URL=cfg["endpoint"], AWS_ACCESS_KEY_ID=cfg["access_key"],
               AWS_SECRET_ACCESS_KEY=cfg["secret_key"], AWS_REGION=cfg["region"])
    log = open(work / "cluster-up.log", "wb")
    proc = subprocess.Popen([exe, "cluster", "up", "--dir", str(work / "c"), "--servers", "2",
                             "--memory", "64MiB", "--poll", "block"],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    locator = work / "c" / "coordinator.locator"
    deadline = time.monotonic() + 60
    while not (locator.exists() and locator.read_text().strip()):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            log.close()
            pytest.fail(f"faascache cluster up did not come up: {(work / 'cluster-up.log').read_text()[-2000:]}")
        time.sleep(0.05)
    try:
        yield locator.read_text().strip()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
