"""A database restarted under a steady POST /payroll load.

postgresMono and postgresMicro (the dev-env clusters) are each stopped mid
load, kept down for a few seconds, and started again, while the services
keep running: no service is restarted.

- postgresMono down: mailer-real answers 503 with Retry-After (and /readyz
  503), never hangs; once the cluster is back it answers 201 again by
  itself, and every 201 has its rows and one delivered message. mailer-real
  runs the default delivery (4 workers, 200 mails a session) under 8
  posting threads: a worker stops its session once an outcome cannot be
  recorded, so at most DELIVERY_WORKERS x 8 mails go twice (same
  Message-Id), whatever the session size.
- postgresMicro down: mailer-spy answers 503 with Retry-After while
  mailer-real keeps answering 201 to every payroll; the spy records again
  once the cluster is back, and the reconciler reports exactly the records
  the spy could not write as missing in micro.
"""
import time
import unittest

import harness
from fault_tools import DEFAULT_DELIVERY, Ledger, Load, Stack, count, have, pg_is_up, pg_start, pg_stop
from test_faults_mailer import reconciler_missing


@unittest.skipUnless(have("mailer-real"), "mailer-real not built")
class DatabaseRestart(unittest.TestCase):
    runs_alone = True   # takes a cluster down: tests/run runs it by itself

    def setUp(self):
        self.stack = Stack(self._testMethodName, real_env=DEFAULT_DELIVERY)
        self.addCleanup(self.stack.close)
        self.stack.start()

    def ensure_up(self, which, url):
        if not pg_is_up(url):
            pg_start(which)

    def test_restart_postgres_mono_mid_load(self):
        st = self.stack
        self.addCleanup(self.ensure_up, "mono", harness.MONO_URL)
        load = Load(st.real.port, rate=80, workers=8).start()
        load.wait_count(40)
        pg_stop("mono")
        mark = len(load.results)
        try:
            harness.wait_for(lambda: any(r.status == 503 for r in load.results[mark:]),
                             30, what="a 503 from mailer-real while postgresMono is down")
            # /readyz answers from a state refreshed once a second
            harness.wait_for(lambda: st.real.request("GET", "/readyz")[0] == 503, 15,
                             what="/readyz 503 while postgresMono is down")
            load.wait_count(len(load.results) + 60)
        finally:
            pg_start("mono")
        back = len(load.results)
        harness.wait_for(lambda: any(r.status == 201 for r in load.results[back:]),
                         30, what="mailer-real answering 201 again without a restart")
        load.wait_count(len(load.results) + 40)
        load.stop()
        self.assertIsNone(st.real.proc.poll(), "mailer-real exited")
        led = Ledger(self, "postgresMono stopped mid-load, started again (4 workers, 8 clients)",
                     st.dbs.mono, st.smtp)
        led.check_rows(load)
        statuses = load.by_status()
        self.assertLessEqual(set(statuses), {201, 503}, f"unexpected answers: {statuses}")
        for r in load.results:
            if r.status == 503:
                self.assertIn("retry-after", r.headers, "503 without Retry-After")
                self.assertIn(b"error", r.body)
        harness.wait_for(lambda: st.real.request("GET", "/readyz")[0] == 200, 15,
                         what="/readyz 200 once postgresMono is back")
        led.wait_delivered(timeout=120)
        # A delivery worker whose outcomes cannot be recorded while
        # postgresMono is away stops its session: at most 8 mails it had
        # sent go again (at least once, same Message-Id), as after a crash.
        led.check_mail(max_dup_batch=int(DEFAULT_DELIVERY["DELIVERY_WORKERS"]) * 8)
        led.note(answered_503=statuses.get(503, 0))
        led.record()

    @unittest.skipUnless(have("mailer-spy"), "mailer-spy not built")
    def test_restart_postgres_micro_mid_load(self):
        st = self.stack
        self.addCleanup(self.ensure_up, "micro", harness.MICRO_URL)
        load = Load(st.real.port, rate=40).start()
        load.wait_count(40)
        pg_stop("micro")
        spy_503 = 0
        try:
            def spy_down():
                s, h, b = st.spy.request("POST", "/notifications", {
                    "correlationId": "0b5d3c52-8a55-4b0e-9f3e-%012d" % int(time.time() * 1000 % 1e12),
                    "payrollId": 1, "shipTo": "probe", "total": 1.00})
                if s == 503:
                    self.assertIn("retry-after", h, "503 without Retry-After")
                    return True
                return False
            harness.wait_for(spy_down, 30, interval=0.2, what="a 503 from mailer-spy")
            spy_503 += 1
            harness.wait_for(lambda: st.spy.request("GET", "/readyz")[0] == 503, 15,
                             what="spy /readyz 503 while postgresMicro is down")
            load.wait_count(len(load.results) + 60)
        finally:
            pg_start("micro")
        harness.wait_for(lambda: st.spy.request("GET", "/readyz")[0] == 200, 30,
                         interval=0.2, what="spy ready again")
        before = count(st.dbs.micro, "spied_mail")
        load.wait_count(len(load.results) + 40)
        load.stop()
        self.assertIsNone(st.spy.proc.poll(), "mailer-spy exited")
        led = Ledger(self, "postgresMicro stopped mid-load, started again", st.dbs.mono, st.smtp)
        led.check_rows(load)
        self.assertEqual(load.by_status(), {201: len(load.results)},
                         "postgresMicro down changed mailer-real's answers")
        led.wait_delivered(timeout=120)
        led.check_mail()
        after = st.spied_settled()
        self.assertGreater(after, before, "the spy records nothing after postgresMicro came back")
        mono = {r[0] for r in harness.query(st.dbs.mono, "select correlation_id::text from sent_mail")}
        micro = {r[0] for r in harness.query(st.dbs.micro, "select correlation_id::text from spied_mail")}
        lost = mono - micro
        self.assertTrue(lost, "no spy record was lost while postgresMicro was down")
        led.note(spy_records=len(micro), spy_lost=len(lost), spy_answered_503=spy_503)
        if have("reconciler"):
            p = st.reconciler("run", "--grace", "0")
            self.assertEqual(p.returncode, 1, f"reconciler: {p.stdout}\n{p.stderr}")
            self.assertEqual(reconciler_missing(st.dbs.mono, "micro"), lost)
            led.note(reconciler_missing_in_micro=len(lost))
        led.record()


if __name__ == "__main__":
    unittest.main()
