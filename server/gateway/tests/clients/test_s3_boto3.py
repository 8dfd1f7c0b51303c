"""boto3 against each target (Swift's s3api, the gateway): the same scenario, normalized outcomes
recorded, and test_zz_same_as_swift asserts the gateway's equal Swift's (conftest.py lists the
normalizations). Each scenario also asserts what must hold on both."""
import datetime
import hashlib
import os

import pytest
import requests
from botocore.exceptions import ClientError

from conftest import GATEWAY, compare_records, header_subset, md5, unique

PAST = datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc)
FUTURE = datetime.datetime(2100, 1, 1, tzinfo=datetime.timezone.utc)
BODY = b"hello world, this is FaaSCache's gateway test object\n" * 3


def test_put_get_head(target, bucket, rec):
    s3 = target.s3()
    r = rec.s3("put", s3.put_object, Bucket=bucket, Key="docs/a.txt", Body=BODY,
               ContentType="text/plain; charset=utf-8", Metadata={"color": "blue", "owner-id": "42"})
    assert r and r["ETag"] == f'"{md5(BODY)}"'
    h = rec.s3("head", s3.head_object, Bucket=bucket, Key="docs/a.txt")
    assert h["ContentLength"] == len(BODY) and h["Metadata"] == {"color": "blue", "owner-id": "42"}
    rec.add("head headers", header_subset(h["ResponseMetadata"]["HTTPHeaders"]))
    g = rec.s3("get", s3.get_object, Bucket=bucket, Key="docs/a.txt")
    rec.add("get headers", header_subset(g["ResponseMetadata"]["HTTPHeaders"]))
    # An empty object, a key with spaces and non-ASCII, an overwrite.
    rec.s3("put empty", s3.put_object, Bucket=bucket, Key="empty", Body=b"")
    rec.s3("get empty", s3.get_object, Bucket=bucket, Key="empty")
    odd = "odd key/with space+plus&amp=é.txt"
    rec.s3("put odd key", s3.put_object, Bucket=bucket, Key=odd, Body=b"odd")
    rec.s3("get odd key", s3.get_object, Bucket=bucket, Key=odd)
    rec.s3("overwrite", s3.put_object, Bucket=bucket, Key="docs/a.txt", Body=b"v2", ContentType="text/x-v2")
    g = rec.s3("get overwritten", s3.get_object, Bucket=bucket, Key="docs/a.txt")
    assert g["Body"].read() == b"v2" if g else False


def test_get_range(target, bucket, rec):
    s3 = target.s3()
    data = bytes(range(256)) * 40
    s3.put_object(Bucket=bucket, Key="r", Body=data)
    for label, rng in [("first 10", "bytes=0-9"), ("middle", "bytes=100-199"), ("suffix", "bytes=-7"),
                       ("open end", "bytes=10200-"), ("past end clipped", "bytes=10000-20000"),
                       ("unsatisfiable", "bytes=20000-")]:
        r = rec.s3(label, s3.get_object, Bucket=bucket, Key="r", Range=rng)
        if r is not None:
            rec.add(label + " headers", header_subset(r["ResponseMetadata"]["HTTPHeaders"],
                                                      ("content-length", "content-range")))
    # Two ranges: Swift answers 206 multipart/byteranges; the boundary (and so the body's MD5) is
    # random, so only the status and the media type without its boundary are recorded.
    try:
        r = s3.get_object(Bucket=bucket, Key="r", Range="bytes=0-1,5-6")
        rec.add("two ranges: not 5xx", r["ResponseMetadata"]["HTTPStatusCode"] < 500)  # normalization 15
    except ClientError as e:
        rec.add("two ranges: not 5xx", e.response["ResponseMetadata"]["HTTPStatusCode"] < 500)
    r = s3.get_object(Bucket=bucket, Key="r", Range="bytes=100-199")
    assert r["Body"].read() == data[100:200] and r["ContentRange"] == f"bytes 100-199/{len(data)}"


