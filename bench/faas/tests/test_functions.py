"""The FaaS functions in real action proxies against real stores (issue 20, the Python side).

Every function is sent to its own `actionproxy.py` with `/init` (its source, as OpenWhisk sends
it) and run with `/run` against moto through the `s3` and `redis+s3` store kinds; each test
reads the output back from the store, decodes it and checks it against what the input implies
(a thumbnail's dimensions, word counts equal to a count made here, the resampled WAV's rate
and length, a valid and repeatable class), and checks the result dict the driver relies on
(E/T/L, byte counts, the output's sha256). The protocol's errors are tested on fresh proxies.
Swift (the `swift` kind and `s3` against Swift's s3api) runs when `scripts/swift.sh status`
says Swift is up; otherwise it is skipped — a failure under CI=true.
"""

import base64
import hashlib
import io
import json
import re
import wave
import zipfile
from collections import Counter

import numpy as np
import pytest
from PIL import Image

import faasio
import gen_inputs
import train_model

RESULT_FIELDS = {"extract_ms", "transform_ms", "load_ms", "input_bytes", "output_bytes",
                 "output_sha256", "outputs", "cold", "connect_ms"}


def sha(data):
    return hashlib.sha256(data).hexdigest()


def reference_counts(text: bytes) -> Counter:
    """Word counts computed independently of the functions: case-folded runs of \\w."""
    return Counter(w.lower() for w in re.findall(r"\w+", text.decode("utf-8")))


def check_result(res, out_data, input_bytes):
    """The contract's result dict, consistent with the output read back."""
    assert RESULT_FIELDS <= set(res), res
    for k in ("extract_ms", "transform_ms", "load_ms"):
        assert isinstance(res[k], float) and res[k] >= 0.0, (k, res)
    assert res["input_bytes"] == input_bytes
    assert res["output_bytes"] == len(out_data)
    assert res["output_sha256"] == sha(out_data)
    assert res["outputs"][-1]["sha256"] == sha(out_data)


@pytest.fixture(scope="session")
def inputs(moto, prefix):
    """Small seeded inputs uploaded to moto once: keys by name, and the local bytes."""
    cfg, bucket = moto
    st = faasio.store(cfg)
    rng = np.random.default_rng(2020)
    data = {
        "image.png": gen_inputs.make_image(rng, 96 << 10, "PNG", 0.2),
        "image.jpg": gen_inputs.make_image(rng, 64 << 10, "JPEG", 0.2),
        "audio.wav": gen_inputs.make_wav(rng, 128 << 10),
        "text.txt": gen_inputs.make_text(rng, 64 << 10),
    }
    for i, part in enumerate(gen_inputs.split_text(data["text.txt"], 3)):
        data[f"text.part{i}.txt"] = part
    model, _ = train_model.train(trees=8)
    import pickle

    data["model.pkl"] = pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
    for name, body in data.items():
        st.put(bucket, prefix + "in/" + name, body)
    return data


@pytest.fixture(params=["s3", "redis+s3"])
def store(request, moto):
    """The store description a function gets, for each kind the suite tests against moto."""
    cfg, bucket = moto
    if request.param == "redis+s3":
        cfg = dict(cfg, kind="redis+s3", redis=request.getfixturevalue("redis_addr"))
    return cfg, bucket


def args_for(store, prefix, name, out, **params):
    cfg, bucket = store
    return {"store": cfg, "input": {"bucket": bucket, "key": prefix + "in/" + name},
            "output": {"bucket": bucket, "key": prefix + "out/" + cfg["kind"] + "/" + out},
            "params": params}


def read_back(store, args):
    cfg, bucket = store
    return faasio.store(dict(cfg, kind="s3")).get(bucket, args["output"]["key"])


# --- the functions ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["image.png", "image.jpg"])
def test_thumbnail(warm, store, prefix, inputs, name):
    args = args_for(store, prefix, name, "thumb-" + name, size=64)
    res = warm("thumbnail").run(args)
    out = read_back(store, args)
    check_result(res, out, len(inputs[name]))
    with Image.open(io.BytesIO(inputs[name])) as src, Image.open(io.BytesIO(out)) as img:
        assert img.format == src.format
        assert max(img.size) == 64, img.size
        assert abs(img.size[0] / img.size[1] - src.size[0] / src.size[1]) < 0.05


