"""SIGTERM under keep-alive load: both services stop cleanly, 20 times each.

Four clients post over persistent connections (http.client, one
connection each, reused until the server closes it) while the service is
sent SIGTERM. Each time:

- the process exits 0 (no SIGABRT from libmicrohttpd over a suspended
  connection, no crash from a request served after its store was freed;
  under `make test-asan` no sanitizer report either);
- a request that arrives on a kept-alive connection after the signal is
  answered 503 with Retry-After and Connection: close (seen at least once
  over the rounds), never left without an answer it could read;
- every 201 the clients were given is recorded: mailer-real's payroll and
  sent_mail rows, mailer-spy's (SPY_MODE=live) spied_mail row; and once a
  last process has drained the outbox, each was delivered over SMTP
  exactly once... or twice at most for the handful a stop cut between the
  server's 250 and the commit of its outcome (same Message-Id).
"""
import collections
import http.client
import json
import os
import signal
import threading
import time
import unittest
import uuid

import harness
from fault_tools import ScratchDbs, have, tmpdir
from faulty_smtp import FaultySmtp

ROUNDS = 20
CLIENTS = 4


class KeepAliveClients:
    """CLIENTS threads, each posting on one persistent connection; a
    connection the server closes (or refuses) is opened again."""

    def __init__(self, port, path, body, headers=None):
        self.port, self.path, self.body = port, path, body
        self.headers = dict(headers or {}, **{"Content-Type": "application/json"})
        self.results = []       # (status, headers, body)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.n = 0
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(CLIENTS)]

    def _next(self):
        with self.lock:
            self.n += 1
            return self.n

    def _run(self):
        conn = None
        while not self.stop.is_set():
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            data = json.dumps(self.body(self._next())).encode()
            try:
                conn.request("POST", self.path, body=data, headers=self.headers)
                resp = conn.getresponse()
                body = resp.read()
                headers = {k.lower(): v for k, v in resp.getheaders()}
                with self.lock:
                    self.results.append((resp.status, headers, body))
                if headers.get("connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = None
                self.stop.wait(0.02)
        if conn is not None:
            conn.close()

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(40)

    def count(self, status):
        with self.lock:
            return sum(1 for r in self.results if r[0] == status)


class Shutdown(unittest.TestCase):
    def setUp(self):
        self.dbs = ScratchDbs()
        self.addCleanup(self.dbs.close)
        d = tmpdir(self._testMethodName)
        self.smtp = FaultySmtp(harness.free_port(), os.path.join(d, "mail"),
                               os.path.join(d, "smtp.log")).start()
        self.addCleanup(self.smtp.stop)

    def rounds(self, make_service, path, body, headers=None):
        """Runs ROUNDS SIGTERMs under load; returns every (status, headers, body)."""
        results = []
        for i in range(ROUNDS):
            svc = make_service(i)
            svc.start()
            clients = KeepAliveClients(svc.port, path, body, headers).start()
            try:
                harness.wait_for(lambda: clients.count(201) >= 10, 30,
                                 what=f"round {i}: 201s before the signal")
                svc.proc.send_signal(signal.SIGTERM)
                try:
                    rc = svc.proc.wait(40)
                except Exception:
                    svc.proc.kill()
                    raise
            finally:
                clients.finish()
                svc.stop()
            self.assertEqual(rc, 0, f"round {i}: exit {rc}; see {svc.log_path}")
            results += clients.results
        statuses = collections.Counter(r[0] for r in results)
        self.assertLessEqual(set(statuses), {201, 503}, f"answers: {statuses}")
        for st, h, b in results:
            if st == 503:
                self.assertEqual(h.get("connection", "").lower(), "close", "503 without Connection: close")
                self.assertIn("retry-after", h)
        self.assertGreater(statuses[503], 0, "no request arrived on a kept-alive connection after "
                           "a SIGTERM: the test did not exercise the drain")
        print(f"\n  {ROUNDS} SIGTERMs: answers {dict(statuses)}")
        return results

    def delivered(self):
        return collections.Counter(str(m["Message-Id"]).strip("<>") for m in self.smtp.messages())

    @unittest.skipUnless(have("mailer-real"), "mailer-real not built")
    def test_mailer_real_sigterm_under_keepalive_load(self):
        env = {"MONO_DATABASE_URL": self.dbs.mono, "NOTIFIER": "smtp", "SMTP_HOST": "127.0.0.1",
               "SMTP_PORT": str(self.smtp.port), "LOG_LEVEL": "info", "DELIVERY_POLL_MS": "100",
               "DELIVERY_RETRY_BASE_MS": "100", "DELIVERY_RETRY_MAX_MS": "500"}
        tag = uuid.uuid4().hex[:8]
        results = self.rounds(
            lambda i: harness.Service("mailer-real", env=env, log_name=f"shutdown-real-{i}"),
            "/payroll", lambda n: {"shipTo": f"Stop {tag} {n}", "total": 10 + n % 90})
        created = {json.loads(b)["notification"]["correlationId"] for st, h, b in results if st == 201}
        rows = {r[0] for r in harness.query(
            self.dbs.mono, "select m.correlation_id::text from sent_mail m join payroll p on p.id = m.payroll_id")}
        self.assertEqual(created - rows, set(), "201 answered without its rows")
        with harness.Service("mailer-real", env=env, log_name="shutdown-real-drain"):
            harness.wait_for(lambda: harness.query(
                self.dbs.mono, "select count(*) from sent_mail where status = 'pending'")[0][0] == 0,
                60, what="the outbox drained")
        got = self.delivered()
        missing = [c for c in created if got[f"{c}@example.com"] == 0]
        self.assertEqual(missing, [], "201 answered, never delivered")
        dups = sum(n - 1 for n in got.values() if n > 1)
        self.assertTrue(all(n <= 2 for n in got.values()), "a mail delivered three times")
        print(f"  mailer-real: {len(created)} created, {len(got)} delivered, {dups} duplicate(s)")

    @unittest.skipUnless(have("mailer-spy"), "mailer-spy not built")
    def test_mailer_spy_live_sigterm_under_keepalive_load(self):
        # A live spy takes requests only with its token.
        env = {"MICRO_DATABASE_URL": self.dbs.micro, "SPY_MODE": "live", "SMTP_HOST": "127.0.0.1",
               "SPY_TOKEN": "shutdown-test-token",
               "SMTP_PORT": str(self.smtp.port), "LOG_LEVEL": "info", "DELIVERY_POLL_MS": "100",
               "DELIVERY_RETRY_BASE_MS": "100", "DELIVERY_RETRY_MAX_MS": "500"}
        results = self.rounds(
            lambda i: harness.Service("mailer-spy", env=env, log_name=f"shutdown-spy-{i}"),
            "/notifications",
            lambda n: {"correlationId": str(uuid.uuid4()), "payrollId": n, "shipTo": f"Spy Stop {n}",
                       "total": 10 + n % 90},
            headers={"Authorization": "Bearer shutdown-test-token"})
        created = {json.loads(b)["correlationId"] for st, h, b in results if st == 201}
        rows = {r[0] for r in harness.query(self.dbs.micro, "select correlation_id::text from spied_mail")}
        self.assertEqual(created - rows, set(), "201 answered without its spied_mail row")
        with harness.Service("mailer-spy", env=env, log_name="shutdown-spy-drain"):
            harness.wait_for(lambda: harness.query(
                self.dbs.micro, "select count(*) from spied_mail where status = 'pending'")[0][0] == 0,
                60, what="the live outbox drained")
        got = self.delivered()
        missing = [c for c in created if got[f"{c}@example.com"] == 0]
        self.assertEqual(missing, [], "201 answered, never delivered")
        self.assertTrue(all(n <= 2 for n in got.values()), "a mail delivered three times")
        print(f"  mailer-spy live: {len(created)} created, {len(got)} delivered, "
              f"{sum(n - 1 for n in got.values() if n > 1)} duplicate(s)")


if __name__ == "__main__":
    unittest.main()
