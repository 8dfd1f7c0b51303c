"""Reference client of the FaaSCache node agent's HTTP API (``faascache agent``).

Standard library only (``http.client``, ``json``), so a FaaS platform's invoker can copy this
one file. The API and its semantics are documented in ``docs/faas.md``, "Elasticity: the node
agent".

Usage::

    from faascache_agent import AgentClient, AgentError

    agent = AgentClient("http://127.0.0.1:9200")
    # Before starting the container: the call returns once the cache has released the memory.
    agent.created("c0ffee", "guest/thumbnail", booked_bytes=256 << 20,
                  features={"input_bytes": 1_048_576, "width": 1920, "height": 1080},
                  cgroup="/sys/fs/cgroup/memory/docker/c0ffee")
    agent.started("c0ffee")
    ...                                   # run the invocation
    agent.finished("c0ffee", peak_bytes=118 << 20)   # or None: the agent reads the cgroup
    agent.destroyed("c0ffee")
    print(agent.status()["cache"])

Every method returns the agent's JSON answer as a dict; an error answer raises
:class:`AgentError` with the HTTP status and the agent's message (which says what was wrong).
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.parse
from typing import Any, Dict, Mapping, Optional

__all__ = ["AgentClient", "AgentError"]

# Seconds a kept-alive connection is reused for (below the agent's 10 s idle timeout).
IDLE_REUSE_S = 5.0


class AgentError(Exception):
    """The agent answered with an error (``status`` 4xx/5xx, ``message`` its explanation)."""

    def __init__(self, status: int, message: str):
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class AgentClient:
    """A client of one agent. Not thread-safe: use one per thread (each holds a connection)."""

    def __init__(self, url: str = "http://127.0.0.1:9200", timeout: float = 30.0):
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme != "http" or not parsed.hostname:
            raise ValueError(f"agent URL must be http://HOST:PORT, not {url!r}")
        self._host = parsed.hostname
        self._port = parsed.port or 80
        self._timeout = timeout
        self._conn: Optional[http.client.HTTPConnection] = None
        self._last_used = 0.0

    def close(self) -> None:
        """Close the connection (a later call opens a new one)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> "AgentClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _request(self, method: str, path: str, body: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        # The agent closes connections idle for its timeout (10 s): an event is never sent on
        # one that may be closing, and only reads are retried (an event that did arrive must
        # not be applied twice).
        if self._conn is not None and time.monotonic() - self._last_used > IDLE_REUSE_S:
            self.close()
        attempts = 2 if method == "GET" else 1
        for attempt in range(attempts):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
            try:
                self._conn.request(method, path, body=data, headers=headers)
                resp = self._conn.getresponse()
                raw = resp.read()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.close()
                if attempt == attempts - 1:
                    raise
        self._last_used = time.monotonic()
        if resp.getheader("Connection", "").lower() == "close":
            self.close()
        try:
            answer = json.loads(raw) if raw.strip() else {}
        except ValueError:
            answer = {"error": raw.decode(errors="replace")}
        if resp.status >= 400:
            raise AgentError(resp.status, answer.get("error", "") if isinstance(answer, dict) else str(answer))
        return answer

    @staticmethod
    def _id(sandbox: str) -> str:
        return urllib.parse.quote(sandbox, safe="")

    def created(self, sandbox: str, function: str, booked_bytes: int,
                features: Optional[Mapping[str, float]] = None, cgroup: Optional[str] = None) -> Dict[str, Any]:
        """A sandbox was created (call it before the sandbox starts using memory: the answer
        comes after any shrink of the cache it needed; its ``resize`` says what was done)."""
        body: Dict[str, Any] = {"id": sandbox, "function": function, "booked_bytes": booked_bytes}
        if features:
            body["features"] = dict(features)
        if cgroup is not None:
            body["cgroup"] = cgroup
        return self._request("POST", "/v1/sandboxes", body)

    def started(self, sandbox: str, features: Optional[Mapping[str, float]] = None) -> Dict[str, Any]:
        """An invocation starts (give its input features if they differ from the creation's)."""
        body = {"features": dict(features)} if features else None
        return self._request("POST", f"/v1/sandboxes/{self._id(sandbox)}/start", body)

    def finished(self, sandbox: str, peak_bytes: Optional[int] = None) -> Dict[str, Any]:
        """The invocation finished, with its observed peak memory if the platform has it."""
        body = {"peak_bytes": peak_bytes} if peak_bytes is not None else None
        return self._request("POST", f"/v1/sandboxes/{self._id(sandbox)}/finish", body)

    def destroyed(self, sandbox: str) -> Dict[str, Any]:
        """The sandbox was destroyed."""
        return self._request("DELETE", f"/v1/sandboxes/{self._id(sandbox)}")

    def sandbox(self, sandbox: str) -> Dict[str, Any]:
        """What the agent knows of one sandbox."""
        return self._request("GET", f"/v1/sandboxes/{self._id(sandbox)}")

    def status(self) -> Dict[str, Any]:
        """The node's memory, the cache's budget and target, the last resize, the sandboxes."""
        return self._request("GET", "/v1/status")

    def healthy(self) -> bool:
        """Whether the agent answers."""
        try:
            return bool(self._request("GET", "/healthz").get("ok"))
        except (OSError, AgentError):
            return False
