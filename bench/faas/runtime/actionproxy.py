#!/usr/bin/env python3
"""A sandbox runtime that speaks the OpenWhisk action protocol: one process = one warm container.

    PYTHON bench/faas/runtime/actionproxy.py --port PORT

Why our own: the FaaS harness (`faascache-bench faas`, issue 20) runs actions the way OpenWhisk
runs them — `POST /init` with the code once, then `POST /run` per activation — so that actions
written for OpenWhisk run unchanged, without OpenWhisk's images (Docker is not available here).
Standard library only, so the process's own memory is the interpreter's plus the action's.

Protocol (the contract: /work/notes/faas-contract.md, copied in bench/faas/README.md):

* `POST /init` `{"value": {"name", "main", "code", "binary"}}` → 200 `{"ok": true}`. `code` is
  Python source, or (`binary: true`) a base64 zip holding `__main__.py`, unpacked to a private
  directory that goes on `sys.path`. `main` names the entry point (default `main`). A second
  `/init` after a successful one → 403 `{"error": "cannot initialize the action more than
  once"}`; a failed `/init` (syntax error, no such entry point, bad zip) → 502 and the proxy
  stays uninitialized, so it may be retried.
* `POST /run` `{"value": ARGS, "activation_id", "deadline", ...}` → 200 with the dictionary the
  action returned. The other top-level string fields are exported as `__OW_<FIELD>` environment
  variables, as OpenWhisk does. An exception (SystemExit included), a non-dict or a result that is
  not JSON → 502 `{"error": "..."}` (the traceback goes to stderr). Before `/init` → 403.
* Malformed JSON or a body that is not the expected object → 400; no Content-Length → 411; a body
  over `--max-body` (64 MiB) → 413 and the connection is closed unread; another path → 404; another
  method → 405. Every error body is `{"error": "..."}`; nothing a client sends stops the process.

One request at a time (a single-threaded `http.server`): a container runs one activation at a
time, as OpenWhisk's Python runtime does. Each response closes its connection (`Connection:
close`) unless `--keep-alive` is given: a single-threaded server serving a kept-alive connection
cannot accept another one, so a client that pools connections and opens a second one would
wait; a fresh loopback connection costs a fraction of a millisecond. With `--keep-alive`, a
client must use one connection at a time. Either way a connection that stalls mid-request or
idles for `--idle-timeout` seconds (default 60) is closed, so no client holds the container.

Output: the one line `actionproxy listening on 127.0.0.1:PORT` goes to stdout once the socket
accepts connections; after it, stdout is pointed at stderr (the action's `print`s and the
proxy's logs all go to stderr), so a driver may read that one line and then ignore stdout
without the pipe ever filling.

`bench/faas/functions` is put on `sys.path`, so actions import `faasio` like a package of an
OpenWhisk runtime image.
"""

import argparse
import base64
import binascii
import http.server
import io
import json
import os
import sys
import tempfile
import time
import traceback
import types
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
FUNCTIONS = os.path.normpath(os.path.join(HERE, "..", "functions"))
MIB = 1 << 20
MAX_UNZIPPED = 512 * MIB  # a binary action's unpacked size (OpenWhisk's zips are at most 48 MB packed)


