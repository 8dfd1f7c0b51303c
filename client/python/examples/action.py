"""An OpenWhisk-style action on FaaSCache: reads a text from table `action_in` (key
`args["key"]`), counts its words, writes the most frequent word and its count as JSON to table
`action_out` under the same key, and returns a summary.

The cluster: `args["coordinator"]`, else $FAASCACHE_COORDINATOR, else the cluster directory
$FAASCACHE_DIR (default `.faascache-cluster`). The client is kept in a module global, so a warm
container reuses its connection and lease across invocations.
"""

import collections
import json
import os

import faascache

_client = None
_locator = None


def _connect(coordinator):
    global _client, _locator
    if _client is None or _locator != coordinator:
        if coordinator:
            _client = faascache.Client(coordinator=coordinator)
        else:
            _client = faascache.Client(dir=os.environ.get("FAASCACHE_DIR", ".faascache-cluster"))
        _locator = coordinator
    return _client


def main(args):
    coordinator = args.get("coordinator") or os.environ.get("FAASCACHE_COORDINATOR")
    key = args["key"]
    c = _connect(coordinator)
    try:
        text = c.get("action_in", key).decode()
    except (faascache.NotFound, faascache.NoSuchTable):
        return {"ok": False, "error": f"no input object {key!r} in table action_in"}
    words = text.split()
    top = dict(collections.Counter(words).most_common(1))
    c.create_table("action_out")
    version = c.put("action_out", key, json.dumps(top))
    return {"ok": True, "words": len(words), "top": top, "version": version}