def test_blur(warm, store, prefix, inputs):
    args = args_for(store, prefix, "image.png", "blur.png", radius=3.0)
    res = warm("blur").run(args)
    out = read_back(store, args)
    check_result(res, out, len(inputs["image.png"]))
    with Image.open(io.BytesIO(inputs["image.png"])) as src, Image.open(io.BytesIO(out)) as img:
        assert img.size == src.size and img.format == "PNG"
        # Blurring removes noise: the output varies less than the input between neighbours.
        a, b = np.asarray(src, dtype=float), np.asarray(img, dtype=float)
        assert np.abs(np.diff(b, axis=1)).mean() < 0.5 * np.abs(np.diff(a, axis=1)).mean()


def test_convert(warm, store, prefix, inputs):
    args = args_for(store, prefix, "image.png", "conv.webp", format="WEBP")
    res = warm("convert").run(args)
    out = read_back(store, args)
    check_result(res, out, len(inputs["image.png"]))
    assert res["format"] == "WEBP"
    with Image.open(io.BytesIO(inputs["image.png"])) as src, Image.open(io.BytesIO(out)) as img:
        assert img.format == "WEBP" and img.size == src.size


def test_resample(warm, store, prefix, inputs):
    args = args_for(store, prefix, "audio.wav", "rs.wav", rate=16000)
    res = warm("resample").run(args)
    out = read_back(store, args)
    check_result(res, out, len(inputs["audio.wav"]))
    with wave.open(io.BytesIO(inputs["audio.wav"])) as w:
        in_rate, in_frames = w.getframerate(), w.getnframes()
    with wave.open(io.BytesIO(out)) as w:
        assert (w.getframerate(), w.getsampwidth(), w.getnchannels()) == (16000, 2, 1)
        assert w.getnframes() == round(in_frames * 16000 / in_rate)
        assert res["frames"] == w.getnframes()


def test_wordcount(warm, store, prefix, inputs):
    args = args_for(store, prefix, "text.txt", "wc.json")
    res = warm("wordcount").run(args)
    out = read_back(store, args)
    check_result(res, out, len(inputs["text.txt"]))
    assert json.loads(out) == dict(reference_counts(inputs["text.txt"]))


def test_wordcount_pipeline(warm, store, prefix, inputs):
    """wcmap per chunk, wcreduce over the map outputs: the total equals a count of the whole."""
    cfg, bucket = store
    map_keys = []
    for i in range(3):
        name = f"text.part{i}.txt"
        args = args_for(store, prefix, name, f"map{i}.json")
        res = warm("wcmap").run(args)
        out = read_back(store, args)
        check_result(res, out, len(inputs[name]))
        assert json.loads(out) == dict(reference_counts(inputs[name]))
        map_keys.append(args["output"]["key"])
    red = {"store": cfg, "input": {"bucket": bucket, "keys": map_keys},
           "output": {"bucket": bucket, "key": prefix + "out/" + cfg["kind"] + "/total.json"}, "params": {}}
    res = warm("wcreduce").run(red)
    out = read_back(store, red)
    total = reference_counts(inputs["text.txt"])
    assert res["parts"] == 3 and res["words"] == sum(total.values())
    assert res["input_bytes"] == sum(len(read_back(store, {"output": {"key": k}})) for k in map_keys)
    assert json.loads(out) == dict(total)
    assert res["output_sha256"] == sha(out)


