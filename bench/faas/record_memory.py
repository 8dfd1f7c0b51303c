#!/usr/bin/env python3
"""Record the peak memory of real invocations of the FaaS functions, for the memory predictor.

Generates inputs locally with a fixed seed (images of varied dimensions, formats and modes,
16 KB - 8 MB encoded; UTF-8 text of 16 KB - 8 MB with varied vocabularies), runs every
invocation of `functions/{thumbnail,blur,wordcount}.py` in a fresh child Python process and
measures that process's peak memory:

* `cgroup-v1` (used when /sys/fs/cgroup/memory is a cgroup v1 hierarchy we may write, e.g. as
  root): the child joins a cgroup of its own before `exec`, so everything the interpreter and the
  function allocate is charged to it; the peak is that cgroup's `memory.max_usage_in_bytes`, the
  figure a container's memory limit is enforced against. Shared pages already in the page cache
  (libpython, Pillow's libraries, the input file the recorder just wrote) are charged to whoever
  touched them first, not to the child; a warm-up invocation per function touches them first.
* `ru_maxrss` otherwise: the child's peak resident set from `wait4` (counts shared pages too).

The column `measure` says which one `peak_bytes` is. (`ru_maxrss` is not recorded beside the
cgroup figure: a child that runs code between `fork` and `exec`, as joining a cgroup does, counts
the recorder's own resident set in it.)

Booked memory (what a tenant books for the worst input): the function's largest recorded peak,
rounded up to a multiple of 128 MiB (OpenWhisk's memory limits are set in MiB; 128 MiB is its
default minimum and a common step).

Features are what a platform knows before running the function: the input's size (object
metadata), an image's format, mode and dimensions (its header), and the invocation's parameters.

Usage: venv/bin/python bench/faas/record_memory.py [--images N] [--texts N] [--seed S] [--out CSV]
"""

import argparse
import csv
import datetime
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CGROUP_ROOT = "/sys/fs/cgroup/memory"
MIB = 1 << 20
BOOK_STEP = 128 * MIB
MIN_INPUT, MAX_INPUT = 16 << 10, 8 << 20

# The child: import the function (as a fresh process would) and call its main.
CHILD = """
import importlib, json, sys
sys.path.insert(0, sys.argv[1])
mod = importlib.import_module(sys.argv[2])
args = json.loads(sys.argv[3])
print(json.dumps(mod.main(args)))
"""

COLUMNS = [
    "function", "booked_bytes", "peak_bytes", "measure", "wall_ms",
    "input_bytes", "format", "mode", "width", "height", "pixels", "size", "radius", "top",
]


def cgroup_usable():
    try:
        probe = os.path.join(CGROUP_ROOT, f"faascache-probe-{os.getpid()}")
        os.mkdir(probe)
        ok = os.path.exists(os.path.join(probe, "memory.max_usage_in_bytes"))
        os.rmdir(probe)
        return ok
    except OSError:
        return False


def invoke(function, args, use_cgroup, seq):
    """Run `function` with `args` in a fresh child; return (peak_bytes, wall_ms)."""
    cg = None
    if use_cgroup:
        cg = os.path.join(CGROUP_ROOT, f"faascache-rec-{os.getpid()}-{seq}")
        os.mkdir(cg)

    def join_cgroup():
        if cg:
            with open(os.path.join(cg, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))

    cmd = [sys.executable, "-c", CHILD, os.path.join(HERE, "functions"), function, json.dumps(args)]
    t0 = time.monotonic()
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, preexec_fn=join_cgroup if cg else None)
    out = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    wall_ms = (time.monotonic() - t0) * 1000.0
    if child.returncode != 0:
        raise RuntimeError(f"{function} {args} failed ({child.returncode}): {out!r}")
    peak = usage.ru_maxrss * 1024
    if cg:
        with open(os.path.join(cg, "memory.max_usage_in_bytes")) as f:
            peak = int(f.read())
        os.rmdir(cg)
    return peak, wall_ms


