"""Real-client tests of `faascache gateway` (S3 and Swift APIs), with OpenStack Swift as reference.

Every test that compares runs one body per *target*:

  swift    Swift's own s3api and native API (the reference): SWIFT_S3_URL (default
           http://127.0.0.1:18080, scripts/swift.sh), SWIFT_AUTH_URL (default SWIFT_S3_URL/auth/v1.0)
  gateway  `faascache gateway`: GATEWAY_URL (S3 at the root, Swift at GATEWAY_URL/auth/v1.0 and
           /v1/...). Unset: only the reference runs (the comparisons then just record).

Buckets are made in the real Swift first (the gateway auto-creates the backed table of a bucket
that exists in its store); names are unique per run. The bodies record normalized outcomes
(`Record`); each module's last test, `test_zz_same_as_swift`, asserts the gateway's record of
every scenario equals Swift's. The records are also written to $GATEWAY_RECORDS_DIR (default
target/gateway-records) as swift.json / gateway.json for diffing by hand.

NORMALIZATIONS (the only differences allowed between the two records; see `norm`):
  1. Request ids, x-amz-id-2, x-trans-id, Date and Server headers are never recorded.
  2. Dates (LastModified, Initiated, CreationDate, Last-Modified headers) are replaced by their
     form: "<recent>" (a datetime within an hour of now) or "<datetime>" (any other valid one);
     HTTP-date headers likewise, when they are RFC 7231 IMF-fixdate (else "<bad http-date ...>").
  3. A multipart ETag '"<32 hex>-N"' is recorded as "<multipart-etag>-N" (the algorithm may
     differ); a single-part ETag (the MD5 of the body, quoted) is recorded as is.
  4. UploadId, ContinuationToken and NextContinuationToken values are opaque: "<upload-id>",
     "<token>" (their presence is recorded).
  5. The target's own endpoint URL in a value (CompleteMultipartUpload's Location) becomes
     "<endpoint>".
  6. Error Message texts (free text) and the signature-debugging fields of an error
     (StringToSign*, CanonicalRequest*, SignatureProvided) are not recorded; Code, HTTP status
     and the Key / BucketName / UploadId fields are.
  7. ListBuckets: only which of this run's buckets are listed (the account holds others;
     Swift's CreationDate is a fixed 2009 date).
  8. Bodies are recorded as MD5 and length.
  9. Swift's native API: X-Timestamp, X-Put-Timestamp, X-Trans-Id, X-Openstack-Request-Id,
     Date, Connection, Transfer-Encoding, Vary, X-Storage-Policy are dropped; Last-Modified and
     listing entries' last_modified are normalized as in 2; the `swift` CLI's Meta Mtime (the
     local file's mtime) becomes "<mtime>"; `aws s3 ls` lines lose their dates.
 10. A multi-range GET (206 multipart/byteranges): only the status and the media type without
     its random boundary.
 11. This run's bucket names (PREFIX-RUNID-N, one per test and target) become "<bucket>".
 12. DeleteObjects' Deleted and Errors lists are compared sorted (Swift 2.30 answers them in
     an order of its own, not the request's).
 14. The ETag of an object completed from a multipart upload is recorded as "<completed-etag>"
     (Record.alias). CompleteMultipartUpload itself answers S3's MD5-of-part-MD5s-N on both
     targets (asserted). Afterwards HEAD, GET and listings give the stored object's ETag: Swift's
     s3api keeps S3's form (the object is its SLO); the gateway gives its store's, and with the
     Swift native API behind it (as here) that is the MD5 of the whole object (the gateway
     streams the parts into one plain Swift object); with an S3 store it is the store's own
     multipart ETag, equal to the completion's (docs/faas.md).
 15. A GET with two ranges: Swift answers 206 multipart/byteranges, the gateway 400
     InvalidArgument (S3 itself does not serve several ranges in one GET); recorded as
     "not 5xx" only.
 16. ListParts of a completed upload: Swift still lists its parts, S3 and the gateway answer
     NoSuchUpload; recorded as "not 5xx" only.
 13. A user the store knows but who has no rights on the account (test:reader) is recorded by
     HTTP status only: Swift answers AccessDenied; the gateway has one identity (the store
     credentials it is given) and answers SignatureDoesNotMatch, also 403, for any other key;
     through the Swift API it refuses such a user at login (401) where Swift refuses the
     request (403): recorded as "refused".
 17. Streaming (aws-chunked) uploads (test_s3_chunked.py: STREAMING-AWS4-HMAC-SHA256-PAYLOAD
     with chained chunk signatures, STREAMING-UNSIGNED-PAYLOAD-TRAILER with a CRC32 trailer):
     Swift 2.30's s3api refuses any request with Content-Encoding aws-chunked, that
     x-amz-content-sha256 or an x-amz-decoded-content-length header at once, 501 NotImplemented
     ("Transfering payloads in multiple chunks using aws-chunked is not supported.", checked
     before any signature, so a tampered chunk signature gets it too), and stores nothing; S3
     and the gateway accept them. The outcome each target must give is asserted (Swift: 501
     NotImplemented; the gateway: 200 with the MD5 of the decoded bytes as ETag and the same
     bytes read back by boto3, a tampered chunk signature 403 SignatureDoesNotMatch) and
     recorded as "<aws-chunked: as expected of the target>" when it holds, as is otherwise;
     what a GET finds after a refused upload is recorded as is. UNSIGNED-PAYLOAD is compared
     without normalization.
Client-side settings (same for both targets): path-style addressing, region us-east-1, SigV4,
no retries. DeleteObjects gets a Content-MD5 header added (botocore >= 1.36 only sends a CRC32
checksum, which Swift 2.30's s3api refuses: 400 InvalidRequest "Missing required header for
this request: Content-MD5"); test_s3_boto3.py also checks the plain modern request.
"""
import base64
import datetime
import email.utils
import hashlib
import http.client
import io
import json
import os
import re
import subprocess
import sys
import time
import uuid