def test_infer(warm, store, prefix, inputs):
    cfg, bucket = store
    model = {"bucket": bucket, "key": prefix + "in/model.pkl"}
    p = warm("infer")
    first = p.run(args_for(store, prefix, "image.jpg", "infer1.json", model=model))
    second = p.run(args_for(store, prefix, "image.jpg", "infer2.json", model=model))
    out = read_back(store, args_for(store, prefix, "image.jpg", "infer2.json"))
    check_result(second, out, len(inputs["image.jpg"]))
    body = json.loads(out)
    assert body["class"] in range(10) and len(body["probabilities"]) == 10
    assert first["class"] == second["class"] == body["class"]
    # The model is read once per warm container and store: the second run reuses it.
    assert first["model_loaded"] and first["model_bytes"] == len(inputs["model.pkl"])
    assert not second["model_loaded"]
    # And the prediction is the model's own, made here.
    import infer
    import pickle

    expected = pickle.loads(inputs["model.pkl"]).predict(infer.features(inputs["image.jpg"]))[0]
    assert body["class"] == int(expected)


def test_redis_cache_aside(warm, moto, redis_addr, prefix, inputs):
    """redis+s3: a miss fills Redis from S3, the next read hits, an output is in both."""
    import redis

    cfg, bucket = moto
    store = (dict(cfg, kind="redis+s3", redis=redis_addr), bucket)
    r = redis.Redis(host=redis_addr.split(":")[0], port=int(redis_addr.split(":")[1]))
    key = prefix + "in/text.part0.txt"
    r.delete(f"{bucket}/{key}")
    p = warm("wcmap")
    a = args_for(store, prefix, "text.part0.txt", "aside.json")
    first = p.run(a)
    assert r.get(f"{bucket}/{key}") == inputs["text.part0.txt"]
    second = p.run(a)
    assert second["cache_hits"] == first["cache_hits"] + 1
    assert second["cache_misses"] == first["cache_misses"]
    assert r.get(f"{bucket}/{a['output']['key']}") == read_back(store, a)


# --- the protocol -------------------------------------------------------------------------------

def test_protocol_errors(proxy):
    p = proxy("--max-body", "4096")
    assert p.request("/run", {"value": {}})[0] == 403  # before /init
    status, body = p.request("/init", b"{not json")
    assert status == 400 and "malformed JSON" in body["error"]
    assert p.request("/init", b"[1, 2]")[0] == 400
    assert p.request("/init", {"value": {"code": 42}})[0] == 400
    status, body = p.request("/init", {"value": {"code": "def main(:\n"}})
    assert status == 502 and "SyntaxError" in body["error"]
    assert p.request("/init", {"value": {"code": "x = 1"}})[0] == 502  # no main
    code = ("import sys\n"
            "def main(args):\n"
            "    if args.get('raise'): raise ValueError('boom')\n"
            "    if args.get('exit'): sys.exit(3)\n"
            "    if args.get('list'): return [1]\n"
            "    if args.get('bad'): return {'x': object()}\n"
            "    print('to stderr, not stdout')\n"
            "    return {'n': args.get('n', 0) + 1}\n")
    assert p.request("/init", {"value": {"name": "t", "main": "main", "code": code}}) == (200, {"ok": True})
    assert p.request("/init", {"value": {"code": code}}) == (
        403, {"error": "cannot initialize the action more than once"})
    assert p.request("/run", {"value": {"n": 1}}) == (200, {"n": 2})
    status, body = p.request("/run", {"value": {"raise": True}})
    assert status == 502 and "ValueError" in body["error"] and "boom" in body["error"]
    assert p.request("/run", {"value": {"exit": True}})[0] == 502
    assert p.request("/run", {"value": {"list": True}})[0] == 502
    assert p.request("/run", {"value": {"bad": True}})[0] == 502
    assert p.request("/run", {"value": "not an object"})[0] == 400
    assert p.request("/run", b"{")[0] == 400
    assert p.request("/run", b"x" * 5000)[0] == 413
    assert p.request("/nope", {})[0] == 404
    assert p.request("/run", None, method="GET")[0] == 405
    # Still serving after all of it.
    assert p.request("/run", {"value": {"n": 41}}) == (200, {"n": 42})
    assert p.alive()
    assert "boom" in p.log() and "to stderr, not stdout" in p.log()


