"""Thumbnail: resize an image to fit a bounding box (Pillow), keeping its format.

OpenWhisk-style action: `main(args)` does the I/O, `process(data, params)` the work, so the FaaS
harness can swap the local file for an object store (boto3) without touching the work.

Parameters: `size` (the box's side in pixels, default 256) — in `args["params"]` in store mode
(the contract's ARGS, through faasio), at the top of `args` beside `input_path` and optional
`output_path` in the local mode of record_memory.py.
"""

import io

from PIL import Image

import faasio


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
    """Store mode (the contract's ARGS) or the local mode of record_memory.py; see faasio."""
    return faasio.run_single(args, process)
