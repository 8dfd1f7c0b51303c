"""A real local cluster for the tests: `faascache cluster up` (two servers) in a temporary
directory, started once per session and stopped at the end.

The binary is $FAASCACHE_BIN, else target/release/faascache, else target/debug/faascache of
this repository (scripts/python-client.sh builds it).
"""

import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[3]
LEASE_TERM_S = 3  # short, so that the freeze test outlives the client's lease


def faascache_bin() -> pathlib.Path:
    env = os.environ.get("FAASCACHE_BIN")
    if env:
        return pathlib.Path(env)
    for profile in ("release", "debug"):
        p = REPO / "target" / profile / "faascache"
        if p.exists():
            return p
    pytest.exit("no faascache binary: set FAASCACHE_BIN or run `cargo build -p faascache`", 2)


class Cluster:
    def __init__(self, dir: pathlib.Path, proc: subprocess.Popen):
        self.dir = dir
        self.proc = proc
        self.locator = (dir / "coordinator.locator").read_text().strip()

    def server_pids(self):
        return [int(p.read_text().strip()) for p in sorted((self.dir / "pids").glob("server-*.pid"))]


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    dir = tmp_path_factory.mktemp("cluster")
    log = open(dir.parent / "cluster-up.log", "wb")
    # No object-store settings reach the servers: a backed table's store check fails the same way
    # everywhere (StoreError), whatever the environment of the test run.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "OS_", "ST_", "FAASCACHE_STORE"))}
    proc = subprocess.Popen(
        [
            str(faascache_bin()), "cluster", "up", "--dir", str(dir), "--servers", "2",
            "--memory", "64MiB", "--poll", "block", "--client-lease-term", f"{LEASE_TERM_S}s",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    locator = dir / "coordinator.locator"
    deadline = time.monotonic() + 60
    while not (locator.exists() and locator.read_text().strip()):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            log.close()
            sys.stderr.write((dir.parent / "cluster-up.log").read_text())
            pytest.fail("faascache cluster up did not come up (its output is above)")
        time.sleep(0.05)
    try:
        yield Cluster(dir, proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture
def client(cluster):
    import faascache

    with faascache.Client(coordinator=cluster.locator, timeout=10) as c:
        yield c


@pytest.fixture
def table(client, request):
    name = "t_" + request.node.name.replace("[", "_").replace("]", "_")
    client.create_table(name)
    yield name
    client.drop_table(name)


# Under CI=true nothing may be skipped: a skipped test fails the run (the shared plugin).
sys.path.insert(0, str(REPO / "scripts" / "pytest"))
import no_skip_in_ci  # noqa: E402


def pytest_configure(config):
    config.pluginmanager.register(no_skip_in_ci.NoSkipInCi(), "no-skip-in-ci")