import boto3
import pytest
import swiftclient
from botocore.config import Config
from botocore.exceptions import ClientError

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "..", "scripts", "pytest"))
import no_skip_in_ci  # noqa: E402

SWIFT_S3_URL = os.environ.get("SWIFT_S3_URL", "http://127.0.0.1:18080").rstrip("/")
SWIFT_AUTH_URL = os.environ.get("SWIFT_AUTH_URL", SWIFT_S3_URL + "/auth/v1.0")
GATEWAY_URL = (os.environ.get("GATEWAY_URL") or "").rstrip("/") or None
FAASCACHE_DIR = os.environ.get("FAASCACHE_DIR")
FAASCACHE_BIN = os.environ.get("FAASCACHE_BIN", "faascache")
USER, KEY = "test:tester", "testing"
READER, READER_KEY = "test:reader", "reading"
REGION = "us-east-1"
RUN = uuid.uuid4().hex[:8]
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", "..", ".."))
RECORDS_DIR = os.environ.get("GATEWAY_RECORDS_DIR", os.path.join(ROOT, "target", "gateway-records"))


class Target:
    def __init__(self, name, s3_url, auth_url):
        self.name, self.s3_url, self.auth_url = name, s3_url, auth_url
        self.host, self.port = re.match(r"https?://([^:/]+):?(\d*)", s3_url).groups()
        self.port = int(self.port or 80)

    @property
    def is_gateway(self):
        return self.name == "gateway"

    def s3(self, access=USER, secret=KEY, **config):
        cfg = dict(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
                   signature_version="s3v4", connect_timeout=10, read_timeout=60)
        cfg.update(config)
        c = boto3.client("s3", endpoint_url=self.s3_url, aws_access_key_id=access,
                         aws_secret_access_key=secret, region_name=REGION, config=Config(**cfg))
        c.meta.events.register("before-sign.s3.DeleteObjects", _content_md5)
        return c

    def swift(self, user=USER, key=KEY):
        return swiftclient.Connection(self.auth_url, user, key, retries=0, timeout=60)

    def __repr__(self):
        return self.name


def _content_md5(request, **_):
    body = request.body or b""
    if isinstance(body, str):
        body = body.encode()
    if "Content-MD5" not in request.headers:
        request.headers["Content-MD5"] = base64.b64encode(hashlib.md5(body).digest()).decode()


SWIFT = Target("swift", SWIFT_S3_URL, SWIFT_AUTH_URL)
GATEWAY = Target("gateway", GATEWAY_URL, GATEWAY_URL + "/auth/v1.0") if GATEWAY_URL else None
TARGETS = [SWIFT] + ([GATEWAY] if GATEWAY else [])


def pytest_configure(config):
    config.addinivalue_line("markers", "only_targets(*names): run on these targets only")
    # Under CI=true nothing may be skipped: a skipped test fails the run (the shared plugin).
    config.pluginmanager.register(no_skip_in_ci.NoSkipInCi(), "no-skip-in-ci")