def test_conditional_get(target, bucket, rec):
    s3 = target.s3()
    etag = s3.put_object(Bucket=bucket, Key="c", Body=BODY)["ETag"]
    cases = [("if-match ok", dict(IfMatch=etag)), ("if-match bad", dict(IfMatch='"0123456789abcdef0123456789abcdef"')),
             ("if-match star", dict(IfMatch="*")),
             ("if-none-match same", dict(IfNoneMatch=etag)), ("if-none-match other", dict(IfNoneMatch='"00"')),
             ("if-modified-since past", dict(IfModifiedSince=PAST)),
             ("if-modified-since future", dict(IfModifiedSince=FUTURE)),
             ("if-unmodified-since past", dict(IfUnmodifiedSince=PAST)),
             ("if-unmodified-since future", dict(IfUnmodifiedSince=FUTURE)),
             ("if-match ok + if-unmodified-since past", dict(IfMatch=etag, IfUnmodifiedSince=PAST)),
             ("if-none-match other + if-modified-since future", dict(IfNoneMatch='"00"', IfModifiedSince=FUTURE))]
    for label, kw in cases:
        rec.s3("get " + label, s3.get_object, Bucket=bucket, Key="c", **kw)
        rec.s3("head " + label, s3.head_object, Bucket=bucket, Key="c", **kw)
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="c", IfNoneMatch=etag)
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 304
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="c", IfMatch='"00"')
    assert e.value.response["Error"]["Code"] == "PreconditionFailed"


def test_delete_and_delete_objects(target, bucket, rec):
    s3 = target.s3()
    for k in ["d/1", "d/2", "d/3", "keep"]:
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode())
    rec.s3("delete", s3.delete_object, Bucket=bucket, Key="d/1")
    rec.s3("get deleted", s3.get_object, Bucket=bucket, Key="d/1")
    rec.s3("delete missing", s3.delete_object, Bucket=bucket, Key="d/1")
    r = rec.s3("delete objects", s3.delete_objects, Bucket=bucket,
               Delete={"Objects": [{"Key": "d/2"}, {"Key": "d/3"}, {"Key": "never-was"}]})
    assert r and sorted(d["Key"] for d in r["Deleted"]) == ["d/2", "d/3", "never-was"]
    rec.s3("delete objects quiet", s3.delete_objects, Bucket=bucket,
           Delete={"Objects": [{"Key": "x"}], "Quiet": True})
    r = rec.s3("list after", s3.list_objects_v2, Bucket=bucket)
    assert [o["Key"] for o in r["Contents"]] == ["keep"]


def test_delete_objects_modern_client_without_content_md5(target, bucket):
    """botocore >= 1.36 sends DeleteObjects with x-amz-checksum-crc32 and no Content-MD5. Swift
    2.30's s3api refuses it (400 InvalidRequest); AWS accepts it, and so must the gateway (a
    function with a current boto3 must be able to delete). Not part of the Swift comparison."""
    s3 = target.s3()
    s3.meta.events.unregister("before-sign.s3.DeleteObjects", _content_md5_handler(s3))
    s3.put_object(Bucket=bucket, Key="m", Body=b"m")
    if target.is_gateway:
        r = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "m"}]})
        assert [d["Key"] for d in r["Deleted"]] == ["m"]
    else:
        with pytest.raises(ClientError) as e:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "m"}]})
        assert e.value.response["Error"]["Code"] == "InvalidRequest"


def _content_md5_handler(_):
    from conftest import _content_md5
    return _content_md5


