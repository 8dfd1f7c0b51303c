"""Convert: re-encode an image in another format (Pillow), e.g. PNG → JPEG for the web.

OpenWhisk-style action: `main(args)` does the I/O (faasio), `process(data, params)` the work.

Parameters (`args["params"]`, or the top of `args` in local mode): `format` (PNG, JPEG, WEBP,
BMP, GIF, TIFF; default: JPEG for a PNG input, PNG for anything else), `quality` (JPEG/WEBP,
default 85). Modes the target cannot hold are converted (RGBA/P/LA → RGB for JPEG).
"""

import io

from PIL import Image

import faasio

FORMATS = {"PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF"}
MIME = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "BMP": "image/bmp",
        "GIF": "image/gif", "TIFF": "image/tiff"}


def target_format(source_format: str, params: dict) -> str:
    fmt = str(params.get("format") or ("JPEG" if source_format == "PNG" else "PNG")).upper()
    fmt = "JPEG" if fmt == "JPG" else fmt
    if fmt not in FORMATS:
        raise ValueError(f"unsupported target format {fmt!r}; one of {sorted(FORMATS)}")
    return fmt


def process(data: bytes, params: dict) -> bytes:
    """Decode `data` and encode it in the target format."""
    with Image.open(io.BytesIO(data)) as img:
        fmt = target_format(img.format or "PNG", params)
        if fmt == "JPEG" and img.mode not in ("RGB", "L", "CMYK"):
            img = img.convert("RGB")
        kw = {"quality": int(params.get("quality", 85))} if fmt in ("JPEG", "WEBP") else {}
        out = io.BytesIO()
        img.save(out, format=fmt, **kw)
        return out.getvalue(), {"format": fmt}


def main(args: dict) -> dict:
    """Store mode (the contract's ARGS) or the local mode of record_memory.py; see faasio."""
    return faasio.run_single(args, process)