def make_image(rng, path):
    """A random image between 16 KB and 8 MB encoded; returns its header features, or None."""
    from PIL import Image

    fmt = rng.choices(["JPEG", "PNG", "WEBP", "BMP"], weights=[4, 3, 2, 1])[0]
    mode = rng.choice({"JPEG": ["RGB", "RGB", "L"], "PNG": ["RGB", "RGBA", "L"],
                       "WEBP": ["RGB", "RGBA"], "BMP": ["RGB", "L"]}[fmt])
    pixels = math.exp(rng.uniform(math.log(40_000), math.log(16_000_000)))
    noise = rng.random() ** 2  # mostly smooth pictures, some noisy ones
    for _ in range(8):
        aspect = math.exp(rng.uniform(math.log(0.5), math.log(2.0)))
        w = max(16, int(math.sqrt(pixels * aspect)))
        h = max(16, int(pixels / w))
        grad = Image.linear_gradient("L").resize((w, h)).rotate(rng.uniform(0, 360), expand=False)
        bands = []
        for _band in range(len(mode)):
            n = Image.effect_noise((w, h), rng.uniform(20, 90))
            bands.append(Image.blend(grad, n, noise))
        img = bands[0] if mode == "L" else Image.merge(mode, bands)
        kw = {"quality": rng.randint(60, 95)} if fmt in ("JPEG", "WEBP") else {}
        img.save(path, format=fmt, **kw)
        n_bytes = os.path.getsize(path)
        if n_bytes > MAX_INPUT:
            pixels *= 0.5 * MAX_INPUT / n_bytes
        elif n_bytes < MIN_INPUT:
            pixels *= 2.0 * MIN_INPUT / n_bytes
        else:
            return {"input_bytes": n_bytes, "format": fmt, "mode": mode,
                    "width": w, "height": h, "pixels": w * h}
    return None


def make_text(rng, path):
    """Random UTF-8 text of 16 KB - 8 MB: Zipf-distributed words from a random vocabulary."""
    target = int(math.exp(rng.uniform(math.log(MIN_INPUT), math.log(MAX_INPUT))))
    vocab_size = int(math.exp(rng.uniform(math.log(300), math.log(100_000))))
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = ["".join(rng.choices(letters, k=rng.randint(2, 12))) for _ in range(vocab_size)]
    weights = [1.0 / (r + 1) ** 1.1 for r in range(vocab_size)]
    cum = []
    acc = 0.0
    for wt in weights:
        acc += wt
        cum.append(acc)
    out, size = [], 0
    while size < target:
        line = " ".join(rng.choices(vocab, cum_weights=cum, k=rng.randint(4, 20))) + ".\n"
        out.append(line)
        size += len(line)
    data = "".join(out).encode("utf-8")[:target]
    with open(path, "wb") as f:
        f.write(data)
    return {"input_bytes": len(data)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=260, help="images (each run by thumbnail and blur)")
    ap.add_argument("--texts", type=int, default=200, help="texts (each run by wordcount)")
    ap.add_argument("--seed", type=int, default=18)
    today = datetime.date.today().isoformat()
    ap.add_argument("--out", default=os.path.join(HERE, "data", f"memory-{today}.csv"))
    opts = ap.parse_args()

    rng = random.Random(opts.seed)
    use_cgroup = cgroup_usable()
    measure = "cgroup-v1" if use_cgroup else "ru_maxrss"
    print(f"measuring with {measure}", file=sys.stderr)
    work = tempfile.mkdtemp(prefix="faascache-rec-")
    jobs = ["image"] * opts.images + ["text"] * opts.texts
    rng.shuffle(jobs)
    rows, seq = [], 0
    warm = set()
    for i, kind in enumerate(jobs):
        path = os.path.join(work, f"input-{i}")
        feats = make_image(rng, path) if kind == "image" else make_text(rng, path)
        if feats is None:
            continue
        if kind == "image":
            calls = [("thumbnail", {"size": rng.choice([64, 128, 256, 512, 1024])}),
                     ("blur", {"radius": round(rng.uniform(0.5, 8.0), 1)})]
        else:
            calls = [("wordcount", {"top": rng.choice([0, 0, 10, 100, 1000])})]
        for function, params in calls:
            args = dict(params, input_path=path)
            if function not in warm:
                invoke(function, args, use_cgroup, seq)
                warm.add(function)
                seq += 1
            peak, wall_ms = invoke(function, args, use_cgroup, seq)
            seq += 1
            rows.append(dict(feats, **params, function=function, peak_bytes=peak,
                             measure=measure, wall_ms=round(wall_ms, 1)))
        os.remove(path)
        if i % 20 == 0:
            print(f"{i}/{len(jobs)} inputs, {len(rows)} rows", file=sys.stderr)
    os.rmdir(work)

    booked = {}
    for r in rows:
        booked[r["function"]] = max(booked.get(r["function"], 0), r["peak_bytes"])
    for f, peak in booked.items():
        booked[f] = max(BOOK_STEP, -(-peak // BOOK_STEP) * BOOK_STEP)
    for r in rows:
        r["booked_bytes"] = booked[r["function"]]
    os.makedirs(os.path.dirname(opts.out), exist_ok=True)
    with open(opts.out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, restval="")
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {len(rows)} rows to {opts.out}; booked: "
          + ", ".join(f"{k} {v // MIB} MiB" for k, v in sorted(booked.items())), file=sys.stderr)


if __name__ == "__main__":
    main()
