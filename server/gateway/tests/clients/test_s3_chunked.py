"""Streaming (aws-chunked) and unsigned payloads, signed by hand (hmac/hashlib) and sent with
http.client, against each target:

  1. STREAMING-AWS4-HMAC-SHA256-PAYLOAD: Content-Encoding aws-chunked, x-amz-decoded-content-length,
     a 200 KiB body in 64 KiB chunks, each chunk's signature chained from the seed signature (AWS,
     "Signature Calculations for the Authorization Header: Transferring Payload in Multiple
     Chunks"); read back with boto3 (bytes and MD5). Then the same upload with one chunk
     signature altered: refused, nothing stored.
  2. STREAMING-UNSIGNED-PAYLOAD-TRAILER with an x-amz-checksum-crc32 trailer.
  3. UNSIGNED-PAYLOAD on a plain PUT (boto3 only sends it over HTTPS).

Swift 2.30's s3api refuses every aws-chunked upload (1 and 2) with 501 NotImplemented before it
looks at any signature; S3 and the gateway accept them. Those outcomes are asserted per target
here and recorded in the normalized form of conftest.py's normalization 17; 3 is compared as is.
"""
import base64
import datetime
import hashlib
import hmac
import re
import urllib.parse
import zlib

from conftest import KEY, REGION, USER, compare_records, md5, send_raw

SIZE = 200 * 1024
CHUNK = 64 * 1024
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
# Normalization 17: what an aws-chunked upload is recorded as when the target did what it must
# (Swift 2.30: refused at once, 501 NotImplemented; the gateway: S3's behaviour).
AS_EXPECTED = "<aws-chunked: as expected of the target>"


def payload(seed):
    """SIZE bytes that differ per test (so no ETag is the same by accident)."""
    out, i = b"", 0
    while len(out) < SIZE:
        out += hashlib.sha256(f"{seed}-{i}".encode()).digest() * 64
        i += 1
    return out[:SIZE]


def _hmac(key, msg):
    return hmac.new(key, msg.encode() if isinstance(msg, str) else msg, hashlib.sha256).digest()


class Signer:
    """SigV4 for one request (service s3, REGION, test:tester): the seed signature and the
    chained chunk signatures of the same date and scope."""

    def __init__(self, target):
        self.target = target
        now = datetime.datetime.now(datetime.timezone.utc)
        self.amz_date = now.strftime("%Y%m%dT%H%M%SZ")
        day = now.strftime("%Y%m%d")
        self.scope = f"{day}/{REGION}/s3/aws4_request"
        k = _hmac(("AWS4" + KEY).encode(), day)
        k = _hmac(k, REGION)
        k = _hmac(k, "s3")
        self.key = _hmac(k, "aws4_request")

    def sign(self, string_to_sign):
        return hmac.new(self.key, string_to_sign.encode(), hashlib.sha256).hexdigest()

    def headers(self, method, path, content_sha256, extra):
        """All the request's headers, Authorization included (every header sent is signed);
        also sets self.seed, the request's signature."""
        h = {"host": f"{self.target.host}:{self.target.port}", "x-amz-date": self.amz_date,
             "x-amz-content-sha256": content_sha256}
        h.update({k.lower(): str(v) for k, v in extra.items()})
        names = sorted(h)
        canonical = "\n".join([
            method,
            urllib.parse.quote(path, safe="/~"),
            "",  # no query
            "".join(f"{n}:{' '.join(h[n].split())}\n" for n in names),
            ";".join(names),
            content_sha256,
        ])
        sts = "\n".join(["AWS4-HMAC-SHA256", self.amz_date, self.scope,
                         hashlib.sha256(canonical.encode()).hexdigest()])
        self.seed = self.sign(sts)
        h["authorization"] = (f"AWS4-HMAC-SHA256 Credential={USER}/{self.scope}, "
                              f"SignedHeaders={';'.join(names)}, Signature={self.seed}")
        return h

    def chunk_signature(self, previous, data):
        sts = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", self.amz_date, self.scope, previous,
                         EMPTY_SHA256, hashlib.sha256(data).hexdigest()])
        return self.sign(sts)


def pieces(data):
    return [data[i:i + CHUNK] for i in range(0, len(data), CHUNK)] + [b""]


def signed_chunks(signer, data, tamper=None):
    """The aws-chunked body of `data`: `hex-size;chunk-signature=SIG\\r\\nDATA\\r\\n` per chunk,
    the last one empty; each signature chains from the previous one (the seed first). `tamper`:
    the index of a chunk whose signature is sent altered (the chain itself stays right)."""
    out, prev = [], signer.seed
    for i, p in enumerate(pieces(data)):
        sig = signer.chunk_signature(prev, p)
        sent = sig if i != tamper else ("0" if sig[0] != "0" else "1") + sig[1:]
        out.append(b"%x;chunk-signature=%s\r\n%s\r\n" % (len(p), sent.encode(), p))
        prev = sig
    return b"".join(out)


def unsigned_chunks(data, trailers):
    """The aws-chunked body of an unsigned upload: `hex-size\\r\\nDATA\\r\\n` per chunk, then the
    empty chunk, the trailers and an empty line."""
    body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces(data)[:-1])
    return body + b"0\r\n" + b"".join(f"{k}:{v}\r\n".encode() for k, v in trailers) + b"\r\n"


def crc32_b64(data):
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def send(target, method, path, headers, body):
    return send_raw(target, method, path, headers, body)


def code(body):
    m = re.search(rb"<Code>([^<]*)</Code>", body)
    return m.group(1).decode() if m else None


def outcome(status, headers, body):
    return {"status": status, "code": code(body), "etag": headers.get("etag")}


