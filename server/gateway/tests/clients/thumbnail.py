"""A function written for S3: read an image with boto3, write a 128x128 (at most) JPEG thumbnail
back. Nothing here knows about FaaSCache: the endpoint, credentials and region come from the
environment as for any boto3 program (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...), so pointing it
at the gateway changes only AWS_ENDPOINT_URL.

    python thumbnail.py '{"bucket": "photos", "key": "in/cat.png"}'
"""
import io
import json
import posixpath
import sys

import boto3
from PIL import Image

SIZE = (128, 128)


def handler(event, context=None):
    s3 = boto3.client("s3")
    bucket, key = event["bucket"], event["key"]
    obj = s3.get_object(Bucket=bucket, Key=key)
    img = Image.open(io.BytesIO(obj["Body"].read()))
    img.thumbnail(SIZE)
    out = io.BytesIO()
    img.convert("RGB").save(out, "JPEG", quality=85)
    name = posixpath.splitext(posixpath.basename(key))[0] + ".jpg"
    out_key = event.get("out_prefix", "thumbnails/") + name
    s3.put_object(Bucket=bucket, Key=out_key, Body=out.getvalue(), ContentType="image/jpeg",
                  Metadata={"source": key, "source-etag": obj["ETag"].strip('"')})
    return {"bucket": bucket, "key": out_key, "size": list(img.size), "bytes": out.tell()}


if __name__ == "__main__":
    print(json.dumps(handler(json.loads(sys.argv[1]))))
