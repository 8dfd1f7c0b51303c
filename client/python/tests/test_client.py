"""The Python client against a real local cluster (conftest.py): every call, every error it can
provoke from here, threads, a frozen and thawed client process."""

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

import faascache

def stop(pids):
    """SIGSTOP each process and wait until the kernel shows it stopped (kill() returns before)."""
    for p in pids:
        os.kill(p, signal.SIGSTOP)
    deadline = time.monotonic() + 5
    for p in pids:
        while open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[0] != "T":
            assert time.monotonic() < deadline, f"process {p} did not stop"
            time.sleep(0.001)


ALL_ERRORS = [
    "NotFound", "NoSuchTable", "ObjectExists", "VersionMismatch", "Timeout", "Unavailable",
    "TooLarge", "NotANumber", "BadLocator", "InvalidArgument", "LeaseExpired", "StoreError",
    "ServerError", "TableExists",
]


def test_exceptions_form_one_hierarchy():
    assert issubclass(faascache.Error, Exception)
    for name in ALL_ERRORS:
        cls = getattr(faascache, name)
        assert issubclass(cls, faascache.Error), name
        assert cls.__module__ == "faascache" and cls.__name__ == name
    assert faascache.Error.__name__ == "Error"
    assert isinstance(faascache.__version__, str) and faascache.__version__


def test_put_get_versions(client, table):
    v1 = client.put(table, b"alice", b"hello")
    assert isinstance(v1, int) and v1 > 0
    assert client.get(table, b"alice") == b"hello"
    v2 = client.put(table, "alice", "wörld")  # str keys and values are UTF-8
    assert v2 > v1
    assert client.get_versioned(table, b"alice") == ("wörld".encode(), v2)
    client.put(table, b"ba", bytearray(b"\x00\x01"))
    client.put(table, b"mv", memoryview(b"abcdef")[1:3])
    assert client.get(table, "ba") == b"\x00\x01"
    assert client.get(table, "mv") == b"bc"
    client.put(table, b"empty", b"")
    assert client.get(table, b"empty") == b""
    tid = client.get_table_id(table)
    assert client.get(tid, b"alice") == "wörld".encode(), "tables by id too"


def test_tables(client):
    tid = client.create_table("py_tables", span=2)
    assert client.create_table("py_tables") == tid, "create is idempotent"
    assert client.get_table_id("py_tables") == tid
    assert ("py_tables", tid) in client.list_tables()
    client.drop_table("py_tables")
    with pytest.raises(faascache.NoSuchTable, match="py_tables"):
        client.get_table_id("py_tables")
    with pytest.raises(faascache.NoSuchTable):
        client.put("py_tables", b"k", b"v")
    with pytest.raises(faascache.NoSuchTable):
        client.drop_table("py_tables")


def test_backed_tables(client):
    eph = client.create_table("py_eph", policy="ephemeral", ttl=1.0)
    assert client.create_table("py_eph", policy="ephemeral", ttl=1.0) == eph
    client.put(eph, b"k", b"v")
    assert client.get(eph, b"k") == b"v"
    deadline = time.monotonic() + 20
    while True:  # removed after its TTL (by the master's sweep)
        try:
            client.get(eph, b"k")
        except faascache.NotFound:
            break
        assert time.monotonic() < deadline, "the ephemeral object outlived its TTL by 19 s"
        time.sleep(0.2)
    client.put(eph, b"k2", b"v")
    assert client.flush(eph, timeout=5) == (0, 0), "an ephemeral table has nothing to upload"
    # An ephemeral object is in no store: invalidation keeps it (counted as dirty).
    assert client.invalidate(eph, b"k2") == (0, 1)
    # (The prefix form may also count the expired object not yet swept: at least k2.)
    invalidated, kept = client.invalidate(eph, b"", prefix=True)
    assert invalidated == 0 and kept >= 1
    assert client.get(eph, b"k2") == b"v"
    client.create_table("py_plain")
    with pytest.raises(faascache.TableExists):
        client.create_table("py_plain", policy="ephemeral")
    with pytest.raises(faascache.InvalidArgument, match="policy"):
        client.create_table("py_x", policy="sometimes")
    with pytest.raises(faascache.InvalidArgument, match="ttl"):
        client.create_table("py_x", ttl=3)
    with pytest.raises(faascache.InvalidArgument):
        client.create_table("py_x", backing="ftp://nowhere")
    t0 = time.monotonic()
    with pytest.raises(faascache.StoreError):
        client.create_table("py_s3", backing="s3://no-credentials-here")
    assert time.monotonic() - t0 < 9
    with pytest.raises(faascache.NoSuchTable):
        client.get_table_id("py_s3")
    client.drop_table("py_eph")
    client.drop_table("py_plain")