def test_copy_object(target, bucket, rec):
    s3 = target.s3()
    s3.put_object(Bucket=bucket, Key="src", Body=BODY, ContentType="text/plain", Metadata={"a": "1"})
    rec.s3("copy", s3.copy_object, Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"})
    rec.s3("head copy", s3.head_object, Bucket=bucket, Key="dst")
    rec.s3("copy replace", s3.copy_object, Bucket=bucket, Key="dst2", CopySource=f"{bucket}/src",
           MetadataDirective="REPLACE", ContentType="application/x-new", Metadata={"b": "2"})
    h = rec.s3("head copy replace", s3.head_object, Bucket=bucket, Key="dst2")
    assert h["Metadata"] == {"b": "2"} and h["ContentType"] == "application/x-new"
    rec.s3("get copy replace", s3.get_object, Bucket=bucket, Key="dst2")
    rec.s3("copy missing source", s3.copy_object, Bucket=bucket, Key="dst3",
           CopySource={"Bucket": bucket, "Key": "nope"})
    other = unique()
    rec.s3("copy to missing bucket", s3.copy_object, Bucket=other, Key="x",
           CopySource={"Bucket": bucket, "Key": "src"})
    rec.s3("copy if-match bad", s3.copy_object, Bucket=bucket, Key="dst4",
           CopySource={"Bucket": bucket, "Key": "src"}, CopySourceIfMatch='"00"')


def test_list_objects_v2(target, bucket, rec):
    s3 = target.s3()
    keys = ["a/1.txt", "a/2.txt", "a/b/3.txt", "b/4.txt", "c.txt", "d.txt", "e%20f.txt", "z/9"]
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode())
    r = rec.s3("all", s3.list_objects_v2, Bucket=bucket)
    assert [o["Key"] for o in r["Contents"]] == sorted(keys)
    rec.s3("prefix", s3.list_objects_v2, Bucket=bucket, Prefix="a/")
    rec.s3("delimiter", s3.list_objects_v2, Bucket=bucket, Delimiter="/")
    rec.s3("prefix+delimiter", s3.list_objects_v2, Bucket=bucket, Prefix="a/", Delimiter="/")
    rec.s3("no match", s3.list_objects_v2, Bucket=bucket, Prefix="nothing/")
    rec.s3("start-after", s3.list_objects_v2, Bucket=bucket, StartAfter="c.txt")
    rec.s3("max-keys 0", s3.list_objects_v2, Bucket=bucket, MaxKeys=0)
    rec.s3("no encoding-type", _plain_list(s3), Bucket=bucket, Prefix="e")
    # Continuation with MaxKeys=2: walk every page.
    seen, token, page = [], None, 0
    while True:
        kw = dict(Bucket=bucket, MaxKeys=2)
        if token:
            kw["ContinuationToken"] = token
        r = rec.s3(f"page {page}", s3.list_objects_v2, **kw)
        seen += [o["Key"] for o in r.get("Contents", [])]
        page += 1
        if not r["IsTruncated"]:
            break
        token = r["NextContinuationToken"]
        assert page < 10
    assert seen == sorted(keys)
    # Delimiter pages: common prefixes count towards MaxKeys.
    seen, token, page = [], None, 0
    while True:
        kw = dict(Bucket=bucket, MaxKeys=2, Delimiter="/")
        if token:
            kw["ContinuationToken"] = token
        r = rec.s3(f"delimiter page {page}", s3.list_objects_v2, **kw)
        seen += [o["Key"] for o in r.get("Contents", [])] + [p["Prefix"] for p in r.get("CommonPrefixes", [])]
        page += 1
        if not r["IsTruncated"]:
            break
        token = r["NextContinuationToken"]
        assert page < 10
    assert sorted(seen) == ["a/", "b/", "c.txt", "d.txt", "e%20f.txt", "z/"]
    # ListObjects (v1) too: older clients and tools use it.
    rec.s3("v1 marker", s3.list_objects, Bucket=bucket, Marker="b/4.txt", MaxKeys=3)


def _plain_list(s3):
    """ListObjectsV2 without boto3's automatic encoding-type=url (keys come back raw)."""
    from botocore.handlers import set_list_objects_encoding_type_url as h
    event = "before-parameter-build.s3.ListObjectsV2"

    def call(**kw):
        s3.meta.events.unregister(event, h)
        try:
            return s3.list_objects_v2(**kw)
        finally:
            s3.meta.events.register(event, h)
    return call


