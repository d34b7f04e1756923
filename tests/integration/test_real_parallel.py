"""mailer-real's Parallel Run hand-off to mailer-spy and the online experiment.

Covers: the wire of POST /notifications (JSON shape, total 320.00, Bearer
token); a dead spy, a spy answering after 5 s and a spy answering 503
never change the payroll's 201 (answered within the client's timeout) and
each is counted in /metrics; so do a full queue (DISPATCH_QUEUE=1 behind a
slow spy: the overflow is dropped and counted as queue_full), a 401, an
answer that is not the spy's record, and a connection closed without an
answer (http_4xx, bad_answer, error; each a candidate error); deterministic sampling by the correlation
id's hash (0 %, 50 %: the same payrolls as the FNV-1a rule says);
NOTIFIER=smtp hands nothing over; NOTIFIER=remote records 'delegated',
sends nothing itself and hands over; a spy answering a different subject
is a mismatch counted by field and logged with its correlation id; with the
real mailer-spy binary, postgresMono and postgresMicro hold the same
destination, subject and body under one correlation id and the experiment
counts a match. The dispatcher thread runs SCHED_IDLE in NOTIFIER=parallel
until its queue is over half full, and never in NOTIFIER=remote.
"""
import json
import os
import socket
import threading
import time
import unittest

import harness
from harness import Service, query, wait_for, MONO_URL, MICRO_URL
from real_support import (CaptureSMTP, SlowHTTP, closed_port, metric, mono_env,
                          reset_outbox, spy_available)

DISPATCH = "parallel_run_dispatch_total"
EXP = "experiment_runs_total"