def test_missing_objects(client, table):
    with pytest.raises(faascache.NotFound):
        client.get(table, b"nobody")
    assert client.remove(table, b"nobody") is None
    v = client.put(table, b"k", b"v")
    assert client.remove(table, b"k") == v
    with pytest.raises(faascache.NotFound):
        client.get(table, b"k")


def test_conditional_operations(client, table):
    v1 = client.put(table, b"k", b"1")
    v2 = client.put(table, b"k", b"2")
    with pytest.raises(faascache.VersionMismatch) as e:
        client.put(table, b"k", b"stale", if_version=v1)
    assert e.value.current_version == v2
    assert client.get(table, b"k") == b"2"
    v3 = client.put(table, b"k", b"3", if_version=v2)
    assert v3 > v2
    with pytest.raises(faascache.ObjectExists):
        client.put(table, b"k", b"x", if_absent=True)
    assert client.put(table, b"new", b"x", if_absent=True) > 0
    with pytest.raises(faascache.NotFound):
        client.put(table, b"absent", b"x", if_version=5)
    with pytest.raises(faascache.InvalidArgument):
        client.put(table, b"k", b"x", if_version=v3, if_absent=True)
    with pytest.raises(faascache.VersionMismatch) as e:
        client.remove(table, b"k", if_version=v1)
    assert e.value.current_version == v3
    assert client.remove(table, b"k", if_version=v3) == v3


def test_incr(client, table):
    assert client.incr(table, b"n") == 1
    assert client.incr(table, b"n", 10) == 11
    assert client.incr(table, b"n", -20) == -9
    assert client.get(table, b"n") == (-9).to_bytes(8, "little", signed=True)
    client.put(table, b"text", b"abc")
    with pytest.raises(faascache.NotANumber):
        client.incr(table, b"text")
    client.put(table, b"big", (2**63 - 1).to_bytes(8, "little", signed=True))
    with pytest.raises(faascache.NotANumber):
        client.incr(table, b"big", 1)


def test_multi(client, table):
    versions = client.multi_put(table, {b"a": b"1", "b": "2", b"c": b""})
    assert len(versions) == 3 and all(v > 0 for v in versions)
    versions2 = client.multi_put(table, [(b"d", b"4"), (b"e", bytearray(b"5"))])
    assert len(versions2) == 2
    got = client.multi_get(table, [b"a", "b", b"c", b"missing", b"e"])
    assert got == [b"1", b"2", b"", None, b"5"]
    assert client.multi_get(table, []) == []
    assert client.multi_put(table, {}) == []
    assert client.get_versioned(table, b"a")[1] == versions[0]
    with pytest.raises(faascache.InvalidArgument):
        client.multi_put(table, [(b"", b"x")])


def test_enumerate(client, table):
    want = {f"k{i}".encode(): f"v{i}".encode() for i in range(50)}
    client.multi_put(table, want)
    it = client.enumerate(table)
    assert isinstance(it, faascache.Enumeration) and iter(it) is it
    got = list(it)
    assert {k: v for k, v, _ in got} == want
    assert all(isinstance(k, bytes) and isinstance(ver, int) and ver > 0 for k, _, ver in got)
    assert len(got) == 50
    assert list(it) == [] and next(it, None) is None, "an exhausted iterator stays exhausted"
    tid = client.get_table_id(table)
    assert sorted(client.enumerate(tid)) == sorted(got), "by id too"
    with pytest.raises(faascache.NoSuchTable):
        client.enumerate("no_such_table_here")
    with pytest.raises(TypeError):
        client.enumerate(1.5)
    with pytest.raises(TypeError):
        faascache.Enumeration()


BATCH_BYTES = 256 * 1024  # the Rust client's Enumerate batch (client/src/enumerate.rs)


