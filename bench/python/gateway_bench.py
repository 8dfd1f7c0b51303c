#!/usr/bin/env python3
"""GET/PUT latency through `faascache gateway` beside OpenStack Swift, with real Python clients.

    bench/python/gateway_bench.py clients --gateway URL --swift URL --gw-bucket B --swift-bucket B
                                          [--sizes 1000,16000,128000,1000000,8000000]
                                          [--iters-scale 1.0] [--json OUT.json]
    bench/python/gateway_bench.py presign --endpoint URL --bucket B --key K --size N

Credentials come from ST_USER / ST_KEY (the Swift user and key, which are also the S3 access
key and secret for Swift's s3api and the gateway); nothing is read from AWS_*.

`clients` measures, per object size, one request at a time:
  gw-s3        boto3 -> the gateway's S3 API (GET: a hit, the object written and read once
               before timing)
  swift-s3     boto3 -> Swift's s3api
  gw-swift     python-swiftclient -> the gateway's Swift API (GET: a hit)
  swift        python-swiftclient -> Swift's native API
GETs of one size are timed first, then PUTs (each PUT a new key). Within a phase the targets are
interleaved request by request (the first target rotates each round), so a drift in the
machine's load reaches all of them alike. After a size's PUTs the gateway bucket is listed,
which makes the gateway flush its write-back queue to Swift, so the next size does not run
beside those uploads. One client object per target, made once (connections are reused).
Iterations per size: 200 up to 128 KB, 50 up to 1 MB, 20 above, times --iters-scale.
p99 is the nearest-rank percentile: with 20 requests it is the largest.

Prints a Markdown table (p50 / p99 in ms, the client's own CPU per request, MB/s at the p50)
and the ratios gateway hit ÷ Swift GET per size; --json writes the raw samples' summary.

`presign` writes an object through boto3 (so it exists and, on the gateway, is cached), reads
it once, and prints a presigned GET URL valid for an hour (for wrk).
"""

import argparse
import json
import math
import os
import statistics
import sys
import time

import boto3
import swiftclient
from botocore.config import Config

REGION = "us-east-1"


def creds():
    try:
        return os.environ["ST_USER"], os.environ["ST_KEY"]
    except KeyError as e:
        sys.exit(f"{e.args[0]} is not set (eval \"$(scripts/swift.sh env)\")")


def s3_client(endpoint):
    user, key = creds()
    # As the gateway's client tests configure boto3: path style, SigV4, no retries.
    cfg = Config(s3={"addressing_style": "path"}, signature_version="s3v4",
                 retries={"max_attempts": 1}, connect_timeout=10, read_timeout=120,
                 max_pool_connections=1)
    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=user,
                        aws_secret_access_key=key, region_name=REGION, config=cfg)


def swift_conn(endpoint):
    user, key = creds()
    return swiftclient.Connection(endpoint.rstrip("/") + "/auth/v1.0", user, key,
                                  retries=0, timeout=120)


class S3Target:
    def __init__(self, name, endpoint, bucket):
        self.name, self.bucket, self.c = name, bucket, s3_client(endpoint)

    def get(self, key):
        return self.c.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def put(self, key, body):
        self.c.put_object(Bucket=self.bucket, Key=key, Body=body)

    def settle(self):
        # A listing makes the gateway flush the table's write-back queue first (docs/faas.md).
        self.c.list_objects_v2(Bucket=self.bucket, MaxKeys=1)


class SwiftTarget:
    def __init__(self, name, endpoint, container):
        self.name, self.bucket, self.c = name, container, swift_conn(endpoint)

    def get(self, key):
        return self.c.get_object(self.bucket, key)[1]

    def put(self, key, body):
        self.c.put_object(self.bucket, key, contents=body)

    def settle(self):
        self.c.get_container(self.bucket, limit=1)


def pct(xs, q):
    """Nearest-rank percentile."""
    s = sorted(xs)
    return s[min(len(s), max(1, math.ceil(q * len(s)))) - 1]


def iters_for(size, scale):
    base = 200 if size <= 128_000 else 50 if size <= 1_000_000 else 20
    return max(5, int(base * scale))


def timed(fn):
    c0, t0 = time.process_time(), time.perf_counter()
    r = fn()
    return (time.perf_counter() - t0) * 1e3, (time.process_time() - c0) * 1e3, r


def frac(x):
    """A ratio as 1/N below 1, as N× above."""
    return f"1/{1 / x:.1f}" if x < 1 else f"{x:.2f}×"


def human(size):
    for unit, n in (("MB", 1_000_000), ("KB", 1_000)):
        if size >= n and size % n == 0:
            return f"{size // n} {unit}"
    return f"{size} B"