def fnv1a(s):
    h = 0xcbf29ce484222325
    for b in s.encode():
        h ^= b
        h = (h * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def canonical(req):
    """The spy's answer for a plain ASCII name (what mailer-spy would record)."""
    ship, pid = req["shipTo"], req["payrollId"]
    return {"correlationId": req["correlationId"],
            "destination": ship.lower().replace(" ", ".") + "@example.com",
            "subject": f"Payroll {pid} shipped",
            "body": f"Hello {ship},\r\n\r\nPayroll {pid} shipped to {ship} of "
                    f"{req['total']:.2f}.\r\n"}


def post(svc, ship, total=320, timeout=10):
    st, _, data = svc.request("POST", "/payroll", {"shipTo": ship, "total": total},
                              timeout=timeout)
    assert st == 201, (st, data)
    return json.loads(data)


class RealParallelTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.smtp = CaptureSMTP().start()

    @classmethod
    def tearDownClass(cls):
        cls.smtp.stop()

    def setUp(self):
        reset_outbox()

    def tearDown(self):
        reset_outbox()

    def env(self, **kw):
        # the stubs answer at once, but a loaded machine can take seconds to
        # run their Python: a dispatch timeout must be a test's intent
        # (test_slow_spy sets its own), never the machine's load
        base = {"NOTIFIER": "parallel", "SPY_TIMEOUT_MS": "30000"}
        base.update(kw)
        return mono_env(self.smtp.port, **base)

    def test_wire_and_token_and_mismatch(self):
        def wrong_subject(req):
            return {"correlationId": req["correlationId"],
                    "destination": "juablaz@example.com",
                    "subject": "Payroll shipped!",
                    "body": f"Hello Juablaz,\r\n\r\nPayroll {req['payrollId']} shipped to "
                            f"Juablaz of 320.00.\r\n"}
        with SlowHTTP(answer=wrong_subject) as spy, \
                Service("mailer-real", env=self.env(SPY_URL=spy.url, SPY_TOKEN="t0ken"),
                        log_name="real-par-wire") as svc:
            doc = post(svc, "Juablaz")
            cid = doc["notification"]["correlationId"]
            wait_for(lambda: metric(svc.port, EXP, 'experiment="mail-render",result="mismatched"') >= 1,
                     what="mismatch counted")
            self.assertEqual(len(spy.requests), 1)
            r = spy.requests[0]
            self.assertEqual(r["path"], "/notifications")
            self.assertEqual(r["headers"]["Authorization"], "Bearer t0ken")
            self.assertEqual(r["headers"]["Content-Type"], "application/json")
            self.assertIn(b'"total":320.00', r["body"])
            self.assertEqual(json.loads(r["body"]), {"correlationId": cid, "payrollId": doc["id"],
                                                     "shipTo": "Juablaz", "total": 320})
            self.assertEqual(metric(svc.port, "experiment_mismatch_fields_total",
                                    'experiment="mail-render",field="subject"'), 1)
            self.assertEqual(metric(svc.port, "experiment_mismatch_fields_total",
                                    'experiment="mail-render",field="body"'), 0)
            self.assertEqual(metric(svc.port, DISPATCH, 'outcome="ok"'), 1)
            wait_for(lambda: cid in svc.log_text() and "mismatch" in svc.log_text(),
                     what="mismatch logged")
            # the mail itself went out as the legacy renderer said
            wait_for(lambda: self.smtp.by_message_id(cid), what="mail delivered")

    def test_dead_spy(self):
        env = self.env(SPY_URL=f"http://127.0.0.1:{closed_port()}")
        with Service("mailer-real", env=env, log_name="real-par-dead") as svc:
            for i in range(3):
                post(svc, f"Dead Spy {chr(65 + i)}", timeout=3)
            wait_for(lambda: metric(svc.port, DISPATCH, 'outcome="connect_error"') == 3,
                     what="connect errors counted")
            wait_for(lambda: metric(svc.port, EXP, 'experiment="mail-render",result="candidate_error"') == 3,
                     what="candidate errors counted")

    def test_slow_spy(self):
        with SlowHTTP(delay=5) as spy, \
                Service("mailer-real", env=self.env(SPY_URL=spy.url, SPY_TIMEOUT_MS="500"),
                        log_name="real-par-slow") as svc:
            for i in range(3):
                post(svc, f"Slow Spy {chr(65 + i)}", timeout=3)
            wait_for(lambda: metric(svc.port, DISPATCH, 'outcome="timeout"') == 3,
                     what="timeouts counted")

    def test_spy_5xx(self):
        with SlowHTTP(status=503) as spy, \
                Service("mailer-real", env=self.env(SPY_URL=spy.url),
                        log_name="real-par-5xx") as svc:
            post(svc, "Five Hundred", timeout=3)
            wait_for(lambda: metric(svc.port, DISPATCH, 'outcome="http_5xx"') == 1,
                     what="5xx counted")

    def test_sampling_is_deterministic(self):
        with SlowHTTP(status=503) as spy, \
                Service("mailer-real", env=self.env(SPY_URL=spy.url, PARALLEL_RUN_PERCENT=50),
                        log_name="real-par-sample") as svc:
            cids = [post(svc, f"Sample {i}")["notification"]["correlationId"] for i in range(40)]
            want = sorted(c for c in cids if fnv1a(c) % 100 < 50)
            self.assertTrue(0 < len(want) < 40)
            wait_for(lambda: len(spy.requests) == len(want), what="sampled requests",
                     timeout=60)
            time.sleep(0.3)
            got = sorted(json.loads(r["body"])["correlationId"] for r in spy.requests)
            self.assertEqual(got, want)
            self.assertEqual(metric(svc.port, DISPATCH, 'outcome="not_sampled"'), 40 - len(want))
        with SlowHTTP(status=503) as spy, \
                Service("mailer-real", env=self.env(SPY_URL=spy.url, PARALLEL_RUN_PERCENT=0),
                        log_name="real-par-zero") as svc:
            post(svc, "Sample None")
            time.sleep(0.5)
            self.assertEqual(spy.requests, [])

    def test_notifier_smtp_hands_nothing_over(self):
        with SlowHTTP(status=503) as spy, \
                Service("mailer-real", env=self.env(SPY_URL=spy.url, NOTIFIER="smtp"),
                        log_name="real-par-smtp") as svc:
            cid = post(svc, "Only Smtp")["notification"]["correlationId"]
            wait_for(lambda: self.smtp.by_message_id(cid), what="mail delivered")
            time.sleep(0.3)
            self.assertEqual(spy.requests, [])

    def test_notifier_remote_delegates(self):
        with SlowHTTP(status=503) as spy, \
                Service("mailer-real", env=self.env(SPY_URL=spy.url, NOTIFIER="remote",
                                                    PARALLEL_RUN_PERCENT=0),
                        log_name="real-par-remote") as svc:
            doc = post(svc, "Remote Mode")
            cid = doc["notification"]["correlationId"]
            self.assertEqual(doc["notification"]["status"], "delegated")
            wait_for(lambda: len(spy.requests) == 1, what="handed over")
            time.sleep(0.5)
            self.assertEqual(self.smtp.by_message_id(cid), [])
            rows = query(MONO_URL, "select status, destination, subject from sent_mail "
                                   "where correlation_id = %s", (cid,))
            self.assertEqual(rows, [("delegated", "remote.mode@example.com",
                                     f"Payroll {doc['id']} shipped")])

    def test_full_queue_drops_and_counts(self):
        n = 10
        # The spy holds every request until the ten posts have landed and
        # the counter is read (a fixed delay raced the posts on a loaded
        # machine: the first answer came back and the queue had room again).
        with SlowHTTP(held=True, answer=canonical) as spy, \
                Service("mailer-real", env=self.env(SPY_URL=spy.url, SPY_TIMEOUT_MS="300000",
                                                    DISPATCH_QUEUE=1, DISPATCH_INFLIGHT=1),
                        log_name="real-par-full") as svc:
            for i in range(n):
                post(svc, f"Full Queue {chr(65 + i)}", timeout=3)

            def accounted():
                # The committer hands a payroll over while it answers the
                # batch: the last 201 can arrive before its hand-off is
                # counted (seen: 7 counted, 8 a moment later). Read when
                # every payroll is in flight, queued or dropped.
                _, _, text = harness.request(svc.port, "GET", "/metrics")
                v = {l.split()[0]: float(l.split()[-1]) for l in text.decode().splitlines()
                     if l.startswith("parallel_run_")}
                full = v.get(DISPATCH + '{outcome="queue_full"}', 0.0)
                held = v.get("parallel_run_queue_depth", 0.0) + v.get("parallel_run_inflight", 0.0)
                return full if full + held == n else None
            full = wait_for(accounted,  # full >= n - 2 > 0 once accounted
                            what="every payroll's hand-off accounted for")
            # one in flight, one waiting: the rest overflow (one more may
            # overflow when the dispatcher had not yet taken the first)
            # On failure, every dispatch outcome so far says which one left
            # room in the queue (seen once under load: 7 overflowed).
            _, _, mtext = harness.request(svc.port, "GET", "/metrics")
            self.assertIn(full, (n - 2, n - 1), "queue_full; " + "; ".join(
                l for l in mtext.decode().splitlines() if l.startswith(("parallel_run_", "experiment_"))))
            spy.release()
            wait_for(lambda: len(spy.requests) == n - full, timeout=60, what="the queued ones sent")
            wait_for(lambda: metric(svc.port, DISPATCH, 'outcome="ok"') == n - full, timeout=60,
                     what="their answers")
            # The comparison is counted after the answer's outcome: wait
            # for it too, never read it before it settles.
            wait_for(lambda: metric(svc.port, EXP, 'experiment="mail-render",result="matched"')
                     == n - full, timeout=60, what="the comparisons of the answers")
            self.assertIn("queue full", svc.log_text())

    def test_dispatcher_yields_the_cores_until_its_queue_fills(self):
        """NOTIFIER=parallel: the dispatcher thread runs SCHED_IDLE (any
        thread of the request path takes the core from it at once), competes
        as usual while its queue is over half full, and yields again once
        the queue drained."""
        gate = threading.Event()

        def held(req):
            gate.wait(60)
            return canonical(req)

        def idle_threads(pid):
            n = 0
            for tid in os.listdir(f"/proc/{pid}/task"):
                try:
                    with open(f"/proc/{pid}/task/{tid}/stat") as f:
                        st = f.read()
                except FileNotFoundError:
                    continue
                fields = st[st.rindex(")") + 2:].split()
                n += fields[38] == "5"  # field 41, policy: 5 is SCHED_IDLE
            return n

        try:
            with SlowHTTP(answer=held) as spy, \
                    Service("mailer-real", env=self.env(SPY_URL=spy.url, SPY_TIMEOUT_MS="60000",
                                                        DISPATCH_QUEUE=4, DISPATCH_INFLIGHT=1),
                            log_name="real-par-idle") as svc:
                pid = svc.proc.pid
                wait_for(lambda: idle_threads(pid) == 1, what="the dispatcher in SCHED_IDLE")
                for i in range(4):
                    post(svc, f"Idle Class {chr(65 + i)}", timeout=10)
                # one held by the spy, three queued: over half of 4
                wait_for(lambda: len(spy.requests) == 1, what="the first hand-off sent")
                wait_for(lambda: idle_threads(pid) == 0, what="the dispatcher back in SCHED_OTHER")
                gate.set()
                wait_for(lambda: metric(svc.port, DISPATCH, 'outcome="ok"') == 4, timeout=60,
                         what="every hand-off answered")
                self.assertEqual(metric(svc.port, DISPATCH, 'outcome="queue_full"'), 0)
                wait_for(lambda: idle_threads(pid) == 1, what="the dispatcher in SCHED_IDLE again")
        finally:
            gate.set()
        # the hand-off that is the mail (NOTIFIER=remote) never yields
        with SlowHTTP(answer=canonical) as spy, \
                Service("mailer-real", env=self.env(NOTIFIER="remote", SPY_URL=spy.url),
                        log_name="real-par-idle-remote") as svc:
            post(svc, "Remote Class", timeout=10)
            wait_for(lambda: metric(svc.port, DISPATCH, 'outcome="ok"') == 1,
                     what="the remote hand-off")
            self.assertEqual(idle_threads(svc.proc.pid), 0)

    def check_answer_outcome(self, spy_port, outcome, log_name):
        env = self.env(SPY_URL=f"http://127.0.0.1:{spy_port}")
        with Service("mailer-real", env=env, log_name=log_name) as svc:
            doc = post(svc, f"Outcome {outcome.replace('_', ' ')}", timeout=3)
            wait_for(lambda: metric(svc.port, DISPATCH, f'outcome="{outcome}"') == 1,
                     what=f"{outcome} counted")
            wait_for(lambda: metric(svc.port, EXP, 'experiment="mail-render",result="candidate_error"') == 1,
                     what="a candidate error")
            self.assertEqual(metric(svc.port, EXP, 'experiment="mail-render",result="matched"'), 0)
            st, _, data = svc.request("GET", f"/payroll/{doc['id']}")
            self.assertEqual(st, 200)

    def test_spy_4xx_bad_answer_and_no_answer_are_counted(self):
        with SlowHTTP(status=401) as spy:
            self.check_answer_outcome(spy.port, "http_4xx", "real-par-4xx")
        with SlowHTTP(answer=lambda req: {"correlationId": req["correlationId"], "ok": True}) as spy:
            self.check_answer_outcome(spy.port, "bad_answer", "real-par-bad")
        with SlowHTTP(answer=lambda req: {"correlationId": "00000000-0000-4000-8000-000000000000",
                                          "destination": "x@example.com", "subject": "s",
                                          "body": "b"}) as spy:
            self.check_answer_outcome(spy.port, "bad_answer", "real-par-othercid")
        # a server that reads the request and closes without a word
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(8)
        stop = threading.Event()

        def mute():
            srv.settimeout(0.2)
            while not stop.is_set():
                try:
                    c, _ = srv.accept()
                except OSError:
                    continue
                c.settimeout(2)
                try:
                    c.recv(65536)
                except OSError:
                    pass
                c.close()
        t = threading.Thread(target=mute, daemon=True)
        t.start()
        try:
            self.check_answer_outcome(srv.getsockname()[1], "error", "real-par-mute")
        finally:
            stop.set()
            t.join()
            srv.close()

    @unittest.skipUnless(spy_available(), "mailer-spy is not built yet")
    def test_with_real_spy_both_stores_agree(self):
        spy = Service("mailer-spy", env={"MICRO_DATABASE_URL": MICRO_URL, "SPY_TOKEN": "tk"},
                      log_name="real-par-spy").start()
        try:
            env = self.env(SPY_URL=f"http://127.0.0.1:{spy.port}", SPY_TOKEN="tk")
            with Service("mailer-real", env=env, log_name="real-par-realspy") as svc:
                cids = [post(svc, ship, total)["notification"]["correlationId"]
                        for ship, total in (("Juablaz", 320), ("José Núñez", 1500.75),
                                            ("ana.lopez@Example.COM", 0.5))]
                wait_for(lambda: metric(svc.port, EXP, 'experiment="mail-render",result="matched"') == 3,
                         what="three matches")
                for cid in cids:
                    mono = query(MONO_URL, "select destination, subject, body from sent_mail "
                                           "where correlation_id = %s", (cid,))
                    micro = query(MICRO_URL, "select destination, subject, body from spied_mail "
                                             "where correlation_id = %s", (cid,))
                    self.assertEqual(len(mono), 1)
                    self.assertEqual(mono, micro)
                self.assertEqual(metric(svc.port, EXP, 'experiment="mail-render",result="mismatched"'), 0)
        finally:
            spy.stop()


if __name__ == "__main__":
    unittest.main()