def test_enumerate_a_table_larger_than_a_batch(client):
    """Several batches per tablet (3 x BATCH_BYTES of values over two masters): every key comes
    exactly once; an iterator can stop early, be dropped, or outlive its client's close()."""
    name = "py_enum_big"
    client.create_table(name, span=2)
    try:
        value = bytes(range(256)) * 32  # 8 KiB
        n = 3 * BATCH_BYTES // len(value)
        keys = [f"big{i:04}".encode() for i in range(n)]
        for i in range(0, n, 16):
            client.multi_put(name, {k: value for k in keys[i : i + 16]})
        seen = {}
        for k, v, ver in client.enumerate(name):
            assert v == value and ver > 0
            seen[k] = seen.get(k, 0) + 1
        assert sorted(seen) == keys and set(seen.values()) == {1}, "every key exactly once"

        # Partial consumption: a few items, then the iterator is dropped (and a second one is
        # abandoned before its first item); the client goes on working.
        it = client.enumerate(name)
        first = [next(it) for _ in range(5)]
        assert len({k for k, _, _ in first}) == 5
        del it
        client.enumerate(name)
        import gc

        gc.collect()
        assert len(list(client.enumerate(name))) == n
        assert client.get(name, keys[0]) == value
    finally:
        client.drop_table(name)


def test_enumerate_after_close_and_drop(cluster, table):
    c = faascache.Client(coordinator=cluster.locator, timeout=10)
    c.multi_put(table, {f"k{i}": b"v" for i in range(10)})
    it = c.enumerate(table)
    assert next(it)[1] == b"v"  # the first batch is in memory: the rest of it still comes
    c.close()
    assert len(list(it)) == 9
    with pytest.raises(faascache.InvalidArgument, match="closed"):
        c.enumerate(table)
    # A table dropped in the middle of an enumeration (1 MiB: more than the first batch): the
    # next fetch raises, and then the iterator is exhausted.
    with faascache.Client(coordinator=cluster.locator, timeout=10) as c2:
        c2.create_table("py_enum_dropped", span=2)
        c2.multi_put("py_enum_dropped", {f"k{i}": bytes(64 << 10) for i in range(16)})
        it = c2.enumerate("py_enum_dropped")
        next(it)
        c2.drop_table("py_enum_dropped")
        with pytest.raises(faascache.NoSuchTable):
            list(it)
        assert list(it) == [], "after an error the iterator is exhausted"
        with pytest.raises(faascache.NoSuchTable):
            next(c2.enumerate(2**40))  # an unknown id: raised by the first fetch


def test_large_values_go_in_chunks_to_a_backed_table(client):
    big = client.create_table("py_big", policy="ephemeral")
    body = bytes(range(256)) * (5 * 4096 + 3)  # 5 MiB + 768 bytes
    v = client.put(big, b"out/blurred.png", body)
    got, version = client.get_versioned(big, b"out/blurred.png")
    assert got == body and version == v
    assert client.put(big, b"out/blurred.png", b"small") > v
    assert client.get(big, b"out/blurred.png") == b"small"
    with pytest.raises(faascache.ObjectExists):
        client.put(big, b"out/blurred.png", body, if_absent=True)


def test_limits_and_bad_arguments(client, table):
    with pytest.raises(faascache.TooLarge, match="value"):
        client.put(table, b"huge", bytes(64 << 20))
    with pytest.raises(faascache.TooLarge, match="key"):
        client.put(table, bytes(70000), b"v")
    with pytest.raises(faascache.InvalidArgument, match="empty key"):
        client.get(table, b"")
    with pytest.raises(TypeError):
        client.get(table, 12)
    with pytest.raises(TypeError):
        client.get(1.5, b"k")
    with pytest.raises(TypeError, match="int >= 0"):
        client.get(-1, b"k")


def test_connect_errors(cluster, tmp_path):
    with pytest.raises(faascache.BadLocator):
        faascache.Client(coordinator="nonsense")
    with pytest.raises(faascache.BadLocator, match="cluster up"):
        faascache.Client(dir=str(tmp_path))
    with pytest.raises(faascache.InvalidArgument):
        faascache.Client(coordinator=cluster.locator, dir=str(cluster.dir))
    with pytest.raises(faascache.InvalidArgument):
        faascache.Client(coordinator=cluster.locator, timeout=-1)
    # A port nobody listens on (this test's own, just closed).
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(faascache.Unavailable, match="Connection refused"):
        faascache.Client(coordinator=f"tcp:host=127.0.0.1,port={port}", timeout=1)


def test_connect_by_dir_and_close(cluster):
    c = faascache.Client(dir=str(cluster.dir))
    assert c.coordinator == cluster.locator
    assert "closed" not in repr(c)
    with c:
        c.create_table("py_dir")
        c.put("py_dir", b"k", b"v")
        assert c.get("py_dir", b"k") == b"v"
        c.drop_table("py_dir")
    assert c.closed and "closed" in repr(c)
    with pytest.raises(faascache.InvalidArgument, match="closed"):
        c.get("py_dir", b"k")
    c.close()  # idempotent


