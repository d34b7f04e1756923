"""Faults in the mail path under a steady POST /payroll load.

Each test runs mailer-spy and mailer-real (NOTIFIER=parallel) on scratch
databases with a FaultySmtp of their own, keeps a load running while the
fault happens, and ends with the invariant (fault_tools.Ledger): every 201
has its payroll row and sent_mail row and, once the fault is over, exactly
one delivered message (after a crash at most one batch of duplicates, each
carrying the same Message-Id), and no request hung.

The two crash tests run mailer-real with the default delivery settings
(4 workers, 200 mails per SMTP session) under 8 posting threads: a worker
records each outcome as the server gives it and sends a mail only while
fewer than 8 of its accepted mails wait to be recorded, so a crash sends
at most DELIVERY_WORKERS x 8 twice, whatever the session size.

- mailer-real SIGKILLed mid-load and started again: pending mail delivered.
- mailer-spy SIGKILLed mid-load: every answer of mailer-real is still 201;
  the reconciler then reports exactly the lost spy records as missing in micro.
- SMTP server down for a while, then back: the backlog is delivered.
- SMTP server that answers slowly; one that drops the connection in DATA
  (before the 250, and right after DATA); one that refuses a recipient.
"""
import os
import time
import unittest

import harness
from fault_tools import DEFAULT_DELIVERY, Ledger, Load, Stack, count, have

# Duplicates after a crash: what the delivery workers had accepted by the
# SMTP server and not yet recorded, at most 8 each.
MAX_DUP = int(DEFAULT_DELIVERY["DELIVERY_WORKERS"]) * 8