def pytest_generate_tests(metafunc):
    if "target" not in metafunc.fixturenames:
        return
    m = metafunc.definition.get_closest_marker("only_targets")
    names = m.args if m else ("swift", "gateway")
    params = []
    for n in names:
        t = {"swift": SWIFT, "gateway": GATEWAY}[n]
        if t is None:
            params.append(pytest.param(None, id=n, marks=pytest.mark.skip(reason="GATEWAY_URL unset")))
        else:
            params.append(pytest.param(t, id=n))
    metafunc.parametrize("target", params)


def admin():
    """The real Swift (the gateway's backing store), whatever the target."""
    return SWIFT.swift()


_seq = [0]


def unique(prefix="gwt"):
    _seq[0] += 1
    return f"{prefix}-{RUN}-{_seq[0]}"


def flush(bucket, key=None):
    """Gateway target: wait until the bucket's table is written back to Swift."""
    args = [FAASCACHE_BIN, "flush", bucket] + ([key] if key else []) + ["--timeout", "30s"]
    if FAASCACHE_DIR:
        args += ["--dir", FAASCACHE_DIR]
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


def _drop(target, name):
    if target is not None and target.is_gateway:
        try:
            s3 = target.s3()
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
                for o in page.get("Contents", []):
                    s3.delete_object(Bucket=name, Key=o["Key"])
            flush(name)
        except Exception:
            pass
    try:
        c = admin()
        for o in c.get_container(name, full_listing=True)[1]:
            try:
                c.delete_object(name, o["name"])
            except Exception:
                pass
        c.delete_container(name)
    except Exception:
        pass


@pytest.fixture
def bucket(request):
    """A new container in the real Swift (so the gateway's backed table can be auto-created)."""
    target = request.getfixturevalue("target") if "target" in request.fixturenames else None
    name = unique()
    admin().put_container(name)
    yield name
    _drop(target, name)


# ---------------------------------------------------------------- records and normalization

RECORDS = {}  # {target name: {scenario: [[label, outcome], ...]}}


class Record:
    def __init__(self, target, scenario):
        self.target = target
        self.steps = RECORDS.setdefault(target.name, {}).setdefault(scenario, [])
        del self.steps[:]

    def alias(self, value, name):
        """Record `value` (and its normalized form) as `name` from now on (normalization 14)."""
        self.aliases = getattr(self, "aliases", {})
        self.aliases[value] = name
        self.aliases[norm_etag(value)] = name

    def add(self, label, outcome):
        self.steps.append([label, scrub(self._aliased(outcome))])
        return outcome

    def _aliased(self, v):
        a = getattr(self, "aliases", {})
        if isinstance(v, dict):
            return {k: self._aliased(x) for k, x in v.items()}
        if isinstance(v, list):
            return [self._aliased(x) for x in v]
        return a.get(v, v) if isinstance(v, str) else v

    def s3(self, label, fn, **kwargs):
        """Call a boto3 operation, record its normalized outcome, return (response or None)."""
        try:
            r = fn(**kwargs)
        except ClientError as e:
            self.add(label, norm_error(e.response, self.target))
            return None
        if hasattr(r.get("Body"), "read"):
            r["Body"] = r["Body"].read()
        self.add(label, norm(r, self.target))
        if isinstance(r.get("Body"), bytes):
            r["Body"] = io.BytesIO(r["Body"])  # still readable by the test
        return r


@pytest.fixture
def rec(request):
    target = request.getfixturevalue("target")
    scenario = f"{request.module.__name__}::{request.function.__name__}"
    return Record(target, scenario)


def scrub(v):
    """This run's bucket names (unique per test and target) become "<bucket>"."""
    if isinstance(v, dict):
        return {scrub(k): scrub(x) for k, x in v.items()}
    if isinstance(v, list):
        return [scrub(x) for x in v]
    if isinstance(v, str):
        return re.sub(rf"\b[a-z]+-{RUN}-\d+\b", "<bucket>", v)
    return v


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def norm_date(d):
    if d.tzinfo is None:
        d = d.replace(tzinfo=datetime.timezone.utc)
    return "<recent>" if abs((_now() - d).total_seconds()) < 3600 else "<datetime>"


