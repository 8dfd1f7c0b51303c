#!/usr/bin/env python3
"""The Python client's latency beside redis-py, and a new process's time to its first value.

    bench/python/client_latency.py --dir CLUSTER_DIR [--redis-port 6379] [--n 3000]
                                   [--sizes 100,16000] [--cold 15]
                                   [--gateway http://127.0.0.1:PORT --gateway-key KEY:SECRET]

Needs the `faascache` package (scripts/python-client.sh installs it into
target/python-client-venv) and, for the Redis rows, the `redis` package and a Redis server.
`scripts/bench-python-client.sh` starts both clusters and runs this. Prints a Markdown table:
get p50/p99 (µs) per value size, then the cold start of a fresh interpreter (import, then
connect + first get), medians over --cold processes.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time


def percentile(xs, q):
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def timed(get, key, n):
    for _ in range(min(200, n)):  # warm-up: connections, tablet map, caches
        get(key)
    out = []
    for _ in range(n):
        t = time.perf_counter()
        get(key)
        out.append((time.perf_counter() - t) * 1e6)
    return out


COLD = r"""
import sys, time
t0 = time.perf_counter()
import {module}
t1 = time.perf_counter()
{connect}
v = {get}
t2 = time.perf_counter()
assert len(v) == {size}, len(v)
print(f"{{(t1 - t0) * 1e3:.3f}} {{(t2 - t1) * 1e3:.3f}}")
"""


def cold(module, connect, get, size, runs):
    code = COLD.format(module=module, connect=connect, get=get, size=size)
    imports, firsts, walls = [], [], []
    for _ in range(runs):
        t = time.perf_counter()
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
        walls.append((time.perf_counter() - t) * 1e3)
        if r.returncode != 0:
            sys.exit(f"cold start of {module} failed: {r.stderr.strip()}")
        i, f = r.stdout.split()
        imports.append(float(i))
        firsts.append(float(f))
    return statistics.median(imports), statistics.median(firsts), statistics.median(walls)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", required=True, help="cluster directory (faascache cluster up --dir)")
    ap.add_argument("--redis-port", type=int, default=0, help="Redis on 127.0.0.1 (0: no Redis rows)")
    ap.add_argument("--n", type=int, default=3000, help="timed gets per size and client")
    ap.add_argument("--sizes", default="100,16000", help="value sizes in bytes")
    ap.add_argument("--cold", type=int, default=15, help="fresh processes for the cold start")
    ap.add_argument("--gateway", default="", help="`faascache gateway` URL on the same cluster (adds boto3 rows)")
    ap.add_argument("--gateway-key", default="", help="access key:secret the gateway checks signatures with")
    a = ap.parse_args()
    if a.n < 1 or a.cold < 1:
        sys.exit("--n and --cold must be at least 1")
    try:
        sizes = [int(s) for s in a.sizes.split(",")]
    except ValueError:
        sys.exit(f"--sizes: expected comma-separated byte counts, got {a.sizes!r}")

    import faascache

    fc = faascache.Client(dir=a.dir)
    fc.create_table("pybench")
    rc = None
    if a.redis_port:
        import redis

        rc = redis.Redis(host="127.0.0.1", port=a.redis_port)
    print(f"# Python {sys.version.split()[0]}, faascache {faascache.__version__}"
          + (f", redis-py {__import__('redis').__version__}" if rc else "")
          + f"; {a.n} gets per row, one client, one request at a time")
    print("| value | FaaSCache (Python) p50 / p99 µs | Redis (redis-py) p50 / p99 µs | ratio p50 |")
    print("|---:|---:|---:|---:|")
    for size in sizes:
        key = f"k{size}"
        value = os.urandom(size)
        fc.put("pybench", key, value)
        assert fc.get("pybench", key) == value
        f = timed(lambda k: fc.get("pybench", k), key, a.n)
        row = f"| {size} B | {percentile(f, 0.5):.1f} / {percentile(f, 0.99):.1f} |"
        if rc is not None:
            rc.set(key, value)
            assert rc.get(key) == value
            r = timed(rc.get, key, a.n)
            row += f" {percentile(r, 0.5):.1f} / {percentile(r, 0.99):.1f} | {percentile(f, 0.5) / percentile(r, 0.5):.2f} |"
        else:
            row += " — | — |"
        print(row)

    size = sizes[0]
    print()
    print(f"# cold start: a fresh `{os.path.basename(sys.executable)} -c` per run, medians of {a.cold}")
    print("| client | import ms | connect + first get ms | process wall ms |")
    print("|---|---:|---:|---:|")
    rows = [("faascache", "faascache",
             f"c = faascache.Client(dir={a.dir!r})", f"c.get('pybench', 'k{size}')")]
    if rc is not None:
        rows.append(("redis-py", "redis",
                     f"c = redis.Redis(host='127.0.0.1', port={a.redis_port})", f"c.get('k{size}')"))
    if a.gateway:
        key, secret = a.gateway_key.split(":", 1)
        rows.append(("boto3 via faascache gateway", "boto3",
                     f"c = boto3.client('s3', endpoint_url={a.gateway!r}, aws_access_key_id={key!r}, "
                     f"aws_secret_access_key={secret!r}, region_name='us-east-1')",
                     f"c.get_object(Bucket='pybench', Key='k{size}')['Body'].read()"))
    for name, module, connect, get in rows:
        i, f, w = cold(module, connect, get, size, a.cold)
        print(f"| {name} | {i:.2f} | {f:.2f} | {w:.1f} |")


if __name__ == "__main__":
    main()