@unittest.skipUnless(have("mailer-real"), "mailer-real not built")
class MailerFaults(unittest.TestCase):
    def start_stack(self, **kw):
        self.stack = Stack(self._testMethodName, **kw)
        self.addCleanup(self.stack.close)
        return self.stack.start()

    def since(self, load, n):
        """Waits until the load has n more results than now."""
        load.wait_count(len(load.results) + n)

    def test_kill_mailer_real_mid_load(self):
        # An SMTP server a little slower than the load (0.02 s a reply:
        # about 50 mails a second for four workers, against 80 payrolls a
        # second), so that mail is pending, and sessions are in flight, when
        # the process dies.
        st = self.start_stack(smtp_opts={"delay": 0.02}, real_env=DEFAULT_DELIVERY)
        load = Load(st.real.port, rate=80, workers=8).start()
        self.since(load, 120)
        st.real.kill()
        down = len(load.results)
        pending = count(st.dbs.mono, "sent_mail", "status = 'pending'")
        self.assertGreater(pending, 0, "no mail was pending when mailer-real died: the test "
                           "did not exercise the fault")
        time.sleep(1)
        st.restart(st.real)
        self.since(load, 120)
        load.stop()
        led = Ledger(self, "SIGKILL mailer-real mid-load, restart (4 workers, 8 clients)",
                     st.dbs.mono, st.smtp)
        led.check_rows(load)
        statuses = load.by_status()
        self.assertLessEqual(set(statuses) - {201, "conn-error"}, set(),
                             f"answers other than 201 or a broken connection: {statuses}")
        after = [r for r in load.results[down:] if r.status is not None]
        self.assertTrue(after and all(r.status == 201 for r in after[-20:]),
                        "the restarted mailer-real does not answer 201")
        led.wait_delivered()
        led.check_mail(max_dup_batch=MAX_DUP)
        led.note(pending_at_kill=pending)
        led.record()

    @unittest.skipUnless(have("mailer-spy"), "mailer-spy not built")
    def test_kill_mailer_spy_mid_load(self):
        st = self.start_stack()
        load = Load(st.real.port, rate=40).start()
        self.since(load, 50)
        st.spy.kill()
        self.since(load, 60)
        st.restart(st.spy)
        self.since(load, 50)
        load.stop()
        led = Ledger(self, "SIGKILL mailer-spy mid-load", st.dbs.mono, st.smtp)
        led.check_rows(load)
        self.assertEqual(load.by_status(), {201: len(load.results)},
                         "a dead spy changed mailer-real's answers")
        led.wait_delivered()
        led.check_mail()
        st.spied_settled()
        mono = {r[0] for r in harness.query(st.dbs.mono, "select correlation_id::text from sent_mail")}
        micro = {r[0] for r in harness.query(st.dbs.micro, "select correlation_id::text from spied_mail")}
        self.assertEqual(micro - mono, set(), "spy records for no monolith mail")
        lost = mono - micro
        self.assertTrue(lost, "killing the spy lost no record: the test did not exercise the fault")
        led.note(spy_records=len(micro), spy_lost=len(lost))
        if have("reconciler"):
            p = st.reconciler("run", "--grace", "0")
            self.assertEqual(p.returncode, 1, f"reconciler: {p.stdout}\n{p.stderr}")
            reported = reconciler_missing(st.dbs.mono, "micro")
            self.assertEqual(reported, lost, "reconciler's missing-in-micro differs from the lost spy records")
            self.assertEqual(count(st.dbs.mono, "sent_mail", "consumed_at is null"), len(lost))
            led.note(reconciler_missing_in_micro=len(reported))
        led.record()

    def test_smtp_down_then_back(self):
        st = self.start_stack()
        load = Load(st.real.port, rate=40).start()
        self.since(load, 40)
        st.smtp.stop()
        self.since(load, 80)
        pending = count(st.dbs.mono, "sent_mail", "status = 'pending'")
        st.smtp.start()
        self.since(load, 40)
        load.stop()
        led = Ledger(self, "SMTP server down, then back", st.dbs.mono, st.smtp)
        led.check_rows(load)
        self.assertEqual(load.by_status(), {201: len(load.results)},
                         "an SMTP outage changed the answers")
        self.assertGreater(pending, 0, "nothing waited while SMTP was down")
        led.wait_delivered(timeout=120)
        led.check_mail()
        led.note(pending_while_down=pending)
        led.record()

    def test_smtp_slow(self):
        # A session of DELIVERY_BATCH mails at 4 slow replies each takes
        # about 8 s; its rows stay claimed (advisory locks) the whole time
        # while each outcome commits, so no other worker takes them
        # mid-session and sends them twice (check_mail allows no duplicate).
        st = self.start_stack(smtp_opts={"delay": 0.1})
        load = Load(st.real.port, rate=20).start()
        self.since(load, 60)
        load.stop()
        led = Ledger(self, "SMTP server answering slowly (0.1 s a reply)", st.dbs.mono, st.smtp)
        led.check_rows(load)
        self.assertEqual(load.by_status(), {201: len(load.results)})
        led.wait_delivered(timeout=120)
        led.check_mail()
        led.record()

    def check_drops(self, point):
        st = self.start_stack(smtp_opts={"drop_in_data": 5, "drop_point": point})
        load = Load(st.real.port, rate=30).start()
        self.since(load, 60)
        load.stop()
        led = Ledger(self, f"SMTP drops the connection in DATA ({point}), 5 times",
                     st.dbs.mono, st.smtp)
        led.check_rows(load)
        self.assertEqual(load.by_status(), {201: len(load.results)})
        led.wait_delivered(timeout=120)
        led.check_mail()
        with open(st.smtp.log_path) as f:
            drops = f.read().count("drop at")
        self.assertEqual(drops, 5, "the server did not drop 5 times: the fault did not happen")
        retried = count(st.dbs.mono, "sent_mail", "attempts > 1")
        self.assertGreater(retried, 0, "no mail needed a second attempt")
        led.note(drops=drops, retried=retried)
        led.record()

    def test_smtp_drops_at_end_of_data(self):
        self.check_drops("end")

    def test_smtp_drops_at_start_of_data(self):
        self.check_drops("start")

    def test_smtp_rejects_recipient(self):
        st = self.start_stack(smtp_opts={"reject_rcpt": r"^refused\."})
        load = Load(st.real.port, rate=30,
                    body=lambda n, s: {"shipTo": ("refused " if n % 5 == 0 else "") + s.replace(" ", "x"),
                                       "total": 10}).start()
        self.since(load, 50)
        load.stop()
        self.assertEqual(load.by_status(), {201: len(load.results)})
        led = Ledger(self, "SMTP refuses one recipient in five (550)", st.dbs.mono, st.smtp)
        ids = led.check_rows(load)
        led.wait_delivered(timeout=60)
        rows = harness.query(st.dbs.mono, "select payroll_id, status, destination, coalesce(last_error, '') "
                             "from sent_mail")
        refused = {pid: (s, e) for pid, s, d, e in rows if d.startswith("refused.")}
        self.assertTrue(refused, "no refused recipient in the load")
        for pid, (s, e) in refused.items():
            self.assertEqual(s, "failed", f"payroll {pid}: a 550 recipient ends {s!r}")
            self.assertIn("550", e, f"payroll {pid}: last_error does not give the 550: {e!r}")
        delivered = {int(str(m["Subject"]).split()[1]) for m in st.smtp.messages()}
        self.assertEqual(delivered & set(refused), set(), "mail to a refused recipient delivered")
        others = {pid for pid in ids if pid not in refused}
        self.assertEqual(others - delivered, set(), "a refused recipient blocked others' mail")
        led.note(refused=len(refused), delivered=len(delivered), lost=0, duplicates=0)
        led.record()


def reconciler_missing(mono_url, side):
    """Correlation ids of open 'missing_in_<side>' mismatches."""
    return {r[0] for r in harness.query(
        mono_url, "select correlation_id::text from reconciliation_mismatch "
        "where resolved_at is null and kind = %s", ("missing_in_" + side,))}


if __name__ == "__main__":
    unittest.main()
