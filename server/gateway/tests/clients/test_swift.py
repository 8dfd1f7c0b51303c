"""python-swiftclient, the library and the `swift` CLI, against each target's Swift API (tempauth
v1: TARGET/auth/v1.0, test:tester / testing): upload, download, list, stat, delete, errors;
outcomes recorded and compared with the real Swift (test_zz_same_as_swift)."""
import os
import subprocess
import sys

import pytest
from swiftclient.exceptions import ClientException

from conftest import KEY, READER, READER_KEY, USER, compare_records, md5, norm_date, norm_http_date, unique

SWIFT_CLI = os.path.join(os.path.dirname(sys.executable), "swift")
DROP = {"x-timestamp", "x-trans-id", "x-openstack-request-id", "date", "x-put-timestamp", "connection",
        "transfer-encoding", "vary", "x-storage-policy"}


def headers(h):
    out = {}
    for k, v in h.items():
        k = k.lower()
        if k in DROP:
            continue
        out[k] = norm_http_date(v) if k == "last-modified" else v
    return out


def listing(entries):
    out = []
    for e in entries:
        e = dict(e)
        if "last_modified" in e:
            import datetime
            e["last_modified"] = norm_date(datetime.datetime.fromisoformat(e["last_modified"]))
        out.append(e)
    return out


def call(rec, label, fn, *args, **kwargs):
    try:
        r = fn(*args, **kwargs)
    except ClientException as e:
        rec.add(label, {"status": e.http_status})
        return None
    return r


def test_swiftclient_library(target, bucket, rec):
    c = target.swift()
    body = b"swift native API\n" * 100
    etag = call(rec, "put", c.put_object, bucket, "dir/a.txt", body, content_type="text/plain",
                headers={"X-Object-Meta-Color": "blue"})
    rec.add("put etag", etag)
    assert etag == md5(body)
    for k in ["dir/b.txt", "dir/sub/c.txt", "top.txt", "zz"]:
        c.put_object(bucket, k, k.encode())
    r = call(rec, "head", c.head_object, bucket, "dir/a.txt")
    rec.add("head", headers(r))
    assert r["x-object-meta-color"] == "blue" and r["content-type"] == "text/plain"
    h, data = c.get_object(bucket, "dir/a.txt")
    rec.add("get", {"headers": headers(h), "md5": md5(data)})
    assert data == body
    h, data = c.get_object(bucket, "dir/a.txt", headers={"Range": "bytes=5-10"})
    rec.add("get range", {"headers": headers(h), "body": data.decode()})
    rec.add("get chunked", md5(b"".join(c.get_object(bucket, "dir/a.txt", resp_chunk_size=7)[1])))

    h, entries = c.get_container(bucket)
    rec.add("list", listing(entries))
    rec.add("list headers", {k: v for k, v in headers(h).items() if k not in ("content-length",)})
    h, entries = c.get_container(bucket, prefix="dir/", delimiter="/")
    rec.add("list prefix+delimiter", listing(entries))
    h, entries = c.get_container(bucket, limit=2, marker="dir/b.txt")
    rec.add("list limit+marker", [e["name"] for e in entries])
    rec.add("list full", [e["name"] for e in c.get_container(bucket, full_listing=True, limit=2)[1]])
    rec.add("head container", {k: v for k, v in headers(c.head_container(bucket)).items()
                               if k in ("x-container-object-count", "x-container-bytes-used", "content-length")})

    c.post_object(bucket, "dir/a.txt", headers={"X-Object-Meta-Color": "red"})
    rec.add("head after post", headers(c.head_object(bucket, "dir/a.txt")))
    call(rec, "copy", c.copy_object, bucket, "dir/a.txt", f"/{bucket}/copied.txt")
    rec.add("head copy", headers(call(rec, "head copy call", c.head_object, bucket, "copied.txt") or {}))

    call(rec, "delete", c.delete_object, bucket, "dir/b.txt")
    call(rec, "head deleted", c.head_object, bucket, "dir/b.txt")
    call(rec, "get missing", c.get_object, bucket, "nope")
    call(rec, "delete missing", c.delete_object, bucket, "nope")
    call(rec, "get missing container", c.get_container, unique("missing"))
    call(rec, "put missing container", c.put_object, unique("missing"), "k", b"v")
    reader = target.swift(READER, READER_KEY)
    # Normalization 13: refused, whichever 4xx (Swift: 403 after login; the gateway knows only
    # its own credentials: 401 at login).
    try:
        reader.get_object(bucket, "top.txt")
        rec.add("reader get refused", False)
    except ClientException as e:
        rec.add("reader get refused", e.http_status in (401, 403))
    bad = target.swift(USER, "wrong")
    call(rec, "bad key", bad.get_object, bucket, "top.txt")
    with pytest.raises(ClientException) as e:
        bad.head_object(bucket, "top.txt")
    assert e.value.http_status == 401