def test_multipart(target, bucket, rec):
    s3 = target.s3()
    # Fixed bytes (the same on both targets, so ETags and MD5s compare).
    import random
    rnd = random.Random(203)
    p1, p2, p3 = rnd.randbytes(5 << 20), rnd.randbytes(5 << 20), b"tail" * 1000
    u = rec.s3("create", s3.create_multipart_upload, Bucket=bucket, Key="mp", ContentType="application/x-mp",
               Metadata={"mp": "yes"})
    uid = u["UploadId"]
    e1 = rec.s3("part 1", s3.upload_part, Bucket=bucket, Key="mp", UploadId=uid, PartNumber=1, Body=p1)["ETag"]
    e3 = rec.s3("part 3", s3.upload_part, Bucket=bucket, Key="mp", UploadId=uid, PartNumber=3, Body=p3)["ETag"]
    e2 = rec.s3("part 2", s3.upload_part, Bucket=bucket, Key="mp", UploadId=uid, PartNumber=2, Body=p2)["ETag"]
    assert e1 == f'"{md5(p1)}"'
    rec.s3("list parts", s3.list_parts, Bucket=bucket, Key="mp", UploadId=uid)
    rec.s3("list parts page", s3.list_parts, Bucket=bucket, Key="mp", UploadId=uid, MaxParts=1, PartNumberMarker=1)
    rec.s3("list uploads", s3.list_multipart_uploads, Bucket=bucket)
    rec.s3("object not visible yet", s3.head_object, Bucket=bucket, Key="mp")
    rec.s3("complete out of order", s3.complete_multipart_upload, Bucket=bucket, Key="mp", UploadId=uid,
           MultipartUpload={"Parts": [{"PartNumber": 2, "ETag": e2}, {"PartNumber": 1, "ETag": e1}]})
    rec.s3("complete wrong etag", s3.complete_multipart_upload, Bucket=bucket, Key="mp", UploadId=uid,
           MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"00000000000000000000000000000000"'}]})
    r = rec.s3("complete", s3.complete_multipart_upload, Bucket=bucket, Key="mp", UploadId=uid,
               MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2},
                                          {"PartNumber": 3, "ETag": e3}]})
    want = hashlib.md5(b"".join(bytes.fromhex(md5(p)) for p in (p1, p2, p3))).hexdigest() + "-3"
    # Both answer S3's multipart ETag: the MD5 of the parts' binary MD5s, then -N.
    rec.add("etag is md5 of part md5s", r["ETag"] == f'"{want}"')
    rec.alias(r["ETag"], "<completed-etag>")
    # Normalization 14: the stored object's ETag (HEAD, GET, listings) is its store's; through
    # the gateway with a Swift (native API) backing, the MD5 of the whole object.
    rec.alias(f'"{md5(p1 + p2 + p3)}"', "<completed-etag>")
    rec.steps[-2][1]["ETag"] = "<completed-etag>"
    h = rec.s3("head", s3.head_object, Bucket=bucket, Key="mp")
    assert h["ContentLength"] == len(p1) + len(p2) + len(p3) and h["Metadata"] == {"mp": "yes"}
    rec.s3("get", s3.get_object, Bucket=bucket, Key="mp")
    rec.s3("range across parts", s3.get_object, Bucket=bucket, Key="mp", Range=f"bytes={(5 << 20) - 5}-{(5 << 20) + 4}")
    # Normalization 16: Swift still lists a completed upload's parts (its segments stay); S3 and the
    # gateway answer NoSuchUpload. Recorded as "not 5xx" only.
    try:
        s3.list_parts(Bucket=bucket, Key="mp", UploadId=uid)
        rec.add("list parts after complete: not 5xx", True)
    except ClientError as e:
        rec.add("list parts after complete: not 5xx", e.response["ResponseMetadata"]["HTTPStatusCode"] < 500)
    rec.s3("list", s3.list_objects_v2, Bucket=bucket)
    # Abort; parts too small; an unknown upload id.
    uid2 = s3.create_multipart_upload(Bucket=bucket, Key="ab")["UploadId"]
    a = s3.upload_part(Bucket=bucket, Key="ab", UploadId=uid2, PartNumber=1, Body=b"x" * 100)["ETag"]
    b = s3.upload_part(Bucket=bucket, Key="ab", UploadId=uid2, PartNumber=2, Body=b"y" * 100)["ETag"]
    rec.s3("complete parts too small", s3.complete_multipart_upload, Bucket=bucket, Key="ab", UploadId=uid2,
           MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": a}, {"PartNumber": 2, "ETag": b}]})
    rec.s3("abort", s3.abort_multipart_upload, Bucket=bucket, Key="ab", UploadId=uid2)
    rec.s3("list parts aborted", s3.list_parts, Bucket=bucket, Key="ab", UploadId=uid2)
    rec.s3("abort again", s3.abort_multipart_upload, Bucket=bucket, Key="ab", UploadId=uid2)
    rec.s3("head aborted", s3.head_object, Bucket=bucket, Key="ab")
    rec.s3("upload part unknown id", s3.upload_part, Bucket=bucket, Key="ab", UploadId="bogus", PartNumber=1, Body=b"z")
    rec.s3("list uploads at end", s3.list_multipart_uploads, Bucket=bucket)
    # One small part alone is a valid upload.
    uid3 = s3.create_multipart_upload(Bucket=bucket, Key="one")["UploadId"]
    a = s3.upload_part(Bucket=bucket, Key="one", UploadId=uid3, PartNumber=1, Body=b"x" * 100)["ETag"]
    r = rec.s3("complete one small part", s3.complete_multipart_upload, Bucket=bucket, Key="one", UploadId=uid3,
               MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": a}]})
    rec.add("one part: etag is md5 of its md5, -1",
            r["ETag"] == f'"{hashlib.md5(bytes.fromhex(md5(b"x" * 100))).hexdigest()}-1"')
    rec.alias(r["ETag"], "<completed-etag>")
    rec.alias(f'"{md5(b"x" * 100)}"', "<completed-etag>")  # normalization 14
    rec.steps[-2][1]["ETag"] = "<completed-etag>"
    rec.s3("get one", s3.get_object, Bucket=bucket, Key="one")


def test_multipart_50mb_upload_file(target, bucket, rec, tmp_path):
    """boto3's managed transfer: 50 MiB in 8 MiB parts (7, four at a time), then a download."""
    from boto3.s3.transfer import TransferConfig
    s3 = target.s3()
    path = tmp_path / "big.bin"
    import random
    data = random.Random(257).randbytes(50 << 20)  # 50 MiB: 7 parts of 8 MiB; the same on both targets
    path.write_bytes(data)
    cfg = TransferConfig(multipart_threshold=8 << 20, multipart_chunksize=8 << 20, max_concurrency=4)
    s3.upload_file(str(path), bucket, "big/50mb.bin", Config=cfg)
    h = s3.head_object(Bucket=bucket, Key="big/50mb.bin")
    # Normalization 14: S3's multipart ETag, or (the gateway) the MD5 of the whole object.
    assert h["ContentLength"] == len(data) and (h["ETag"].endswith('-7"') or h["ETag"] == f'"{md5(data)}"')
    rec.alias(h["ETag"], "<completed-etag>")
    rec.s3("head", s3.head_object, Bucket=bucket, Key="big/50mb.bin")
    out = tmp_path / "down.bin"
    s3.download_file(bucket, "big/50mb.bin", str(out), Config=cfg)
    rec.add("downloaded md5", md5(out.read_bytes()) == md5(data))
    assert md5(out.read_bytes()) == md5(data)
    rec.s3("last 1000 bytes", s3.get_object, Bucket=bucket, Key="big/50mb.bin", Range="bytes=-1000")


def test_large_put_bad_digest_stores_nothing(target, bucket, rec):
    """A PUT over one cached value (streamed to the store by the gateway) whose Content-MD5 does
    not match: BadDigest, and neither a new object nor a change to the old one is stored."""
    import base64
    import random
    s3 = target.s3()
    old = random.Random(401).randbytes(3 << 20)
    new = random.Random(402).randbytes(20 << 20)  # longer than one 8 MiB store part
    rec.s3("put old", s3.put_object, Bucket=bucket, Key="big", Body=old)
    wrong = base64.b64encode(hashlib.md5(b"something else").digest()).decode()
    rec.s3("put with a wrong Content-MD5", s3.put_object, Bucket=bucket, Key="big", Body=new, ContentMD5=wrong)
    rec.s3("put new key with a wrong Content-MD5", s3.put_object, Bucket=bucket, Key="fresh", Body=new,
           ContentMD5=wrong)
    rec.s3("old object unchanged", s3.get_object, Bucket=bucket, Key="big")
    rec.s3("no new object", s3.head_object, Bucket=bucket, Key="fresh")
    good = base64.b64encode(hashlib.md5(new).digest()).decode()
    rec.s3("put with the right Content-MD5", s3.put_object, Bucket=bucket, Key="big", Body=new, ContentMD5=good)
    rec.s3("new object", s3.get_object, Bucket=bucket, Key="big")


def test_large_put_is_cached_then_written_back(target, bucket):
    """A 6 MiB PUT (over one cached value, under the admission limit): the gateway writes it into
    the cache in chunks (not to the store directly) and answers with the body's MD5; reads return
    it whole; write-back puts it in Swift with its metadata. The same calls against Swift."""
    import random
    from conftest import admin, flush
    s3 = target.s3()
    body = random.Random(611).randbytes(6 << 20)
    status = lambda: requests.get(f"{target.s3_url}/_faascache/status", timeout=10).json()
    before = status()["direct_puts"] if target.is_gateway else None
    r = s3.put_object(Bucket=bucket, Key="out/big.bin", Body=body, ContentType="image/png",
                      Metadata={"stage": "blur"})
    assert r["ETag"] == f'"{md5(body)}"'
    if target.is_gateway:
        assert status()["direct_puts"] == before, "written into the cache, not to the store"
    got = s3.get_object(Bucket=bucket, Key="out/big.bin")
    assert got["Body"].read() == body and got["ETag"] == r["ETag"]
    part = s3.get_object(Bucket=bucket, Key="out/big.bin", Range="bytes=3145720-3145739")
    assert part["Body"].read() == body[3145720:3145740]
    if target.is_gateway:
        done = flush(bucket, "out/big.bin")
        assert done.returncode == 0, done.stderr
    headers, stored = admin().get_object(bucket, "out/big.bin")
    assert stored == body, "the store has every byte"
    assert headers["content-type"] == "image/png" and headers["x-object-meta-stage"] == "blur"


def test_buckets(target, rec):
    s3 = target.s3()
    name = unique()
    try:
        rec.s3("create", s3.create_bucket, Bucket=name)
        rec.s3("create again", s3.create_bucket, Bucket=name)
        rec.s3("head", s3.head_bucket, Bucket=name)
        rec.s3("head missing", s3.head_bucket, Bucket=name + "-nope")
        r = s3.list_buckets()
        rec.add("list buckets: ours listed", name in [b["Name"] for b in r["Buckets"]])
        rec.add("list buckets: owner", r.get("Owner"))
        rec.s3("put in new bucket", s3.put_object, Bucket=name, Key="k", Body=b"v")
        rec.s3("get in new bucket", s3.get_object, Bucket=name, Key="k")
        rec.s3("create invalid name", s3.create_bucket, Bucket="Bad_Name")
    finally:
        from conftest import _drop
        _drop(target, name)


def test_errors(target, bucket, rec):
    s3 = target.s3()
    s3.put_object(Bucket=bucket, Key="k", Body=b"v")
    missing = unique("missing")
    rec.s3("missing key get", s3.get_object, Bucket=bucket, Key="nope")
    rec.s3("missing key head", s3.head_object, Bucket=bucket, Key="nope")
    rec.s3("missing bucket get", s3.get_object, Bucket=missing, Key="k")
    rec.s3("missing bucket put", s3.put_object, Bucket=missing, Key="k", Body=b"v")
    rec.s3("missing bucket list", s3.list_objects_v2, Bucket=missing)
    rec.s3("missing bucket head", s3.head_bucket, Bucket=missing)
    bad = target.s3(secret="wrong-secret")
    rec.s3("bad signature get", bad.get_object, Bucket=bucket, Key="k")
    rec.s3("bad signature put", bad.put_object, Bucket=bucket, Key="k2", Body=b"v")
    rec.s3("bad signature list", bad.list_objects_v2, Bucket=bucket)
    unknown = target.s3(access="nobody:none", secret="x")
    rec.s3("wrong access key get", unknown.get_object, Bucket=bucket, Key="k")
    rec.s3("wrong access key list buckets", unknown.list_buckets)
    reader = target.s3(access="test:reader", secret="reading")
    # Normalization 13: status only.
    for label, fn, kw in [("no rights get", reader.get_object, {"Key": "k"}),
                          ("no rights put", reader.put_object, {"Key": "k3", "Body": b"v"})]:
        try:
            fn(Bucket=bucket, **kw)
            rec.add(label, {"status": 200})
        except ClientError as e:
            rec.add(label, {"status": e.response["ResponseMetadata"]["HTTPStatusCode"]})
    # An unsigned request (not recorded: Swift's s3api passes it on to the native API, which
    # answers 400 text/html "Bad Request"; the gateway must refuse it as S3 does: 403 AccessDenied
    # in XML).
    r = requests.get(f"{target.s3_url}/{bucket}/k", timeout=30)
    if target.is_gateway:
        assert r.status_code == 403 and "<Code>AccessDenied</Code>" in r.text, (r.status_code, r.text)
    else:
        assert r.status_code == 400, (r.status_code, r.text)
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"


def test_presigned(target, bucket, rec):
    s3 = target.s3()
    s3.put_object(Bucket=bucket, Key="p", Body=BODY, ContentType="text/plain")
    for style, client in [("v4", s3), ("v2", target.s3(signature_version="s3"))]:
        url = client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "p"}, ExpiresIn=300)
        r = requests.get(url, timeout=30)
        rec.add(f"{style} get", {"status": r.status_code, "md5": md5(r.content), "type": r.headers.get("content-type")})
        assert r.status_code == 200 and r.content == BODY
        url = client.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": f"pp-{style}"}, ExpiresIn=300)
        r = requests.put(url, data=b"put through a presigned URL", timeout=30)
        rec.add(f"{style} put", {"status": r.status_code, "etag": r.headers.get("etag")})
        rec.s3(f"{style} get what was put", s3.get_object, Bucket=bucket, Key=f"pp-{style}")
        url = client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "p"}, ExpiresIn=300)
        r = requests.get(url.replace("Signature=", "Signature=00"), timeout=30)
        rec.add(f"{style} tampered", {"status": r.status_code, "code": _code(r.text)})
        url = client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "nope"}, ExpiresIn=300)
        r = requests.get(url, timeout=30)
        rec.add(f"{style} missing key", {"status": r.status_code, "code": _code(r.text)})
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "p"}, ExpiresIn=1)
    import time
    time.sleep(2.1)
    r = requests.get(url, timeout=30)
    rec.add("v4 expired", {"status": r.status_code, "code": _code(r.text)})


def _code(text):
    import re
    m = re.search(r"<Code>([^<]*)</Code>", text)
    return m.group(1) if m else None


def test_zz_same_as_swift():
    compare_records(__name__)