class ProtocolError(Exception):
    """A request the proxy refuses: `status` and the message of its `{"error": ...}` body."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


class Action:
    """The one action of this container: its entry point once `/init` has succeeded."""

    def __init__(self):
        self.main = None
        self.name = None
        self.runs = 0

    def init(self, value):
        """Compile and load the action; raise ProtocolError on anything wrong."""
        if self.main is not None:
            raise ProtocolError(403, "cannot initialize the action more than once")
        if not isinstance(value, dict):
            raise ProtocolError(400, "/init: 'value' must be an object")
        code = value.get("code")
        entry = value.get("main") or "main"
        name = value.get("name") or "action"
        if not isinstance(code, str) or not isinstance(entry, str) or not isinstance(name, str):
            raise ProtocolError(400, "/init: 'code', 'main' and 'name' must be strings")
        if value.get("binary"):
            source, filename = self._unzip(code)
        else:
            source, filename = code, f"<action {name}>"
        module = types.ModuleType(f"action_{name}".replace("/", "_").replace(".", "_"))
        module.__file__ = filename
        try:
            exec(compile(source, filename, "exec"), module.__dict__)
        except BaseException as e:  # SystemExit or a syntax error alike: the init failed
            traceback.print_exc()
            raise ProtocolError(502, f"the action failed to initialize: {type(e).__name__}: {e}")
        fn = module.__dict__.get(entry)
        if not callable(fn):
            raise ProtocolError(502, f"the action has no callable entry point '{entry}'")
        # Registered so pickle and friends can find the action's classes by module name.
        sys.modules[module.__name__] = module
        self.main, self.name = fn, name

    @staticmethod
    def _unzip(code):
        """A base64 zip with `__main__.py`: unpack it privately; return (source, path)."""
        try:
            raw = base64.b64decode(code)
            with zipfile.ZipFile(io.BytesIO(raw)) as z:
                if "__main__.py" not in z.namelist():
                    raise ProtocolError(502, "the zip has no __main__.py")
                unpacked = sum(m.file_size for m in z.infolist())
                if unpacked > MAX_UNZIPPED:
                    raise ProtocolError(502, f"the zip unpacks to {unpacked} bytes, over {MAX_UNZIPPED}")
                where = tempfile.mkdtemp(prefix="actionproxy-")
                for member in z.infolist():
                    target = os.path.realpath(os.path.join(where, member.filename))
                    if not target.startswith(os.path.realpath(where) + os.sep):
                        raise ProtocolError(502, f"zip member escapes its folder: {member.filename}")
                z.extractall(where)
        except (binascii.Error, ValueError, zipfile.BadZipFile) as e:
            raise ProtocolError(502, f"binary code is not a base64 zip: {e}")
        sys.path.insert(0, where)
        path = os.path.join(where, "__main__.py")
        with open(path, encoding="utf-8") as f:
            return f.read(), path

    def run(self, body):
        """Run one activation; return the action's dict or raise ProtocolError."""
        if self.main is None:
            raise ProtocolError(403, "the action is not initialized (POST /init first)")
        args = body.get("value", {})
        if not isinstance(args, dict):
            raise ProtocolError(400, "/run: 'value' must be an object")
        for key, val in body.items():
            if key != "value" and isinstance(val, str):
                os.environ["__OW_" + key.upper()] = val
        self.runs += 1
        try:
            result = self.main(args)
        except BaseException as e:  # an action's sys.exit() must not end the container
            if isinstance(e, KeyboardInterrupt):
                raise
            traceback.print_exc()
            raise ProtocolError(502, f"the action raised {type(e).__name__}: {e}")
        if not isinstance(result, dict):
            raise ProtocolError(502, f"the action did not return a dictionary (got {type(result).__name__})")
        try:
            return json.dumps(result).encode("utf-8")
        except (TypeError, ValueError) as e:
            raise ProtocolError(502, f"the action's result is not JSON: {e}")