def swift_cli(target, cwd, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ST_", "OS_"))}
    env.update(ST_AUTH=target.auth_url, ST_USER=USER, ST_KEY=KEY)
    return subprocess.run([SWIFT_CLI, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def stat_fields(out):
    """`swift stat` prints 'Name: value' lines; keep the stable ones."""
    keep = {}
    for line in out.splitlines():
        if ":" not in line:
            continue
        k, v = (x.strip() for x in line.split(":", 1))
        if k in ("X-Timestamp", "X-Trans-Id", "X-Openstack-Request-Id", "Date", "X-Put-Timestamp"):
            continue
        if k == "Meta Mtime":  # the uploaded file's mtime (the CLI's X-Object-Meta-Mtime)
            v = "<mtime>"
        keep[k] = norm_http_date(v) if k == "Last Modified" else v
    return keep


def test_swift_cli(target, bucket, rec, tmp_path):
    src = tmp_path / "up"
    src.mkdir()
    (src / "one.txt").write_bytes(b"one\n" * 50)
    (src / "two.bin").write_bytes(os.urandom(100_000))
    p = swift_cli(target, src, "upload", bucket, "one.txt", "two.bin")
    rec.add("upload", {"rc": p.returncode, "out": sorted(p.stdout.split())})
    p = swift_cli(target, src, "upload", bucket, "one.txt", "--object-name", "renamed/one.txt",
                  "-H", "X-Object-Meta-Tag: cli", "-H", "Content-Type: text/plain")
    rec.add("upload renamed", {"rc": p.returncode, "out": p.stdout.split()})
    p = swift_cli(target, tmp_path, "list", bucket)
    rec.add("list", {"rc": p.returncode, "out": p.stdout.split()})
    p = swift_cli(target, tmp_path, "list", bucket, "--prefix", "renamed/", "--long")
    rec.add("list long", {"rc": p.returncode, "sizes": [l.split()[0] for l in p.stdout.splitlines() if l.strip()]})
    p = swift_cli(target, tmp_path, "stat", bucket, "renamed/one.txt")
    rec.add("stat object", {"rc": p.returncode, **stat_fields(p.stdout)})
    p = swift_cli(target, tmp_path, "stat", bucket)
    rec.add("stat container", {"rc": p.returncode, **{k: v for k, v in stat_fields(p.stdout).items()
                                                      if k in ("Account", "Container", "Objects", "Bytes")}})
    dst = tmp_path / "down"
    dst.mkdir()
    p = swift_cli(target, dst, "download", bucket, "two.bin", "-o", "two.out")
    ok = (dst / "two.out").exists() and (dst / "two.out").read_bytes() == (src / "two.bin").read_bytes()
    rec.add("download", {"rc": p.returncode, "same bytes": ok})
    assert ok
    p = swift_cli(target, dst, "download", bucket, "--prefix", "renamed/")
    rec.add("download prefix", {"rc": p.returncode, "same bytes": (dst / "renamed" / "one.txt").exists()
                                and (dst / "renamed" / "one.txt").read_bytes() == b"one\n" * 50})
    p = swift_cli(target, tmp_path, "download", bucket, "nope", "-o", "-")
    rec.add("download missing", {"rc": p.returncode, "not found": "not found" in p.stdout + p.stderr})
    p = swift_cli(target, tmp_path, "delete", bucket, "one.txt", "renamed/one.txt")
    rec.add("delete", {"rc": p.returncode, "out": sorted(p.stdout.split())})
    p = swift_cli(target, tmp_path, "list", bucket)
    rec.add("list after delete", {"rc": p.returncode, "out": p.stdout.split()})
    p = swift_cli(target, tmp_path, "stat", bucket, "one.txt")
    rec.add("stat deleted", {"rc": p.returncode, "404": "404" in p.stderr})


def test_zz_same_as_swift():
    compare_records(__name__)
