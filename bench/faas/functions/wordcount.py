"""Word count: UTF-8 text in, JSON `{word: count}` (most common first) out.

OpenWhisk-style action: `main(args)` does the I/O, `process(data, params)` the work.

Parameters: `top` (keep the `top` most common words; 0, the default, keeps all) — in
`args["params"]` in store mode (the contract's ARGS, through faasio), at the top of `args` beside
`input_path` and optional `output_path` in the local mode of record_memory.py. The map-reduce
pipeline's stages are `wcmap.py` and `wcreduce.py` (same tokenizer).
"""

import json
import re
from collections import Counter

import faasio

WORD = re.compile(r"\w+")


def process(data: bytes, params: dict) -> bytes:
    """Count the words of `data` (case-folded) and return them as JSON, most common first."""
    top = int(params.get("top", 0)) or None
    words = WORD.findall(data.decode("utf-8", errors="replace").lower())
    counts = Counter(words).most_common(top)
    return json.dumps(dict(counts)).encode("utf-8")


def main(args: dict) -> dict:
    """Store mode (the contract's ARGS) or the local mode of record_memory.py; see faasio."""
    return faasio.run_single(args, process)
