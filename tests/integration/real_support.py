"""Support for the mailer-real integration tests (test_real*.py).

CaptureSMTP is a real SMTP server (aiosmtpd, in this process, on loopback)
that keeps every message exactly as it arrived on the wire (CRLF and all)
with its envelope and session facts (TLS, AUTH, which connection), and can
answer 5xx (or 4xx) to chosen recipients, leave 8BITMIME out of its EHLO,
and be slow at EHLO or DATA. SlowHTTP is a real HTTP server that
answers POST /notifications after a delay (or with a chosen status), to
play a slow, failing or recording mailer-spy.
"""
import asyncio
import http.server
import json
import os
import subprocess
import threading
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

import harness


class _Handler:
    def __init__(self, owner):
        self.owner = owner

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        if self.owner.ehlo_delay:
            await asyncio.sleep(self.owner.ehlo_delay)
        if self.owner.no_8bitmime:
            responses = [r for r in responses if "8BITMIME" not in r]
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.owner.reject:
            with self.owner.lock:
                self.owner.refusals.append((address, time.time()))
            return self.owner.reject[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        t = time.time()
        with self.owner.lock:
            self.owner.data_started += 1
        if self.owner.data_delay:
            await asyncio.sleep(self.owner.data_delay)
        with self.owner.lock:
            self.owner.messages.append({
                "raw": envelope.original_content,
                "mail_from": envelope.mail_from,
                "mail_options": list(envelope.mail_options),
                "rcpt_tos": list(envelope.rcpt_tos),
                "tls": session.ssl is not None,
                "authenticated": bool(session.authenticated),
                "peer": session.peer,
                "t_data": t,
            })
        return "250 OK queued"


class CaptureSMTP:
    def __init__(self, port=None, reject=None, tls_context=None,
                 require_starttls=False, users=None, no_8bitmime=False,
                 ehlo_delay=0.0, data_delay=0.0):
        self.port = port or harness.free_port()
        self.reject = dict(reject or {})
        self.no_8bitmime = no_8bitmime
        self.ehlo_delay = ehlo_delay
        self.data_delay = data_delay
        self.messages = []
        self.refusals = []
        self.data_started = 0
        self.lock = threading.Lock()
        kwargs = {}
        if tls_context is not None:
            kwargs["tls_context"] = tls_context
            kwargs["require_starttls"] = require_starttls
        if users is not None:
            def authenticator(server, session, envelope, mechanism, auth_data):
                ok = (getattr(auth_data, "login", None) is not None and
                      users.get(auth_data.login.decode()) == auth_data.password.decode())
                return AuthResult(success=ok)
            kwargs["authenticator"] = authenticator
            kwargs["auth_require_tls"] = False
            kwargs["auth_required"] = True
        self.controller = Controller(_Handler(self), hostname="127.0.0.1",
                                     port=self.port, **kwargs)

    def start(self):
        self.controller.start()
        return self

    def stop(self):
        self.controller.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def snapshot(self):
        with self.lock:
            return list(self.messages)

    def by_message_id(self, correlation_id):
        tag = f"<{correlation_id}@".encode()
        return [m for m in self.snapshot() if tag in m["raw"].split(b"\r\n\r\n", 1)[0]]


def split_message(raw):
    head, _, body = raw.partition(b"\r\n\r\n")
    headers = {}
    for line in head.split(b"\r\n"):
        if b":" in line and not line[:1].isspace():
            k, _, v = line.partition(b":")
            headers[k.decode().lower()] = v.strip().decode()
    return headers, body


def self_signed_cert(directory, name="localhost"):
    """A certificate and key for `name` (openssl CLI), returns (cert, key)."""
    cert = os.path.join(directory, "cert.pem")
    key = os.path.join(directory, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                    "-keyout", key, "-out", cert, "-days", "2", "-subj", f"/CN={name}",
                    "-addext", f"subjectAltName=DNS:{name}"],
                   check=True, capture_output=True)
    return cert, key


class SlowHTTP:
    """POST /notifications: waits `delay` seconds (with held=True: until
    the test calls release()), then answers `status` with the spy's shape
    (destination computed by the test's `answer`)."""

    def __init__(self, delay=0.0, status=201, answer=None, held=False):
        self.port = harness.free_port()
        self.delay = delay
        self.released = threading.Event()
        if not held:
            self.released.set()
        self.status = status
        self.answer = answer
        self.requests = []
        owner = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                owner.requests.append({"path": self.path, "headers": dict(self.headers),
                                       "body": body})
                time.sleep(owner.delay)
                owner.released.wait(300)
                payload = b"{}"
                if owner.answer is not None:
                    payload = json.dumps(owner.answer(json.loads(body))).encode()
                try:
                    self.send_response(owner.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass

            def log_message(self, *a):
                pass

        self.server = harness.StubHTTPServer(("127.0.0.1", self.port), H)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def release(self):
        self.released.set()

    def __exit__(self, *exc):
        self.released.set()
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"


def closed_port():
    """A loopback port nobody listens on (bound then released)."""
    return harness.free_port()


def metric(port, name, labels):
    """Value of one metric series from GET /metrics (0 when absent)."""
    st, _, body = harness.request(port, "GET", "/metrics")
    assert st == 200
    want = f"{name}{{{labels}}} " if labels else f"{name} "
    for line in body.decode().splitlines():
        if line.startswith(want):
            return float(line.split()[-1])
    return 0.0


def reset_outbox():
    """Leaves no pending row behind from an earlier test: a worker would
    otherwise deliver it to this test's SMTP server."""
    harness.execute(harness.MONO_URL,
                    "update sent_mail set status = 'failed', last_error = 'reset by test' "
                    "where status = 'pending'")
    # and no unacknowledged delegated row: a NOTIFIER=remote mailer-real
    # would hand it to this test's spy again
    harness.execute(harness.MONO_URL,
                    "update sent_mail set handed_off_at = now() "
                    "where status = 'delegated' and handed_off_at is null")


def mono_env(smtp_port, **extra):
    env = {
        "MONO_DATABASE_URL": harness.MONO_URL,
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(smtp_port),
        "NOTIFIER": "smtp",
        "DELIVERY_POLL_MS": "100",
        "DELIVERY_RETRY_BASE_MS": "100",
        "DELIVERY_RETRY_MAX_MS": "400",
        "SMTP_TIMEOUT_S": "5",
    }
    env.update({k: str(v) for k, v in extra.items()})
    return env


def spy_available():
    return os.access(os.path.join(harness.BIN_DIR, "mailer-spy"), os.X_OK)
