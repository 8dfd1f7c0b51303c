"""Blur: Gaussian blur of a whole image (Pillow `ImageFilter.GaussianBlur`), keeping its format.

OpenWhisk-style action: `main(args)` does the I/O, `process(data, params)` the work.

Parameters: `radius` (default 2.0) — in `args["params"]` in store mode (the contract's ARGS,
through faasio), at the top of `args` beside `input_path` and optional `output_path` in the local
mode of record_memory.py.
"""

import io

from PIL import Image, ImageFilter

import faasio


def process(data: bytes, params: dict) -> bytes:
    """Decode `data`, blur it with `radius`, encode it in its own format."""
    radius = float(params.get("radius", 2.0))
    with Image.open(io.BytesIO(data)) as img:
        fmt = img.format or "PNG"
        if img.mode == "P":
            img = img.convert("RGB")
        blurred = img.filter(ImageFilter.GaussianBlur(radius))
        out = io.BytesIO()
        blurred.save(out, format=fmt)
        return out.getvalue()


def main(args: dict) -> dict:
    """Store mode (the contract's ARGS) or the local mode of record_memory.py; see faasio."""
    return faasio.run_single(args, process)
