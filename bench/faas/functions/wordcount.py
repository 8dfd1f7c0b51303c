"""Word count: UTF-8 text in, JSON `{word: count}` (most common first) out.

OpenWhisk-style action: `main(args)` does the I/O, `process(data, params)` the work.

args: `input_path` (local file), optional `output_path`, `top` (keep the `top` most common
words; 0, the default, keeps all).
"""

import json
import re
from collections import Counter

WORD = re.compile(r"\w+")


def process(data: bytes, params: dict) -> bytes:
    """Count the words of `data` (case-folded) and return them as JSON, most common first."""
    top = int(params.get("top", 0)) or None
    words = WORD.findall(data.decode("utf-8", errors="replace").lower())
    counts = Counter(words).most_common(top)
    return json.dumps(dict(counts)).encode("utf-8")


def main(args: dict) -> dict:
    with open(args["input_path"], "rb") as f:
        data = f.read()
    result = process(data, args)
    if args.get("output_path"):
        with open(args["output_path"], "wb") as f:
            f.write(result)
    return {"input_bytes": len(data), "output_bytes": len(result)}
