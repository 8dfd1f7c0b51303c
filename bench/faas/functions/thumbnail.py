"""Thumbnail: resize an image to fit a bounding box (Pillow), keeping its format.

OpenWhisk-style action: `main(args)` does the I/O, `process(data, params)` the work, so the FaaS
harness can swap the local file for an object store (boto3) without touching the work.

args: `input_path` (local file), optional `output_path`, `size` (the box's side in pixels,
default 256).
"""

import io

from PIL import Image


def process(data: bytes, params: dict) -> bytes:
    """Decode `data`, shrink it to fit `size` x `size`, encode it in its own format."""
    size = int(params.get("size", 256))
    with Image.open(io.BytesIO(data)) as img:
        fmt = img.format or "PNG"
        img.thumbnail((size, size))
        if fmt == "JPEG" and img.mode not in ("RGB", "L"):
            img = img.convert("RGB")
        out = io.BytesIO()
        img.save(out, format=fmt)
        return out.getvalue()


def main(args: dict) -> dict:
    with open(args["input_path"], "rb") as f:
        data = f.read()
    result = process(data, args)
    if args.get("output_path"):
        with open(args["output_path"], "wb") as f:
            f.write(result)
    return {"input_bytes": len(data), "output_bytes": len(result)}