IMF = re.compile(r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d GMT$")


def norm_http_date(v):
    if not IMF.match(v):
        return f"<bad http-date {v!r}>"
    return norm_date(email.utils.parsedate_to_datetime(v))


def norm_etag(v):
    m = re.match(r'^"([0-9a-f]{32})-(\d+)"$', v)
    return f"<multipart-etag>-{m.group(2)}" if m else v


DROP_KEYS = {"ResponseMetadata", "RequestId", "HostId", "Message", "StringToSign", "StringToSignBytes",
             "CanonicalRequest", "CanonicalRequestBytes", "SignatureProvided", "AWSAccessKeyId"}


def norm(v, target, key=None):
    if isinstance(v, dict):
        out = {k: norm(x, target, k) for k, x in v.items() if k not in DROP_KEYS}
        if key is None and "ResponseMetadata" in v:
            out["status"] = v["ResponseMetadata"]["HTTPStatusCode"]
        return out
    if isinstance(v, list):
        out = [norm(x, target, key) for x in v]
        if key in ("Deleted", "Errors"):  # normalization 12
            out.sort(key=lambda x: json.dumps(x, sort_keys=True))
        return out
    if isinstance(v, datetime.datetime):
        return norm_date(v)
    if hasattr(v, "read"):  # StreamingBody
        b = v.read()
        return {"md5": hashlib.md5(b).hexdigest(), "len": len(b)}
    if isinstance(v, bytes):
        return {"md5": hashlib.md5(v).hexdigest(), "len": len(v)}
    if isinstance(v, str):
        if key in ("ETag", "etag"):
            return norm_etag(v)
        if key == "UploadId":
            return "<upload-id>"
        if key in ("ContinuationToken", "NextContinuationToken"):
            return "<token>"
        return v.replace(target.s3_url, "<endpoint>")
    return v


def norm_error(resp, target):
    err = dict(resp.get("Error", {}))
    out = {"status": resp["ResponseMetadata"]["HTTPStatusCode"], "error": err.pop("Code", None)}
    for k, x in err.items():
        if k not in DROP_KEYS:
            out[k] = norm(x, target, k)
    return out


def header_subset(headers, names=("content-type", "content-length", "content-range", "etag")):
    h = {k.lower(): v for k, v in headers.items()}
    out = {n: norm_etag(h[n]) if n == "etag" else h[n] for n in names if n in h}
    out.update({k: v for k, v in h.items() if k.startswith(("x-amz-meta-", "x-object-meta-"))})
    if "last-modified" in h:
        out["last-modified"] = norm_http_date(h["last-modified"])
    return out


def md5(b):
    return hashlib.md5(b).hexdigest()


def compare_records(module):
    """The body of each module's test_zz_same_as_swift."""
    prefix = module + "::"
    ref = {k: v for k, v in RECORDS.get("swift", {}).items() if k.startswith(prefix)}
    if GATEWAY is None:
        print(f"GATEWAY_URL unset: recorded {len(ref)} reference scenario(s) of {module}, nothing to compare")
        return
    got = {k: v for k, v in RECORDS.get("gateway", {}).items() if k.startswith(prefix)}
    problems = []
    for scenario in sorted(set(ref) | set(got)):
        a = ref.get(scenario)
        b = got.get(scenario)
        if a is None or b is None:
            problems.append(f"{scenario}: recorded for {'gateway' if a is None else 'swift'} only")
            continue
        la, lb = dict((s[0], s[1]) for s in a), dict((s[0], s[1]) for s in b)
        for label in [s[0] for s in a] + [s[0] for s in b if s[0] not in la]:
            if la.get(label, "<missing>") != lb.get(label, "<missing>"):
                problems.append(f"{scenario} / {label}:\n    swift:   {json.dumps(la.get(label, '<missing>'), sort_keys=True)}"
                                f"\n    gateway: {json.dumps(lb.get(label, '<missing>'), sort_keys=True)}")
    assert not problems, f"{len(problems)} difference(s) from Swift:\n" + "\n".join(problems)


def pytest_sessionfinish(session, exitstatus):
    try:
        os.makedirs(RECORDS_DIR, exist_ok=True)
        for name, scenarios in RECORDS.items():
            with open(os.path.join(RECORDS_DIR, f"{name}.json"), "w") as f:
                json.dump(scenarios, f, indent=1, sort_keys=True, default=str)
    except OSError as e:
        sys.stderr.write(f"cannot write the records to {RECORDS_DIR}: {e}\n")


def send_raw(target, method, path, headers, body=b"", timeout=60):
    """(status, lower-case headers, body) of one request sent as is (http.client: no URL
    normalization, no retries)."""
    c = http.client.HTTPConnection(target.host, target.port, timeout=timeout)
    try:
        c.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for k, v in headers.items():
            c.putheader(k, v)
        c.endheaders(body)
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()
