"""Word count, reduce stage: every map output in (`input.keys`), the total counts out.

See `wcmap.py` for the pipeline. E is the time to read every map output, T the merge, L the one
write. Output: JSON `{word: count}` sorted by count (descending), then word; `top` (parameter,
default 0 = all) keeps the most common only.

ARGS: `input: {"bucket": b, "keys": [k1, k2, ...]}` (a single `key` is accepted too), `output`,
`params`. Local mode: `input_paths` (list), optional `output_path`.
"""

import json
from collections import Counter

import faasio


def process(parts, params: dict) -> bytes:
    """Merge the JSON count maps `parts` (bytes each) into one, most common first."""
    total = Counter()
    for part in parts:
        counts = json.loads(part)
        if not isinstance(counts, dict):
            raise ValueError("a map output is not a JSON object")
        total.update(counts)
    top = int(params.get("top", 0)) or None
    ranked = sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    body = json.dumps(dict(ranked), separators=(",", ":")).encode("utf-8")
    return body, {"words": sum(total.values()), "distinct": len(total), "parts": len(parts)}


def main(args: dict) -> dict:
    if "store" not in args:
        parts = []
        for path in args["input_paths"]:
            with open(path, "rb") as f:
                parts.append(f.read())
        out, extra = process(parts, args)
        if args.get("output_path"):
            with open(args["output_path"], "wb") as f:
                f.write(out)
        return dict(extra, input_bytes=sum(map(len, parts)), output_bytes=len(out))
    t = faasio.Timings()
    st = faasio.store(args["store"], t)
    src = args["input"]
    keys = src.get("keys") or [src["key"]]
    parts = [t.get(st, src["bucket"], k) for k in keys]
    with t.transform:
        out, extra = process(parts, args.get("params") or {})
    t.put(st, args["output"]["bucket"], args["output"]["key"], out, "application/json")
    return t.result(st, **extra)
