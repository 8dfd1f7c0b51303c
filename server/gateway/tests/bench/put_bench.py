"""PUT of large objects with boto3: through `faascache gateway` vs Swift's s3api directly, and
the gateway's peak RSS during one large PUT (issue 17, docs/benchmarks.md §12).

    put_bench.py --gateway URL --swift URL --bucket B --gateway-pid PID [--sizes 8000000,50000000]
                 [--iters 10] [--rss-size 200000000]

Credentials: ST_USER / ST_KEY (the same Swift account both ways; the gateway's S3 keys are its
store's). One client, sequential PUTs of the same random bytes; single PUTs (no multipart, as
`put_object` sends them). Prints a Markdown table: p50/mean seconds per PUT and MB/s, gateway ÷
Swift; then the RSS of PID sampled every 10 ms during a PUT of --rss-size bytes, against its
idle RSS just before.
"""
import argparse
import os
import statistics
import threading
import time

import boto3
from botocore.config import Config


def client(url):
    return boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id=os.environ["ST_USER"], aws_secret_access_key=os.environ["ST_KEY"],
                        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
                                      signature_version="s3v4", read_timeout=300))


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def timed_puts(s3, bucket, key, data, iters):
    out = []
    s3.put_object(Bucket=bucket, Key=key, Body=data)  # warm-up
    for _ in range(iters):
        t0 = time.perf_counter()
        s3.put_object(Bucket=bucket, Key=key, Body=data)
        out.append(time.perf_counter() - t0)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gateway", required=True)
    ap.add_argument("--swift", required=True)
    ap.add_argument("--bucket", required=True)
    ap.add_argument("--gateway-pid", type=int, required=True)
    ap.add_argument("--sizes", default="8000000,50000000")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--rss-size", type=int, default=200_000_000)
    a = ap.parse_args()
    gw, sw = client(a.gateway), client(a.swift)
    print("| size | gateway p50 s | gateway mean s | gateway MB/s | Swift s3api p50 s | Swift mean s | Swift MB/s | gateway ÷ Swift (p50) |")
    print("|---|---|---|---|---|---|---|---|")
    for size in (int(x) for x in a.sizes.split(",")):
        data = os.urandom(size)
        # Interleaved runs: the same machine load on both.
        g, s = [], []
        for _ in range(2):
            g += timed_puts(gw, a.bucket, f"bench/{size}", data, a.iters // 2)
            s += timed_puts(sw, a.bucket, f"bench-direct/{size}", data, a.iters // 2)
        gp, sp = statistics.median(g), statistics.median(s)
        gm, sm = statistics.mean(g), statistics.mean(s)
        print(f"| {size / 1e6:g} MB | {gp:.3f} | {gm:.3f} | {size / 1e6 / gp:.0f} | {sp:.3f} | {sm:.3f} | "
              f"{size / 1e6 / sp:.0f} | {gp / sp:.2f}× |")
    data = os.urandom(a.rss_size)
    time.sleep(1)
    idle = rss_kib(a.gateway_pid)
    peak, done = [idle], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_kib(a.gateway_pid))
            time.sleep(0.01)

    t = threading.Thread(target=sample)
    t.start()
    t0 = time.perf_counter()
    gw.put_object(Bucket=a.bucket, Key="bench/rss", Body=data)
    took = time.perf_counter() - t0
    done.set()
    t.join()
    print()
    print(f"RSS of the gateway (pid {a.gateway_pid}) during a {a.rss_size / 1e6:g} MB PUT ({took:.2f} s): "
          f"idle {idle / 1024:.1f} MiB, peak {peak[0] / 1024:.1f} MiB, peak - idle {(peak[0] - idle) / 1024:.1f} MiB")


if __name__ == "__main__":
    main()
