"""Shared helpers for the integration tests.

The tests drive the real programs (BIN_DIR, set by tests/run) on loopback
against the dev environment (scripts/dev-env): real PostgreSQL, real SMTP,
real HTTP. Nothing here stands in for a part users run.
"""
import email
import email.policy
import http.client
import http.server
import json
import os
import select
import signal
import socket
import subprocess
import threading
import time

import psycopg2

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN_DIR = os.environ.get("BIN_DIR", os.path.join(TOP, "build", "bin"))
LOG_DIR = os.environ.get("TEST_LOG_DIR", os.path.join(TOP, "build", "test-logs"))
MONO_URL = os.environ.get("MONO_DATABASE_URL", "postgresql://postgres@127.0.0.1:5433/mono")
MICRO_URL = os.environ.get("MICRO_DATABASE_URL", "postgresql://postgres@127.0.0.1:5434/micro")
SMTP_PORT = int(os.environ.get("SMTP_PORT", "2525"))
MAILDIR = os.environ.get("DEV_MAILDIR", os.path.join(TOP, ".dev", "mail"))


# Listening ports come from below the kernel's ephemeral range
# (ip_local_port_range, 32768-60999 by default), so that no outgoing
# connection of another test, a PostgreSQL client or an SMTP session, can
# take a port between the moment it is chosen here and the moment the
# service binds it (a port 0 bind picks from the ephemeral range, where
# that race made a service exit 1 in CI). Each slot of tests/run -j
# (TEST_SLOT) has its own block, so two workers never hand out the same
# port; within a block the ports go round from a per-process offset.
PORT_BLOCK = 1500
PORT_BASE = 17000
_port_next = [None]


class StubHTTPServer(http.server.ThreadingHTTPServer):
    """The tests' stand-in HTTP servers (threads are daemons). socketserver's
    listen backlog is 5: a mailer-real dispatching 20 requests at once to a
    stub the loaded machine does not accept from quickly enough overflows
    it, the kernel drops the handshakes, and the client's timeout ends
    requests that never arrived (seen as a flaky count of requests in CI)."""
    request_queue_size = 1024
    daemon_threads = True


def free_port():
    slot = int(os.environ.get("TEST_SLOT", "0"))
    lo = PORT_BASE + slot * PORT_BLOCK
    if _port_next[0] is None:
        _port_next[0] = os.getpid() % PORT_BLOCK
    for _ in range(PORT_BLOCK):
        port = lo + _port_next[0]
        _port_next[0] = (_port_next[0] + 1) % PORT_BLOCK
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))     # no SO_REUSEADDR: skips TIME_WAIT ports too
        except OSError:
            continue
        finally:
            s.close()
        return port
    raise RuntimeError(f"no free port in {lo}-{lo + PORT_BLOCK - 1}")


def db(url):
    conn = psycopg2.connect(url)
    conn.autocommit = True
    return conn


# query() and execute() keep one autocommit connection per URL for the main
# thread: a test polls row counts thousands of times, and a new PostgreSQL
# session per poll (a backend forked, its caches loaded) cost 30-40 ms of
# the two cores, most of some tests' time. Other threads (tests hold locks
# in one thread and query in another) get a session per call, as before.
_pool = {}
_pool_lock = threading.Lock()    # release() may run in another thread


def _reusable(conn):
    """An idle session has nothing to read: a readable socket means the
    server ended it (terminated, restarted, database dropped) or sent
    something unasked; either way a new one is made."""
    if conn.closed or conn.get_transaction_status() != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
        return False
    try:
        return not select.select([conn.fileno()], [], [], 0)[0]
    except (OSError, ValueError):
        return False


def _session(url):
    """(connection, its pool key or False): the main thread's pooled
    session for url, a new one elsewhere."""
    if threading.current_thread() is not threading.main_thread():
        return db(url), False
    key = (os.getpid(), url)
    with _pool_lock:
        conn = _pool.pop(key, None)
    if conn is not None and not _reusable(conn):
        conn.close()
        conn = None
    if conn is None:
        conn = db(url)
    return conn, key


def _done(conn, key, ok):
    """Back to the pool when the statement went through; closed otherwise
    (a broken session is not handed out again)."""
    if key and ok and not conn.closed:
        with _pool_lock:        # _session took it out: nothing else is there
            _pool[key] = conn
    else:
        conn.close()


def release(dbname):
    """Closes the pooled sessions on database dbname (CREATE DATABASE ...
    TEMPLATE needs a source nobody is connected to)."""
    with _pool_lock:
        gone = [_pool.pop(k) for k, c in list(_pool.items())
                if c.closed or c.info.dbname == dbname]
    for c in gone:
        c.close()


def query(url, sql, args=()):
    conn, key = _session(url)
    ok = False
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            rows = cur.fetchall() if cur.description else None
        ok = True
        return rows
    finally:
        _done(conn, key, ok)


def execute(url, sql, args=()):
    query(url, sql, args)


def request(port, method, path, body=None, headers=None, timeout=10, raw=None):
    """One HTTP request on a fresh connection; returns (status, headers, body bytes).

    body may be a dict/list (sent as JSON), str or bytes."""
    h = dict(headers or {})
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
        h.setdefault("Content-Type", "application/json")
    elif isinstance(body, str):
        body = body.encode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=h)
        r = conn.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        conn.close()


def raw_request(port, data, timeout=5):
    """Send raw bytes, return everything the server answered before closing."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            out += chunk
        return out
    finally:
        s.close()


class Service:
    """Runs one of the programs as a child process on a free port."""

    def __init__(self, name, env=None, args=(), port=None, log_name=None):
        self.name = name
        self.port = port or free_port()
        self.env = dict(os.environ)
        self.env.update({"PORT": str(self.port), "LOG_LEVEL": "debug"})
        self.env.update(env or {})
        self.args = list(args)
        os.makedirs(LOG_DIR, exist_ok=True)
        self.log_path = os.path.join(LOG_DIR, f"{log_name or name}-{self.port}.log")
        self.proc = None

    def start(self, wait=True):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([os.path.join(BIN_DIR, self.name)] + self.args,
                                     env=self.env, stdout=self.log, stderr=self.log)
        if wait:
            self.wait_healthy()
        return self

    def wait_healthy(self, timeout=15):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited {self.proc.returncode}; see {self.log_path}")
            try:
                st, _, _ = request(self.port, "GET", "/healthz", timeout=1)
                if st == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} not healthy after {timeout}s; see {self.log_path}")

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.log.close()
        return rc

    def kill(self):
        return self.stop(signal.SIGKILL)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def request(self, method, path, body=None, headers=None, timeout=10):
        return request(self.port, method, path, body, headers, timeout)

    def log_text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")


def maildir_messages(maildir=MAILDIR):
    """Every message the SMTP server stored, as email.message.EmailMessage."""
    msgs = []
    for sub in ("new", "cur"):
        d = os.path.join(maildir, sub)
        if not os.path.isdir(d):
            continue
        for n in sorted(os.listdir(d)):
            with open(os.path.join(d, n), "rb") as f:
                raw = f.read()
            m = email.message_from_bytes(raw, policy=email.policy.default)
            m.raw_bytes = raw
            msgs.append(m)
    return msgs


def clear_maildir(maildir=MAILDIR):
    for sub in ("new", "cur", "tmp"):
        d = os.path.join(maildir, sub)
        if os.path.isdir(d):
            for n in os.listdir(d):
                os.unlink(os.path.join(d, n))


def wait_for(pred, timeout=15, interval=0.05, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
