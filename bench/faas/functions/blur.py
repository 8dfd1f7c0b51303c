"""Blur: Gaussian blur of a whole image (Pillow `ImageFilter.GaussianBlur`), keeping its format.

OpenWhisk-style action: `main(args)` does the I/O, `process(data, params)` the work.

args: `input_path` (local file), optional `output_path`, `radius` (default 2.0).
"""

import io

from PIL import Image, ImageFilter


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
    with open(args["input_path"], "rb") as f:
        data = f.read()
    result = process(data, args)
    if args.get("output_path"):
        with open(args["output_path"], "wb") as f:
            f.write(result)
    return {"input_bytes": len(data), "output_bytes": len(result)}