def test_timeout_when_the_servers_are_frozen(cluster, table):
    c = faascache.Client(coordinator=cluster.locator, timeout=0.5)
    c.put(table, b"k", b"v")
    pids = cluster.server_pids()
    assert pids, "the cluster has servers"
    stop(pids)
    try:
        t0 = time.monotonic()
        with pytest.raises((faascache.Timeout, faascache.Unavailable)) as e:
            c.get(table, b"k")
        assert time.monotonic() - t0 < 5
        assert isinstance(e.value, faascache.Timeout), f"frozen servers time out: {e.value!r}"
    finally:
        for p in pids:
            os.kill(p, signal.SIGCONT)
    c.close()
    with faascache.Client(coordinator=cluster.locator, timeout=10) as c2:
        assert c2.get(table, b"k") == b"v"


def test_eight_threads_share_one_client(client, table):
    n = 200
    errors = []

    def work(i):
        try:
            for j in range(n):
                key = f"t{i}-{j % 10}".encode()
                v = client.put(table, key, f"{i}:{j}".encode())
                value, version = client.get_versioned(table, key)
                assert value == f"{i}:{j}".encode() and version == v
                client.incr(table, b"shared")
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert client.incr(table, b"shared", 0) == 8 * n


def test_the_gil_is_released_while_waiting(cluster, table):
    """A call blocked on frozen servers must not stop another Python thread from running."""
    c = faascache.Client(coordinator=cluster.locator, timeout=1.5)
    c.put(table, b"k", b"v")
    pids = cluster.server_pids()
    ticks = []
    done = threading.Event()

    def blocked():
        try:
            c.get(table, b"k")
        except faascache.Error:
            pass
        done.set()

    stop(pids)
    try:
        t = threading.Thread(target=blocked)
        t.start()
        while not done.is_set():
            ticks.append(time.monotonic())
            time.sleep(0.01)
        t.join()
    finally:
        for p in pids:
            os.kill(p, signal.SIGCONT)
    c.close()
    assert len(ticks) > 20, f"the main thread ran only {len(ticks)} times while a call waited"


CHILD = r"""
import sys, faascache
c = faascache.Client(coordinator=sys.argv[1], timeout=10)
t = sys.argv[2]
c.put(t, b"frozen", b"before")
print("ready", flush=True)
sys.stdin.readline()
v = c.put(t, b"frozen", b"after")
assert c.get(t, b"frozen") == b"after"
assert c.incr(t, b"count") == 1
print("ok", v, flush=True)
"""


def test_a_frozen_and_thawed_process_goes_on(cluster, client, table):
    """SIGSTOP for longer than the client lease term (conftest: 3 s), then SIGCONT: the client
    renews its lease and its next calls work."""
    p = subprocess.Popen(
        [sys.executable, "-c", CHILD, cluster.locator, table],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert p.stdout.readline().strip() == "ready"
        p.send_signal(signal.SIGSTOP)
        time.sleep(5)
        p.send_signal(signal.SIGCONT)
        out, err = p.communicate("go\n", timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err
    assert out.startswith("ok"), (out, err)
    assert client.get(table, b"frozen") == b"after"


def test_a_forked_child_makes_its_own_client(cluster, table):
    """Documented: after fork() the child creates a new client (the parent's is not shared)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            with faascache.Client(coordinator=cluster.locator, timeout=10) as c:
                c.put(table, b"from-child", b"hi")
                code = 0
        finally:
            os.write(w, bytes([code]))
            os._exit(code)
    os.close(w)
    assert os.read(r, 1) == b"\x00"
    os.waitpid(pid, 0)
    with faascache.Client(coordinator=cluster.locator, timeout=10) as c:
        assert c.get(table, b"from-child") == b"hi"


def test_the_openwhisk_action(cluster, client):
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))
    import action

    client.create_table("action_in")
    client.put("action_in", b"doc-1", b"the quick brown fox jumps over the lazy dog the end")
    r = action.main({"coordinator": cluster.locator, "key": "doc-1"})
    assert r["ok"] is True and r["words"] == 11
    assert client.get("action_out", b"doc-1") == b'{"the": 3}'
    r = action.main({"coordinator": cluster.locator, "key": "nope"})
    assert r == {"ok": False, "error": "no input object 'nope' in table action_in"}
