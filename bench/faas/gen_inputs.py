#!/usr/bin/env python3
"""Generate the FaaS evaluation's inputs, deterministically for a seed, and their manifest.

    target/faas-venv/bin/python bench/faas/gen_inputs.py --out DIR [--seed N]
        [--sizes 16KB,128KB,1MB,3MB,8MB] [--parts 4] [--no-expected]

Why generated: the evaluation (issue 20) needs inputs of controlled sizes (16 KB–8 MB, the range
OFC measured) for images, audio and text, reproducible on a fresh clone without downloads. For
each size it writes:

* `image-SIZE.png` and `image-SIZE.jpg` — a smooth gradient with seeded noise (numpy's
  generator, not Pillow's noise, which is not seeded), resized until the encoded file is within
  `--tolerance` (10 %) of SIZE; used by thumbnail, blur, convert and infer;
* `audio-SIZE.wav` — 16-bit mono PCM at 44.1 kHz, exactly SIZE bytes: a few seeded tones and
  noise; used by resample;
* `text-SIZE.txt` — exactly SIZE bytes of Zipf-distributed words from a seeded vocabulary, used by
  wordcount, and the same text cut (at spaces) into `--parts` files `text-SIZE.partI.txt`, the
  word-count pipeline's map inputs;
* `model.pkl` — infer's model (`train_model.py`), once.

`manifest.json`: `{"seed", "sizes", "model": {"path", "bytes", "sha256"}, "entries": [...]}`, one
entry per invocation kind: `{"function", "kind", "path", "bytes", "params", "size_label",
"expected": {"output_bytes", "output_sha256"}}` (paths relative to DIR). Pipelines: each `wcmap`
entry has `"pipeline"`, `"part"`, `"parts"`; the pipeline's `wcreduce` entry has `"path": null`,
`"kind": "counts"`, the same `"pipeline"` and `"parts"` (its inputs are the map outputs), and
`bytes` = the sum of the map outputs' bytes. `infer` entries need `params.model` = where the
driver uploaded `model.pkl`. `expected` is the output of the function's `process` run here (the
driver compares the sha256 a function returns, and the object it reads back); `--no-expected`
skips it (faster; the field is then absent).

Deterministic: the same seed gives byte-identical files for a size, whatever the other sizes,
with the same package versions (the pinned venv of scripts/faas-functions.sh; the encoders are
Pillow's and zlib's).
"""

import argparse
import hashlib
import io
import json
import os
import re
import sys
import wave

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "functions"))

UNITS = {"": 1, "B": 1, "KB": 1 << 10, "KIB": 1 << 10, "MB": 1 << 20, "MIB": 1 << 20}