def test_environment_and_garbage(proxy):
    """OpenWhisk's __OW_ variables are set; raw garbage on the socket does not stop the proxy."""
    import socket

    p = proxy()
    code = "import os\ndef main(args):\n    return {'id': os.environ.get('__OW_ACTIVATION_ID')}\n"
    assert p.request("/init", {"value": {"code": code}})[0] == 200
    with socket.create_connection((p.host, p.port)) as s:
        s.sendall(b"\x00\xff garbage \r\n\r\n")
        s.recv(1024)
    with socket.create_connection((p.host, p.port)) as s:
        s.sendall(b"POST /run HTTP/1.1\r\nContent-Length: 100\r\n\r\n{")  # then hang up
    status, body = p.request("/run", b"{}", method="FROB")  # http.server's own refusal, as JSON
    assert status == 501 and "error" in body
    assert p.request("/run", {"value": {}, "activation_id": "abc"}) == (200, {"id": "abc"})
    assert p.alive()


def test_connections(proxy):
    """By default each response closes its connection, so a client holding one open does not
    block the next; with --keep-alive one connection serves many requests."""
    import http.client

    code = {"value": {"code": "def main(args):\n    return {'n': args.get('n', 0)}\n"}}
    p = proxy()
    assert p.request("/init", code)[0] == 200
    held = http.client.HTTPConnection(p.host, p.port, timeout=10)
    held.request("POST", "/run", body=json.dumps({"value": {"n": 1}}))
    resp = held.getresponse()
    assert resp.getheader("Connection") == "close" and json.loads(resp.read()) == {"n": 1}
    assert p.request("/run", {"value": {"n": 2}}) == (200, {"n": 2})  # while `held` is open
    held.close()
    q = proxy("--keep-alive")
    assert q.request("/init", code)[0] == 200
    conn = http.client.HTTPConnection(q.host, q.port, timeout=10)
    for n in range(3):
        conn.request("POST", "/run", body=json.dumps({"value": {"n": n}}))
        resp = conn.getresponse()
        assert resp.getheader("Connection") != "close" and json.loads(resp.read()) == {"n": n}
    conn.close()


def test_binary_init(proxy):
    """`binary: true`: a base64 zip with __main__.py and a module beside it, as OpenWhisk allows."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("__main__.py", "import helper\ndef main(args):\n    return {'v': helper.twice(args['x'])}\n")
        z.writestr("helper.py", "def twice(x):\n    return 2 * x\n")
    p = proxy()
    code = base64.b64encode(buf.getvalue()).decode()
    assert p.request("/init", {"value": {"name": "z", "main": "main", "code": code, "binary": True}})[0] == 200
    assert p.request("/run", {"value": {"x": 21}}) == (200, {"v": 42})
    q = proxy()
    assert q.request("/init", {"value": {"code": "bm90IGEgemlw", "binary": True}})[0] == 502


# --- Swift --------------------------------------------------------------------------------------

def test_swift(proxy, swift, prefix, inputs):
    """One function through Swift's native API (`swift`) and its S3 API (`s3`)."""
    container = swift["FAASCACHE_SWIFT_CONTAINER"]
    native = {"kind": "swift", "auth_url": swift["ST_AUTH"], "user": swift["ST_USER"], "key": swift["ST_KEY"]}
    user, key = swift["ST_USER"], swift["ST_KEY"]
    s3 = {"kind": "s3", "endpoint": swift["FAASCACHE_SWIFT_S3_ENDPOINT"], "access_key": user,
          "secret_key": key, "region": "us-east-1"}
    faasio.store(native).put(container, prefix + "in/image.png", inputs["image.png"])
    p = proxy()
    assert p.init_file("thumbnail") == (200, {"ok": True})
    for cfg in (native, s3):
        args = {"store": cfg, "input": {"bucket": container, "key": prefix + "in/image.png"},
                "output": {"bucket": container, "key": prefix + f"out/{cfg['kind']}/thumb.png"},
                "params": {"size": 64}}
        res = p.run(args)
        out = faasio.store(native).get(container, args["output"]["key"])
        check_result(res, out, len(inputs["image.png"]))
        with Image.open(io.BytesIO(out)) as img:
            assert max(img.size) == 64


# --- FaaSCache (the Python client straight to the cluster) -------------------------------------

