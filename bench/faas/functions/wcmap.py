"""Word count, map stage: one UTF-8 text chunk in, its word counts as JSON out (to the store).

The pipeline of the evaluation (issue 20): N `wcmap` invocations each read one chunk and write
their counts to the store; one `wcreduce` reads all of them and writes the total — the
intermediate data goes through the store, which is what the cache is meant to speed up.
Tokenizer: `wordcount.py`'s (case-folded `\\w+`), so the pipeline's total equals wordcount's.

Parameters: none needed (`args["params"]` may be empty). Output: JSON `{word: count}`, sorted
by word so equal inputs give equal bytes (the driver checks the output's sha256).
"""

import json
import re
from collections import Counter

import faasio

WORD = re.compile(r"\w+")


def count(data: bytes) -> Counter:
    return Counter(WORD.findall(data.decode("utf-8", errors="replace").lower()))


def process(data: bytes, params: dict) -> bytes:
    """Count the words of `data`; JSON sorted by word."""
    counts = count(data)
    body = json.dumps(dict(sorted(counts.items())), separators=(",", ":")).encode("utf-8")
    return body, {"words": sum(counts.values()), "distinct": len(counts)}


def main(args: dict) -> dict:
    """Store mode (the contract's ARGS) or the local mode of record_memory.py; see faasio."""
    return faasio.run_single(args, process, content_type="application/json")