def parse_size(text):
    """`16KB`, `1MB`, `3MiB`, `4096` → bytes (binary units, as record_memory.py's 16 KB–8 MB)."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", text)
    if not m or m.group(2).upper() not in UNITS:
        raise argparse.ArgumentTypeError(f"bad size {text!r} (e.g. 16KB, 1MB)")
    n = int(float(m.group(1)) * UNITS[m.group(2).upper()])
    if not 1024 <= n <= 64 << 20:
        raise argparse.ArgumentTypeError(f"size {text!r} outside 1 KB..64 MB")
    return n


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def make_image(rng, target, fmt, tolerance):
    """Encoded image bytes within `tolerance` of `target`: gradient + noise, sized by search."""
    bytes_per_pixel = {"PNG": 2.0, "JPEG": 0.6}[fmt]
    pixels = max(256.0, target / bytes_per_pixel)
    noise_seed = int(rng.integers(1 << 31))
    best = None
    for _ in range(12):
        w = max(16, int((pixels * 4 / 3) ** 0.5))
        h = max(16, int(pixels / w))
        gen = np.random.default_rng(noise_seed)  # same picture at every attempt, only resized
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([(xx * 255.0 / w), (yy * 255.0 / h), ((xx + yy) * 127.0 / (w + h))], axis=-1)
        noise = gen.normal(0.0, 40.0, size=(h, w, 3))
        arr = np.clip(base + noise, 0, 255).astype(np.uint8)
        out = io.BytesIO()
        kw = {"quality": 90} if fmt == "JPEG" else {"compress_level": 6}
        Image.fromarray(arr, "RGB").save(out, format=fmt, **kw)
        data = out.getvalue()
        if best is None or abs(len(data) - target) < abs(len(best) - target):
            best = data
        if abs(len(data) - target) <= tolerance * target:
            return data
        pixels *= target / len(data)
    return best


def make_wav(rng, target, rate=44100):
    """A 16-bit mono WAV of exactly `target` bytes (44-byte header + 2 bytes per frame)."""
    frames = max(1, (target - 44) // 2)
    t = np.arange(frames) / rate
    signal = np.zeros(frames)
    for _ in range(3):
        signal += rng.uniform(1000, 6000) * np.sin(2 * np.pi * rng.uniform(80, 4000) * t)
    signal += rng.normal(0.0, 500.0, frames)
    pcm = np.clip(signal, -32768, 32767).astype("<i2")
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    data = out.getvalue()
    return data + b"\0" * (target - len(data)) if len(data) < target else data


def make_text(rng, target):
    """Exactly `target` bytes of ASCII words, Zipf-distributed over a seeded vocabulary."""
    vocab_size = int(rng.integers(2000, 20000))
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    lengths = rng.integers(2, 12, size=vocab_size)
    vocab = ["".join(rng.choice(letters, size=n)) for n in lengths]
    weights = 1.0 / np.arange(1, vocab_size + 1) ** 1.1
    weights /= weights.sum()
    out, size = [], 0
    while size < target:
        idx = rng.choice(vocab_size, size=4096, p=weights)
        chunk = " ".join(vocab[i] for i in idx) + ".\n"
        out.append(chunk)
        size += len(chunk)
    data = "".join(out).encode("ascii")[:target]
    return data[:-1] + b"\n" if data[-1:] == b" " else data


def split_text(data, parts):
    """Cut `data` into `parts` pieces of about equal size, at spaces (no word is split)."""
    cuts, start = [], 0
    for i in range(1, parts):
        at = data.find(b" ", max(start, len(data) * i // parts))
        at = len(data) if at < 0 else at
        cuts.append(data[start:at])
        start = at
    cuts.append(data[start:])
    return cuts


def label(n):
    for unit, k in (("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= k and n % k == 0:
            return f"{n // k}{unit}"
    return f"{n}B"


class Expect:
    """Runs each function's `process` here, for the manifest's expected outputs."""

    def __init__(self, enabled, model_blob):
        self.enabled = enabled
        self.model = None
        if enabled:
            import pickle

            self.model = pickle.loads(model_blob)

    def __call__(self, function, data, params):
        if not self.enabled:
            return None
        import importlib

        mod = importlib.import_module(function)
        out = mod.process(data, params, self.model) if function == "infer" else mod.process(data, params)
        out = out[0] if isinstance(out, tuple) else out
        return {"output_bytes": len(out), "output_sha256": sha256(out)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=20)
    ap.add_argument("--sizes", default="16KB,128KB,1MB,3MB,8MB")
    ap.add_argument("--parts", type=int, default=4, help="map inputs per word-count pipeline")
    ap.add_argument("--tolerance", type=float, default=0.10, help="images: allowed size error")
    ap.add_argument("--no-expected", action="store_true", help="skip computing expected outputs")
    opts = ap.parse_args()
    sizes = [parse_size(s) for s in opts.sizes.split(",") if s.strip()]
    if not 1 <= opts.parts <= 64:
        ap.error("--parts must be 1..64")
    os.makedirs(opts.out, exist_ok=True)

    def write(name, data):
        with open(os.path.join(opts.out, name), "wb") as f:
            f.write(data)
        return name

    from train_model import train
    import pickle

    model, accuracy = train(seed=opts.seed)
    blob = pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
    write("model.pkl", blob)
    expect = Expect(not opts.no_expected, blob)
    entries = []

    def entry(function, kind, name, data, params, size_label, **extra):
        e = {"function": function, "kind": kind, "path": name, "bytes": len(data), "params": params,
             "size_label": size_label, **extra}
        expected = expect(function, data, params)
        if expected:
            e["expected"] = expected
        entries.append(e)
        return expected

    for size in sizes:
        lab = label(size)
        rng = np.random.default_rng([opts.seed, size])  # a size's inputs do not depend on the others
        for fmt, ext in (("PNG", "png"), ("JPEG", "jpg")):
            data = make_image(rng, size, fmt, opts.tolerance)
            name = write(f"image-{lab}.{ext}", data)
            entry("thumbnail", "image", name, data, {"size": 256}, lab)
            entry("blur", "image", name, data, {"radius": 2.0}, lab)
            entry("convert", "image", name, data, {"format": "JPEG" if fmt == "PNG" else "WEBP"}, lab)
            entry("infer", "image", name, data, {}, lab)
        data = make_wav(rng, size)
        entry("resample", "audio", write(f"audio-{lab}.wav", data), data, {"rate": 16000}, lab)
        text = make_text(rng, size)
        entry("wordcount", "text", write(f"text-{lab}.txt", text), text, {}, lab)
        pipeline = f"wc-{lab}"
        map_outs = []
        for i, part in enumerate(split_text(text, opts.parts)):
            name = write(f"text-{lab}.part{i}.txt", part)
            entry("wcmap", "text", name, part, {}, lab, pipeline=pipeline, part=i, parts=opts.parts)
            if expect.enabled:
                import wcmap

                map_outs.append(wcmap.process(part, {})[0])
        reduce = {"function": "wcreduce", "kind": "counts", "path": None, "params": {},
                  "size_label": lab, "pipeline": pipeline, "parts": opts.parts,
                  "bytes": sum(map(len, map_outs))}
        if expect.enabled:
            import wcreduce

            out = wcreduce.process(map_outs, {})[0]
            reduce["expected"] = {"output_bytes": len(out), "output_sha256": sha256(out)}
        entries.append(reduce)
        print(f"gen_inputs: {lab} done ({len(entries)} entries)", file=sys.stderr)

    manifest = {"seed": opts.seed, "sizes": [label(s) for s in sizes], "parts": opts.parts,
                "model": {"path": "model.pkl", "bytes": len(blob), "sha256": sha256(blob),
                          "accuracy": round(accuracy, 4)},
                "entries": entries}
    with open(os.path.join(opts.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    print(f"gen_inputs: wrote {len(entries)} entries to {os.path.join(opts.out, 'manifest.json')}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