def stored(target, bucket, key):
    """What boto3 reads back: {"md5", "len"} or the error code."""
    s3 = target.s3()
    try:
        b = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        return {"error": "NoSuchKey"}
    return {"md5": md5(b), "len": len(b)}


def swift_refused(out):
    """Swift 2.30's s3api on any aws-chunked request (s3request.py, _validate_headers)."""
    return out["status"] == 501 and out["code"] == "NotImplemented"


def signed_length(n):
    """The length of the aws-chunked body of n bytes (known before signing: the header is signed)."""
    return sum(len(b"%x;chunk-signature=" % len(p)) + 64 + 2 + len(p) + 2 for p in pieces(b"\0" * n))


def put_signed_chunked(target, bucket, key, data, tamper=None):
    signer = Signer(target)
    h = signer.headers("PUT", f"/{bucket}/{key}", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", {
        "content-encoding": "aws-chunked",
        "x-amz-decoded-content-length": len(data),
        "content-type": "application/octet-stream",
        "content-length": signed_length(len(data)),
    })
    body = signed_chunks(signer, data, tamper)
    assert len(body) == int(h["content-length"])
    return outcome(*send(target, "PUT", f"/{bucket}/{key}", h, body))


def test_streaming_signed_payload(target, bucket, rec):
    data = payload("signed")
    put = put_signed_chunked(target, bucket, "chunked", data)
    got = stored(target, bucket, "chunked")
    if target.is_gateway:
        ok = put == {"status": 200, "code": None, "etag": f'"{md5(data)}"'} and got == {"md5": md5(data), "len": SIZE}
    else:
        ok = swift_refused(put) and got == {"error": "NoSuchKey"}
    rec.add("put 200 KiB in 64 KiB signed chunks", AS_EXPECTED if ok else {"put": put, "get": got})

    # The same upload with the third chunk's signature altered: refused, nothing stored.
    bad = put_signed_chunked(target, bucket, "tampered", payload("tampered"), tamper=2)
    gone = stored(target, bucket, "tampered")
    if target.is_gateway:
        refused_right = bad["status"] == 403 and bad["code"] == "SignatureDoesNotMatch"
    else:
        refused_right = swift_refused(bad)
    rec.add("tampered chunk signature",
            {"refused": AS_EXPECTED if refused_right else bad, "get": gone})

    if target.is_gateway:
        assert put["status"] == 200 and put["etag"] == f'"{md5(data)}"', put
        assert got == {"md5": md5(data), "len": SIZE}, got
        # s3s checks each chunk's signature as the body is read and fails the body stream with
        # AwsChunkedStreamError::SignatureMismatch; the gateway must answer that as S3 does.
        assert refused_right, f"a tampered chunk signature: {bad} (S3 answers 403 SignatureDoesNotMatch)"
    else:
        assert swift_refused(put) and swift_refused(bad), (put, bad)
    assert gone == {"error": "NoSuchKey"}, gone


def test_streaming_unsigned_payload_trailer(target, bucket, rec):
    data = payload("trailer")

    def put(key, checksum):
        body = unsigned_chunks(data, [("x-amz-checksum-crc32", checksum)])
        h = Signer(target).headers("PUT", f"/{bucket}/{key}", "STREAMING-UNSIGNED-PAYLOAD-TRAILER", {
            "content-encoding": "aws-chunked",
            "x-amz-decoded-content-length": len(data),
            "x-amz-trailer": "x-amz-checksum-crc32",
            "content-type": "application/octet-stream",
            "content-length": len(body),
        })
        return outcome(*send(target, "PUT", f"/{bucket}/{key}", h, body))

    out = put("trailer", crc32_b64(data))
    got = stored(target, bucket, "trailer")
    if target.is_gateway:
        ok = out["status"] == 200 and out["etag"] == f'"{md5(data)}"' and got == {"md5": md5(data), "len": SIZE}
    else:
        ok = swift_refused(out) and got == {"error": "NoSuchKey"}
    rec.add("put 200 KiB unsigned chunks + crc32 trailer", AS_EXPECTED if ok else {"put": out, "get": got})
    assert ok, (out, got)
    # A wrong CRC32 in the trailer is not compared: Swift answers it 501 like any aws-chunked
    # upload (S3 answers 400 BadDigest).


def test_unsigned_payload(target, bucket, rec):
    data = payload("unsigned")[:100_000]
    h = Signer(target).headers("PUT", f"/{bucket}/plain", "UNSIGNED-PAYLOAD", {
        "content-type": "application/octet-stream", "content-length": len(data),
        "x-amz-meta-via": "unsigned-payload"})
    out = rec.add("put UNSIGNED-PAYLOAD", outcome(*send(target, "PUT", f"/{bucket}/plain", h, data)))
    assert out["status"] == 200 and out["etag"] == f'"{md5(data)}"', out
    r = rec.s3("get", target.s3().get_object, Bucket=bucket, Key="plain")
    assert r["Body"].read() == data and r["Metadata"] == {"via": "unsigned-payload"}
    # UNSIGNED-PAYLOAD still needs a right request signature.
    h = Signer(target).headers("PUT", f"/{bucket}/plain2", "UNSIGNED-PAYLOAD", {"content-length": len(data)})
    h["authorization"] = h["authorization"][:-1] + ("0" if h["authorization"][-1] != "0" else "1")
    bad = rec.add("put UNSIGNED-PAYLOAD, bad signature", outcome(*send(target, "PUT", f"/{bucket}/plain2", h, data)))
    assert bad["status"] == 403 and bad["code"] == "SignatureDoesNotMatch", bad
    rec.add("get after the bad signature", stored(target, bucket, "plain2"))


def test_zz_same_as_swift():
    compare_records(__name__)
