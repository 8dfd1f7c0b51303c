"""Infer: classify an image with a scikit-learn model that lives in the store.

The evaluation's ML step (issue 20): the model (a digits classifier made at set-up time by
`bench/faas/train_model.py`, uploaded by the driver) is an object in the store like any input.
A warm container reads and unpickles it once and keeps it (per store and key); the first
invocation in a container pays for it inside its Extract (the read) and Transform (the
unpickling), as a real function that loads its model lazily does. The model is trusted data:
the driver wrote it.

Work: decode the image (any size, Pillow), grey, fit it to 8×8, map to the digits data set's
0–16 ink scale, predict. Output: JSON `{"class": int, "probabilities": [float × classes]}`.

Parameters (`args["params"]`): `model: {"bucket", "key"}` (required in store mode). Local mode
(`input_path`, `model_path`, optional `output_path`) for record_memory.py-style runs.
"""

import io
import json
import pickle

import numpy as np
import sklearn.ensemble  # noqa: F401 -- the model's classes, imported at /init (not in T)
from PIL import Image

import faasio

_MODELS = {}  # (store description or path, bucket, key) -> the unpickled model


def features(data: bytes) -> np.ndarray:
    """The image as the digits data set's 64 features: 8×8 grey, dark ink = 16."""
    with Image.open(io.BytesIO(data)) as img:
        grey = img.convert("L").resize((8, 8), Image.Resampling.BOX)
        pixels = np.asarray(grey, dtype=np.float64)
    return ((255.0 - pixels) * (16.0 / 255.0)).reshape(1, 64)


def process(data: bytes, params: dict, model) -> bytes:
    """Predict the class of the image `data` with `model`."""
    x = features(data)
    probs = model.predict_proba(x)[0]
    label = int(model.classes_[int(np.argmax(probs))])
    body = json.dumps({"class": label, "probabilities": [round(float(p), 6) for p in probs]},
                      separators=(",", ":")).encode("utf-8")
    return body, {"class": label}


def main(args: dict) -> dict:
    if "store" not in args:
        ident = ("local", args["model_path"])
        if ident not in _MODELS:
            with open(args["model_path"], "rb") as f:
                _MODELS[ident] = pickle.loads(f.read())
        return faasio.run_local(args, lambda data, p: process(data, p, _MODELS[ident]))
    t = faasio.Timings()
    st = faasio.store(args["store"], t)
    params = args.get("params") or {}
    where = params.get("model")
    if not isinstance(where, dict) or "bucket" not in where or "key" not in where:
        raise ValueError("infer needs params.model = {'bucket': ..., 'key': ...}")
    ident = (json.dumps(args["store"], sort_keys=True), where["bucket"], where["key"])
    model = _MODELS.get(ident)
    loaded = model is None
    if loaded:
        with t.extract:
            blob = st.get(where["bucket"], where["key"])
        with t.transform:
            model = _MODELS[ident] = pickle.loads(blob)
    data = t.get(st, args["input"]["bucket"], args["input"]["key"])
    with t.transform:
        out, extra = process(data, params, model)
    t.put(st, args["output"]["bucket"], args["output"]["key"], out, "application/json")
    return t.result(st, model_loaded=loaded, model_bytes=len(blob) if loaded else 0, **extra)