def test_faascache(warm, moto, faascache_cluster, prefix, inputs):
    """The `faascache` kind: a backed table over moto; the input is read through the cache (a
    miss, then hits), the model (over 1 MiB) too, and the outputs reach moto after a flush."""
    import faascache

    cfg, bucket = moto
    client = faascache.Client(faascache_cluster)
    table = "faas-" + prefix.split("/")[1]
    client.create_table(table, backing=f"s3://{bucket}/{prefix}in", policy="write-back")
    store = {"kind": "faascache", "coordinator": faascache_cluster}
    args = {"store": store, "input": {"bucket": table, "key": "image.png"},
            "output": {"bucket": table, "key": "thumb.png"}, "params": {"size": 64}}
    first = warm("thumbnail").run(args)
    second = warm("thumbnail").run(args)
    out = client.get(table, "thumb.png")
    check_result(second, out, len(inputs["image.png"]))
    assert first["output_sha256"] == second["output_sha256"]
    model = {"bucket": table, "key": "model.pkl"}
    res = warm("infer").run(dict(args, output={"bucket": table, "key": "class.json"}, params={"model": model}))
    assert res["model_loaded"] and res["model_bytes"] == len(inputs["model.pkl"])
    assert json.loads(client.get(table, "class.json"))["class"] in range(10)
    client.flush(table)
    s3 = faasio.store(cfg)
    assert s3.get(bucket, prefix + "in/thumb.png") == out


# --- the generated inputs ----------------------------------------------------------------------

def test_gen_inputs_manifest(warm, moto, prefix, tmp_path):
    """gen_inputs.py: the same seed gives the same bytes; every manifest entry, run through its
    proxy against moto, returns the output the manifest expects (the driver's check)."""
    import subprocess

    from conftest import FAAS, PYTHON

    outs = []
    for d in ("a", "b"):
        cmd = [PYTHON, f"{FAAS}/gen_inputs.py", "--out", str(tmp_path / d), "--seed", "7", "--sizes", "16KB,32KB"]
        subprocess.run(cmd, check=True, capture_output=True)
        outs.append(tmp_path / d)
    files = sorted(p.name for p in outs[0].iterdir())
    assert files == sorted(p.name for p in outs[1].iterdir())
    for name in files:
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes(), name
    m = json.loads((outs[0] / "manifest.json").read_text())
    assert m["sizes"] == ["16KB", "32KB"] and m["seed"] == 7
    functions = {e["function"] for e in m["entries"]}
    assert functions == {"thumbnail", "blur", "convert", "infer", "resample", "wordcount", "wcmap", "wcreduce"}

    cfg, bucket = moto
    st = faasio.store(cfg)
    base = prefix + "gen/"
    st.put(bucket, base + "model.pkl", (outs[0] / "model.pkl").read_bytes())
    map_outputs = {}
    for e in [e for e in m["entries"] if e["path"]] + [e for e in m["entries"] if not e["path"]]:
        if e["path"]:
            data = (outs[0] / e["path"]).read_bytes()
            assert len(data) == e["bytes"]
            if e["kind"] != "image":  # images are within 10 %, audio and text exact
                assert len(data) == {"16KB": 16 << 10, "32KB": 32 << 10}[e["size_label"]] or e["function"] == "wcmap"
            st.put(bucket, base + e["path"], data)
            src = {"bucket": bucket, "key": base + e["path"]}
        else:
            src = {"bucket": bucket, "keys": map_outputs[e["pipeline"]]}
        params = dict(e["params"])
        if e["function"] == "infer":
            params["model"] = {"bucket": bucket, "key": base + "model.pkl"}
        out_key = base + "out/" + e["function"] + "/" + (e["path"] or e["pipeline"])
        res = warm(e["function"]).run({"store": cfg, "input": src, "output": {"bucket": bucket, "key": out_key},
                                       "params": params})
        assert res["output_sha256"] == e["expected"]["output_sha256"], e
        assert res["output_bytes"] == e["expected"]["output_bytes"]
        if e["function"] == "wcmap":
            map_outputs.setdefault(e["pipeline"], []).append(out_key)
    assert sum(len(v) for v in map_outputs.values()) == 2 * m["parts"]
