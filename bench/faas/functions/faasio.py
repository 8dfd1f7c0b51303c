"""Object-store I/O and E/T/L timing shared by the FaaS functions (the contract's `faasio`).

Why one module: a function's code must be the same for every backend the evaluation compares
(issue 20) — only `args["store"]` differs — and its Extract / Transform / Load times must be
measured the same way everywhere, inside the function, with `time.perf_counter()`. The sandbox
runtime (`bench/faas/runtime/actionproxy.py`) puts this folder on `sys.path`, as an OpenWhisk
runtime image ships its packages.

Store kinds (`args["store"]["kind"]`):

* `s3` — boto3 against `endpoint` (Swift's s3api, the FaaSCache gateway or moto), SigV4,
  path-style addressing, checksums only when required (Swift's s3api predates the newer ones).
* `swift` — python-swiftclient with tempauth v1 (`auth_url`, `user`, `key`): the native API.
* `faascache` — the FaaSCache Python client straight to the cluster (`coordinator` locator);
  a bucket is a backed table of that name, created by the driver.
* `redis+s3` — cache-aside, OFC's baseline: GET from Redis (`redis`: "host:port"), on a miss
  from S3 and then SET into Redis; PUT writes S3, then SETs Redis. Redis keys are `bucket/key`.

Connections are made once per process and kept (a warm container reuses them), keyed by the
store's whole description, so a container that is handed another store gets another one. Making
the client object (boto3 loads its service model, the FaaSCache client connects) is timed apart
as `connect_ms`, non-zero only on a container's first invocation against a store; the network
connection and authentication that the libraries make lazily on first use fall in that
invocation's E (or L), as on a real platform. `cold` marks a process's first invocation.

Each function file keeps its work in a pure `process(...)` and calls `run_single` (or the
`Timings` helpers) from `main(args)`. `main` also keeps the local mode `record_memory.py` uses
(`input_path` / `output_path`, the parameters at the top level of `args`).
"""

import hashlib
import json
import time

_STORES = {}  # json of args["store"] -> Store: one per process, reused by warm invocations
_RUNS = {"n": 0}  # invocations in this process (0 before the first: the cold one)


class Store:
    """A bucket/key object store: `get` returns the whole body, `put` writes one."""

    kind = "?"

    def get(self, bucket, key):
        raise NotImplementedError

    def put(self, bucket, key, data, content_type=None):
        raise NotImplementedError

    def stats(self):
        """Counters worth reporting per invocation (cache-aside hits and misses)."""
        return {}


class S3Store(Store):
    kind = "s3"

    def __init__(self, cfg):
        import boto3
        from botocore.config import Config

        self.client = boto3.session.Session().client(
            "s3",
            endpoint_url=cfg["endpoint"],
            aws_access_key_id=cfg.get("access_key", "test"),
            aws_secret_access_key=cfg.get("secret_key", "test"),
            region_name=cfg.get("region", "us-east-1"),
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": "path"},
                retries={"max_attempts": 3, "mode": "standard"},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                connect_timeout=10,
                read_timeout=60,
            ),
        )

    def get(self, bucket, key):
        return self.client.get_object(Bucket=bucket, Key=key)["Body"].read()

    def put(self, bucket, key, data, content_type=None):
        extra = {"ContentType": content_type} if content_type else {}
        self.client.put_object(Bucket=bucket, Key=key, Body=data, **extra)


class SwiftStore(Store):
    kind = "swift"

    def __init__(self, cfg):
        from swiftclient.client import Connection

        self.conn = Connection(authurl=cfg["auth_url"], user=cfg["user"], key=cfg["key"],
                               auth_version="1", retries=3, timeout=60)

    def get(self, bucket, key):
        _headers, body = self.conn.get_object(bucket, key)
        return body

    def put(self, bucket, key, data, content_type=None):
        self.conn.put_object(bucket, key, contents=data, content_type=content_type)


class FaasCacheStore(Store):
    kind = "faascache"

    def __init__(self, cfg):
        try:
            import faascache
        except ImportError as e:
            raise RuntimeError("store kind 'faascache' needs the FaaSCache Python client "
                               "(scripts/faas-functions.sh install with a built wheel)") from e
        self.client = faascache.Client(cfg["coordinator"], timeout=float(cfg.get("timeout", 30.0)))

    def get(self, bucket, key):
        return self.client.get(bucket, key)

    def put(self, bucket, key, data, content_type=None):
        self.client.put(bucket, key, data)


