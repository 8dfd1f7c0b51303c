#!/usr/bin/env python3
"""Train the `infer` function's model at set-up time and write it, pickled, to a file.

Why a trained model and not a downloaded one: the evaluation (issue 20) needs one ML inference
step whose model is an object in the store, read once per warm container, and nothing may be
fetched from the internet. scikit-learn ships the 8×8 handwritten digits data set (1,797
images, 10 classes), so the model is made here, deterministically (fixed random_state), in about
a second: a random forest (default 32 trees, leaves of at least 2 samples; its pickle is about
1.2 MB — over the cache's 1 MiB entry limit, so it is stored in chunks like any large input —
and 97 % accurate on a held-out quarter).

    target/faas-venv/bin/python bench/faas/train_model.py --out model.pkl [--trees 32]

Prints one JSON line: {"path", "bytes", "sha256", "accuracy", "classes", "sklearn"}. The driver
uploads the file to the store and passes its bucket/key as `params.model` to `infer`.
"""

import argparse
import hashlib
import json
import os
import pickle
import sys


def train(trees=32, seed=0):
    """The digits classifier, and its accuracy on a held-out quarter."""
    from sklearn.datasets import load_digits
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.data, digits.target, test_size=0.25, random_state=seed, stratify=digits.target)
    model = RandomForestClassifier(n_estimators=trees, min_samples_leaf=2, random_state=seed, n_jobs=1)
    model.fit(x_train, y_train)
    return model, float(model.score(x_test, y_test))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--trees", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    opts = ap.parse_args()

    import sklearn

    model, accuracy = train(opts.trees, opts.seed)
    blob = pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
    os.makedirs(os.path.dirname(os.path.abspath(opts.out)), exist_ok=True)
    with open(opts.out, "wb") as f:
        f.write(blob)
    print(json.dumps({"path": opts.out, "bytes": len(blob), "sha256": hashlib.sha256(blob).hexdigest(),
                      "accuracy": round(accuracy, 4), "classes": [int(c) for c in model.classes_],
                      "sklearn": sklearn.__version__}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