def run_clients(a):
    targets = [S3Target("gw-s3", a.gateway, a.gw_bucket),
               S3Target("swift-s3", a.swift, a.swift_bucket),
               SwiftTarget("gw-swift", a.gateway, a.gw_bucket),
               SwiftTarget("swift", a.swift, a.swift_bucket)]
    results = {}
    run = os.urandom(4).hex()
    for size in a.sizes:
        n = iters_for(size, a.iters_scale)
        body = os.urandom(size)
        key = f"bench-{run}-get-{size}"
        # The object each target reads: written once, read once (the gateway's copy is then
        # cached: write-back PUTs of ≤ 1 MiB are cached on write, larger ones on that read).
        for t in targets:
            t.put(key, body)
            if t.get(key) != body:
                sys.exit(f"{t.name}: {human(size)} object read back wrong")
        for phase in ("GET", "PUT"):
            samples = {t.name: ([], []) for t in targets}
            for t in targets:  # warm-up, not timed
                for _ in range(3):
                    t.get(key) if phase == "GET" else t.put(f"bench-{run}-warm-{size}", body)
            for i in range(n):
                for j in range(len(targets)):
                    t = targets[(i + j) % len(targets)]
                    if phase == "GET":
                        ms, cpu, got = timed(lambda: t.get(key))
                        if len(got) != size:
                            sys.exit(f"{t.name}: GET of {human(size)} returned {len(got)} bytes")
                    else:
                        ms, cpu, _ = timed(lambda: t.put(f"bench-{run}-put-{size}-{i}", body))
                    samples[t.name][0].append(ms)
                    samples[t.name][1].append(cpu)
            for name, (ms, cpu) in samples.items():
                results[(name, size, phase)] = {
                    "n": len(ms), "p50_ms": pct(ms, 0.50), "p99_ms": pct(ms, 0.99),
                    "mean_ms": statistics.fmean(ms), "client_cpu_ms": statistics.median(cpu)}
            if phase == "PUT":
                for t in targets:
                    t.settle()
        print(f"# {human(size)}: {n} requests per target and operation", file=sys.stderr)
    return targets, results


def report(a, targets, results):
    names = {"gw-s3": "gateway, S3 (boto3)", "swift-s3": "Swift s3api (boto3)",
             "gw-swift": "gateway, Swift API (swiftclient)", "swift": "Swift native (swiftclient)"}
    print(f"# boto3 {boto3.__version__}, python-swiftclient {swiftclient.__version__ if hasattr(swiftclient, '__version__') else '?'}, "
          f"Python {sys.version.split()[0]}; one client, one request at a time; ms")
    print("| size | target | n | GET p50 | GET p99 | GET client CPU | GET MB/s at p50 | PUT p50 | PUT p99 | PUT client CPU |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for size in a.sizes:
        for t in targets:
            g, p = results[(t.name, size, "GET")], results[(t.name, size, "PUT")]
            mbps = size / 1e6 / (g["p50_ms"] / 1e3)
            print(f"| {human(size)} | {names[t.name]} | {g['n']} | {g['p50_ms']:.3f} | {g['p99_ms']:.3f} | "
                  f"{g['client_cpu_ms']:.3f} | {mbps:.1f} | {p['p50_ms']:.3f} | {p['p99_ms']:.3f} | "
                  f"{p['client_cpu_ms']:.3f} |")
    print()
    print("# gateway hit ÷ Swift GET, p50 (target: ≤ 1/10 through boto3 at ≤ 1 MB)")
    print("| size | boto3: gateway ÷ Swift s3api | verdict | swiftclient: gateway ÷ Swift native | PUT, boto3: gateway ÷ Swift s3api |")
    print("|---|---:|---|---:|---:|")
    for size in a.sizes:
        r = {n: results[(n, size, "GET")]["p50_ms"] for n in ("gw-s3", "swift-s3", "gw-swift", "swift")}
        pr = results[("gw-s3", size, "PUT")]["p50_ms"] / results[("swift-s3", size, "PUT")]["p50_ms"]
        ratio = r["gw-s3"] / r["swift-s3"]
        verdict = ("met" if ratio <= 0.1 else "NOT met") if size <= 1_000_000 else "(no target)"
        print(f"| {human(size)} | {frac(ratio)} | {verdict} | {frac(r['gw-swift'] / r['swift'])} | {frac(pr)} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump([{"target": k[0], "size": k[1], "op": k[2], **v} for k, v in results.items()], f, indent=1)


def run_presign(a):
    c = s3_client(a.endpoint)
    body = os.urandom(a.size)
    c.put_object(Bucket=a.bucket, Key=a.key, Body=body)
    if c.get_object(Bucket=a.bucket, Key=a.key)["Body"].read() != body:
        sys.exit(f"{a.endpoint}: {a.key} read back wrong")
    print(c.generate_presigned_url("get_object", Params={"Bucket": a.bucket, "Key": a.key},
                                   ExpiresIn=3600))


def sizes_arg(s):
    try:
        v = [int(x) for x in s.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated byte counts, got {s!r}")
    if not v or min(v) < 1:
        raise argparse.ArgumentTypeError("sizes must be at least 1 byte")
    return v


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("clients", help="boto3 and swiftclient GET/PUT latency, gateway vs Swift")
    c.add_argument("--gateway", required=True, help="gateway URL (S3 at the root, Swift at /auth/v1.0)")
    c.add_argument("--swift", required=True, help="Swift proxy URL (s3api at the root, /auth/v1.0)")
    c.add_argument("--gw-bucket", required=True, help="bucket/container read through the gateway")
    c.add_argument("--swift-bucket", required=True, help="container read from Swift directly")
    c.add_argument("--sizes", type=sizes_arg, default=sizes_arg("1000,16000,128000,1000000,8000000"))
    c.add_argument("--iters-scale", type=float, default=1.0, help="multiply the iterations per size")
    c.add_argument("--json", help="also write the summaries here")
    p = sub.add_parser("presign", help="write an object, read it once, print a presigned GET URL")
    p.add_argument("--endpoint", required=True)
    p.add_argument("--bucket", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--size", type=int, required=True)
    a = ap.parse_args()
    if a.cmd == "clients":
        if a.iters_scale <= 0:
            sys.exit("--iters-scale must be positive")
        report(a, *run_clients(a))
    else:
        run_presign(a)


if __name__ == "__main__":
    main()
