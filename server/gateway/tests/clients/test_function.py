"""An unmodified S3 function (thumbnail.py: boto3 + Pillow) run against each target by changing
only AWS_ENDPOINT_URL; its output must then be in Swift itself. Against the gateway the output is
written back (write-back table): `faascache flush BUCKET --dir FAASCACHE_DIR` first, then it is
read from the real Swift through the native API."""
import hashlib
import io
import json
import os
import subprocess
import sys

from PIL import Image

from conftest import FAASCACHE_DIR, KEY, REGION, USER, admin, compare_records, flush

HERE = os.path.dirname(os.path.abspath(__file__))


def picture():
    img = Image.new("RGB", (640, 480))
    px = img.load()
    for x in range(640):
        for y in range(480):
            px[x, y] = (x * 255 // 639, y * 255 // 479, (x + y) % 256)
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def run_function(target, event):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ENDPOINT_URL=target.s3_url, AWS_ACCESS_KEY_ID=USER, AWS_SECRET_ACCESS_KEY=KEY,
               AWS_DEFAULT_REGION=REGION, AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull,
               AWS_EC2_METADATA_DISABLED="true")
    return subprocess.run([sys.executable, os.path.join(HERE, "thumbnail.py"), json.dumps(event)],
                          env=env, capture_output=True, text=True, timeout=120)


def test_thumbnail_function(target, bucket, rec):
    png = picture()
    store = admin()  # the real Swift, native API
    store.put_object(bucket, "in/photo.png", png, content_type="image/png")
    p = run_function(target, {"bucket": bucket, "key": "in/photo.png"})
    assert p.returncode == 0, p.stderr
    result = json.loads(p.stdout)
    rec.add("function result", result)
    assert result["key"] == "thumbnails/photo.jpg" and result["size"] == [128, 96]
    if target.is_gateway:
        f = flush(bucket)
        assert f.returncode == 0, f"faascache flush {bucket} --dir {FAASCACHE_DIR}: {f.stdout}\n{f.stderr}"
    headers, data = store.get_object(bucket, "thumbnails/photo.jpg")
    img = Image.open(io.BytesIO(data))
    rec.add("in swift", {"format": img.format, "size": list(img.size),
                         "content-type": headers["content-type"],
                         "meta source": headers.get("x-object-meta-source"),
                         "meta source-etag": headers.get("x-object-meta-source-etag") == hashlib.md5(png).hexdigest(),
                         "etag is md5": headers["etag"] == hashlib.md5(data).hexdigest()})
    assert img.format == "JPEG" and img.size == (128, 96)
    assert headers["content-type"] == "image/jpeg" and headers["x-object-meta-source"] == "in/photo.png"
    # The input is untouched.
    assert store.get_object(bucket, "in/photo.png")[1] == png


def test_zz_same_as_swift():
    compare_records(__name__)