class RedisS3Store(Store):
    kind = "redis+s3"

    def __init__(self, cfg):
        import redis

        host, _, port = cfg["redis"].rpartition(":")
        self.redis = redis.Redis(host=host or "127.0.0.1", port=int(port), socket_timeout=30)
        self.s3 = S3Store(cfg)
        self.hits = self.misses = 0

    def get(self, bucket, key):
        name = f"{bucket}/{key}"
        data = self.redis.get(name)
        if data is not None:
            self.hits += 1
            return data
        self.misses += 1
        data = self.s3.get(bucket, key)
        self.redis.set(name, data)
        return data

    def put(self, bucket, key, data, content_type=None):
        self.s3.put(bucket, key, data, content_type)
        self.redis.set(f"{bucket}/{key}", data)

    def stats(self):
        return {"cache_hits": self.hits, "cache_misses": self.misses}


KINDS = {"s3": S3Store, "swift": SwiftStore, "faascache": FaasCacheStore, "redis+s3": RedisS3Store}


def store(cfg, timings=None):
    """The process's Store for the description `cfg` (made on first use, then reused); the time
    to make it is added to `timings.connect_ms` when given."""
    if not isinstance(cfg, dict):
        raise ValueError("'store' must be an object with a 'kind'")
    ident = json.dumps(cfg, sort_keys=True)
    st = _STORES.get(ident)
    if st is None:
        kind = cfg.get("kind")
        if kind not in KINDS:
            raise ValueError(f"unknown store kind {kind!r}; one of {sorted(KINDS)}")
        t0 = time.perf_counter()
        st = _STORES[ident] = KINDS[kind](cfg)
        if timings is not None:
            timings.connect_ms += (time.perf_counter() - t0) * 1000.0
    return st


def sha256(data):
    return hashlib.sha256(data).hexdigest()


class Timings:
    """E/T/L of one invocation: wrap each phase in `with t.extract:` / `t.transform` / `t.load`.

    Phases add up (a reduce reads many inputs: each read is Extract), and the byte counts and
    outputs are recorded beside them, so `result()` is the contract's dict.
    """

    def __init__(self):
        self.ms = {"extract": 0.0, "transform": 0.0, "load": 0.0}
        self.extract, self.transform, self.load = (_Phase(self, p) for p in self.ms)
        self.input_bytes = 0
        self.outputs = []
        self.connect_ms = 0.0
        self.cold = _RUNS["n"] == 0
        _RUNS["n"] += 1

    def get(self, st, bucket, key):
        """Read one input (timed as Extract)."""
        with self.extract:
            data = st.get(bucket, key)
        self.input_bytes += len(data)
        return data

    def put(self, st, bucket, key, data, content_type=None):
        """Write one output (timed as Load) and remember its size and digest."""
        with self.load:
            st.put(bucket, key, data, content_type)
        self.outputs.append({"bucket": bucket, "key": key, "bytes": len(data), "sha256": sha256(data)})

    def result(self, st=None, **extra):
        last = self.outputs[-1] if self.outputs else {"bytes": 0, "sha256": sha256(b"")}
        out = {
            "extract_ms": round(self.ms["extract"], 3),
            "transform_ms": round(self.ms["transform"], 3),
            "load_ms": round(self.ms["load"], 3),
            "input_bytes": self.input_bytes,
            "output_bytes": sum(o["bytes"] for o in self.outputs),
            "output_sha256": last["sha256"],
            "outputs": self.outputs,
            "cold": self.cold,
            "connect_ms": round(self.connect_ms, 3),
        }
        if st is not None:
            out["store_kind"] = st.kind
            out.update(st.stats())
        out.update(extra)
        return out


class _Phase:
    def __init__(self, timings, name):
        self.timings, self.name = timings, name

    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.timings.ms[self.name] += (time.perf_counter() - self.t0) * 1000.0
        return False


def run_single(args, process, content_type=None):
    """A single-stage function's `main`: read `input`, `process(data, params)`, write `output`.

    Store mode when `args` has `store` (the contract); otherwise the local mode of
    `record_memory.py`: `input_path`, optional `output_path`, parameters at the top level.
    `process` returns bytes, or (bytes, extra-fields-for-the-result).
    """
    if "store" not in args:
        return run_local(args, process)
    t = Timings()
    st = store(args["store"], t)
    params = args.get("params") or {}
    data = t.get(st, args["input"]["bucket"], args["input"]["key"])
    with t.transform:
        out = process(data, params)
    out, extra = out if isinstance(out, tuple) else (out, {})
    t.put(st, args["output"]["bucket"], args["output"]["key"], out, content_type)
    return t.result(st, **extra)


def run_local(args, process):
    """The local mode (record_memory.py): files in and out, `{"input_bytes", "output_bytes"}`."""
    with open(args["input_path"], "rb") as f:
        data = f.read()
    out = process(data, args)
    out, extra = out if isinstance(out, tuple) else (out, {})
    if args.get("output_path"):
        with open(args["output_path"], "wb") as f:
            f.write(out)
    return dict(extra, input_bytes=len(data), output_bytes=len(out))