class Handler(http.server.BaseHTTPRequestHandler):
    """One HTTP request; the server's `action` and `max_body` are shared by all of them."""

    protocol_version = "HTTP/1.1"
    server_version = "faascache-actionproxy/1"

    def setup(self):
        self.timeout = self.server.idle_timeout
        super().setup()

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("actionproxy: " + (fmt % args) + "\n")

    def send_error(self, code, message=None, explain=None):
        """http.server's own refusals (bad request line, headers too long, unknown method) as JSON."""
        self.close_connection = True
        try:
            self.send_json(code, {"error": message or self.responses.get(code, ("error",))[0]})
        except OSError:
            pass

    def send_json(self, status, payload):
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def read_json(self):
        """The request's body as a JSON object, within the size bound."""
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            raise ProtocolError(411, "chunked bodies are not accepted; send Content-Length")
        length = self.headers.get("Content-Length")
        if length is None:
            self.close_connection = True
            raise ProtocolError(411, "Content-Length required")
        try:
            n = int(length)
            if n < 0:
                raise ValueError
        except ValueError:
            self.close_connection = True
            raise ProtocolError(400, f"bad Content-Length: {length!r}")
        if n > self.server.max_body:
            self.close_connection = True  # unread: the rest of the stream is garbage
            raise ProtocolError(413, f"body of {n} bytes is over the limit of {self.server.max_body}")
        raw = self.rfile.read(n)
        if len(raw) < n:
            self.close_connection = True
            raise ProtocolError(400, "body shorter than its Content-Length")
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise ProtocolError(400, f"malformed JSON: {e}")
        if not isinstance(body, dict):
            raise ProtocolError(400, "the body must be a JSON object")
        return body

    def do_POST(self):
        if not self.server.keep_alive:
            self.close_connection = True
        try:
            if self.path not in ("/init", "/run"):
                self.close_connection = True
                raise ProtocolError(404, f"no such path: {self.path}")
            body = self.read_json()
            if self.path == "/init":
                if "value" not in body:
                    raise ProtocolError(400, "/init: missing 'value'")
                self.server.action.init(body["value"])
                self.send_json(200, {"ok": True})
            else:
                t0 = time.perf_counter()
                out = self.server.action.run(body)
                if self.server.verbose:
                    sys.stderr.write(f"actionproxy: run {body.get('activation_id', '?')} in "
                                     f"{(time.perf_counter() - t0) * 1000:.1f} ms\n")
                self.send_json(200, out)
        except ProtocolError as e:
            self.send_json(e.status, {"error": e.message})
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception as e:  # a bug of ours: answer, log, keep serving
            traceback.print_exc()
            self.close_connection = True
            try:
                self.send_json(500, {"error": f"proxy error: {type(e).__name__}: {e}"})
            except OSError:
                pass

    def _refuse(self):
        self.close_connection = True
        self.send_json(405, {"error": f"method {self.command} not allowed; POST /init or /run"})

    do_GET = do_PUT = do_DELETE = do_PATCH = do_HEAD = _refuse


class Server(http.server.HTTPServer):
    """Single-threaded: requests are served one at a time, in order."""

    allow_reuse_address = True

    def __init__(self, addr, max_body, idle_timeout, verbose, keep_alive=False):
        super().__init__(addr, Handler)
        self.keep_alive = keep_alive
        self.action = Action()
        self.max_body = max_body
        self.idle_timeout = idle_timeout
        self.verbose = verbose

    def handle_error(self, request, client_address):
        # A connection reset or a timeout mid-request: logged, never fatal.
        sys.stderr.write(f"actionproxy: error serving {client_address}: {sys.exc_info()[1]!r}\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=8080, help="0 picks a free port (printed)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--max-body", type=int, default=64 * MIB, help="bytes (default 64 MiB)")
    ap.add_argument("--idle-timeout", type=float, default=60.0,
                    help="seconds a connection may stay idle or stall mid-request (default 60)")
    ap.add_argument("--keep-alive", action="store_true",
                    help="keep connections open between requests (one client connection at a time)")
    ap.add_argument("--verbose", action="store_true", help="log every request to stderr")
    opts = ap.parse_args()

    sys.path.insert(0, FUNCTIONS)
    server = Server((opts.host, opts.port), opts.max_body, opts.idle_timeout, opts.verbose, opts.keep_alive)
    host, port = server.server_address[:2]
    sys.stdout.write(f"actionproxy listening on {host}:{port}\n")
    sys.stdout.flush()
    # See the module's doc: stdout carries that one line only (fd 1 too, for C extensions).
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
