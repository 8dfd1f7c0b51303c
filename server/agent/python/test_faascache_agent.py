"""pytest for the reference client, against a real ``faascache agent`` process (with an
in-memory fake cache: ``--fake-cache``).

The binary is ``$FAASCACHE_BIN``, else ``$CARGO_TARGET_DIR/debug/faascache``, else the
repository's ``target/debug/faascache`` (build it with ``cargo build -p faascache``).
Run: ``python3 -m pytest server/agent/python`` (``scripts/agent-python.sh`` does it all).
"""

from __future__ import annotations

import http.client
import json
import os
import pathlib
import subprocess
import time

import pytest

from faascache_agent import AgentClient, AgentError

REPO = pathlib.Path(__file__).resolve().parents[3]
GIB = 1 << 30


def binary() -> pathlib.Path:
    if os.environ.get("FAASCACHE_BIN"):
        return pathlib.Path(os.environ["FAASCACHE_BIN"])
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    return target / "debug" / "faascache"


@pytest.fixture()
def agent(tmp_path):
    exe = binary()
    if not exe.is_file():
        pytest.fail(f"{exe} is missing: build it with `cargo build -p faascache` (or set FAASCACHE_BIN)")
    addr_file = tmp_path / "agent.addr"
    log = open(tmp_path / "agent.log", "w")
    proc = subprocess.Popen(
        [str(exe), "agent", "--listen", "127.0.0.1:0", "--addr-file", str(addr_file),
         "--fake-cache", "6GiB", "--settle", "1h", "--max-sandboxes", "8"],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while not addr_file.exists() or not addr_file.read_text().strip():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("the agent did not start: " + (tmp_path / "agent.log").read_text())
            time.sleep(0.02)
        url = addr_file.read_text().strip()
        with AgentClient(url) as client:
            yield client
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def stable(status: dict) -> dict:
    """The status without what moves by itself (time, live memory, the sampler's plan)."""
    return {k: status[k] for k in ("counts", "sandboxes", "last_resize", "last_refusal")}


def test_an_invocation_round_trip(agent):
    assert agent.healthy()
    answer = agent.created("c1", "guest/thumbnail", booked_bytes=256 << 20,
                           features={"input_bytes": 4096, "width": 640})
    assert answer["id"] == "c1" and answer["phase"] == "created"
    assert answer["reserved_bytes"] == 256 << 20
    assert agent.started("c1", features={"input_bytes": 8192})["phase"] == "running"
    assert agent.finished("c1", peak_bytes=100 << 20)["peak_bytes"] == 100 << 20
    sb = agent.sandbox("c1")
    assert sb["phase"] == "idle" and sb["runs"] == 1 and sb["features"] == {"input_bytes": 8192.0}
    assert agent.destroyed("c1")["destroyed"] is True
    counts = agent.status()["counts"]
    assert counts["created"] == counts["started"] == counts["finished"] == counts["destroyed"] == 1
    assert counts["sandboxes"] == 0


def test_a_large_sandbox_shrinks_the_cache_before_the_answer(agent):
    node = agent.status()["node"]["total_bytes"]
    # Booked almost the whole node: the 6 GiB cache cannot stay.
    answer = agent.created("big", "guest/ml", booked_bytes=node - GIB)
    resize = answer["resize"]
    assert resize is not None and resize["reason"] in ("predicted", "pressure"), answer
    assert resize["budget_bytes"] < 6 * GIB
    assert resize["latency_us"] > 0
    status = agent.status()
    assert status["cache"]["budget_bytes"] == resize["budget_bytes"]
    assert status["shrink_latency_us"]["count"] == 1


def test_bad_input_is_refused_and_changes_nothing(agent):
    agent.created("live", "f", booked_bytes=1 << 20)
    before = stable(agent.status())
    cases = [
        (lambda: agent.started("ghost"), 404, "no sandbox"),
        (lambda: agent.finished("ghost"), 404, "no sandbox"),
        (lambda: agent.destroyed("ghost"), 404, "no sandbox"),
        (lambda: agent.created("live", "f", booked_bytes=1), 409, "already exists"),
        (lambda: agent.created("n", "f", booked_bytes=-1), 422, "negative"),
        (lambda: agent.created("n", "f", booked_bytes=1 << 50), 422, "larger than 1 TiB"),
        (lambda: agent.created("n", "f", booked_bytes=2 ** 70), 422, "larger than 1 TiB"),
        (lambda: agent.created("n", "f", booked_bytes=1.5), 422, "fraction"),
        (lambda: agent.created("n n", "f", booked_bytes=1), 422, "contains"),
        (lambda: agent.created("n", "f", booked_bytes=1, cgroup="/etc"), 422, "not under"),
        (lambda: agent.finished("live"), 409, "not running"),
        (lambda: agent.finished("live", peak_bytes=-5), 422, "negative"),
    ]
    for call, status, text in cases:
        with pytest.raises(AgentError) as e:
            call()
        assert e.value.status == status, e.value
        assert text in e.value.message, e.value
        assert stable(agent.status()) == before, e.value


def test_malformed_json_and_wrong_content_type(agent):
    host, port = agent._host, agent._port
    before = stable(agent.status())
    for body, ctype, status in [(b"{", "application/json", 400),
                                (b'{"id":"x"', "application/json", 400),
                                (b'{"id":"x","function":"f","booked_bytes":1}', "text/plain", 415),
                                (b"x" * 70000, "application/json", 413)]:
        conn = http.client.HTTPConnection(host, port, timeout=10)
        conn.request("POST", "/v1/sandboxes", body=body, headers={"Content-Type": ctype})
        resp = conn.getresponse()
        answer = json.loads(resp.read())
        conn.close()
        assert resp.status == status, answer
        assert answer["error"]
    assert stable(agent.status()) == before


def test_the_sandbox_bound_answers_429(agent):
    for i in range(8):
        agent.created(f"s{i}", "f", booked_bytes=1 << 20)
    before = stable(agent.status())
    with pytest.raises(AgentError) as e:
        agent.created("s8", "f", booked_bytes=1 << 20)
    assert e.value.status == 429 and "--max-sandboxes" in e.value.message
    assert stable(agent.status()) == before
