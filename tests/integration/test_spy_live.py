"""mailer-spy SPY_MODE=live: the spy records and delivers (docs/SPY-LIVE.md).

Each test runs the real mailer-spy on a scratch postgresMicro database with
a real SMTP server of its own (faulty_smtp.py, well-behaved unless a test
asks) and reads back the Maildir by Message-Id (<correlation-id@domain>).

- A live spy SIGKILLed while its mail is pending (the SMTP server down) is
  started again: every accepted notification is delivered, exactly once.
- A live spy SIGKILLed in the middle of an SMTP session: every mail is
  delivered after the restart, and the only duplicates are part of the
  batch that was in flight, with the same Message-Id.
- A 5xx for a recipient fails that mail at once (the server's answer in
  last_error); a 4xx is retried with backoff up to DELIVERY_MAX_ATTEMPTS.
- A repeated correlation id (same or another body, before and after
  delivery, across a restart) never sends a second mail; a row recorded by
  a spy-mode spy on the same database is never sent.
- On a database still at schema version 1 live mode refuses to start,
  naming sql/micro.sql; rerunning sql/micro.sql and sql/queue.sql migrates it in place
  (twice is harmless) and live mode then starts.
"""
import collections
import os
import uuid
import unittest

import harness
from fault_tools import ScratchDbs, count, have, tmpdir
from faulty_smtp import FaultySmtp

SQL_MICRO = os.path.join(harness.TOP, "sql", "micro.sql")
SQL_QUEUE = os.path.join(harness.TOP, "sql", "queue.sql")

# SPY_MODE=live refuses to start without a token (issue 14).
LIVE_TOKEN = "live-spy-token-7c1d"


def message_ids(smtp):
    """Message-Id (without brackets) -> how many times it was delivered."""
    return collections.Counter(str(m["Message-Id"]).strip("<>") for m in smtp.messages())


def mid(cid):
    return f"{cid}@example.com"


@unittest.skipUnless(have("mailer-spy"), "mailer-spy not built")
class LiveDelivery(unittest.TestCase):
    def setUp(self):
        self.dbs = ScratchDbs()
        self.addCleanup(self.dbs.close)
        self.micro = self.dbs.micro
        d = tmpdir(self._testMethodName)
        self.smtp = FaultySmtp(harness.free_port(), os.path.join(d, "mail"),
                               os.path.join(d, "smtp.log"))
        self.addCleanup(self.smtp.stop)

    def spy(self, mode="live", **env):
        e = {"MICRO_DATABASE_URL": self.micro, "SPY_MODE": mode,
             "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(self.smtp.port),
             "DELIVERY_WORKERS": "1", "DELIVERY_POLL_MS": "100",
             "DELIVERY_RETRY_BASE_MS": "100", "DELIVERY_RETRY_MAX_MS": "500",
             "DELIVERY_MAX_ATTEMPTS": "1000", "SPY_TOKEN": LIVE_TOKEN}
        e.update({k: str(v) for k, v in env.items()})
        s = harness.Service("mailer-spy", env=e, log_name=f"spy-live-{self._testMethodName}")
        self.addCleanup(s.stop)
        return s

    def notify(self, spy, cid, name, payroll_id=1, total=320):
        st, _, body = spy.request("POST", "/notifications", {
            "correlationId": cid, "payrollId": payroll_id, "shipTo": name, "total": total},
            headers={"Authorization": "Bearer " + LIVE_TOKEN})
        return st, body

    def post_many(self, spy, n):
        cids = []
        for i in range(n):
            cid = str(uuid.uuid4())
            st, body = self.notify(spy, cid, f"Live {i}", i + 1)
            self.assertEqual(st, 201, body)
            cids.append(cid)
        return cids

    def status_counts(self):
        return dict(harness.query(self.micro, "select coalesce(status, 'null'), count(*) "
                                  "from spied_mail group by 1"))

    def test_sigkill_with_pending_mail_delivers_it_after_restart(self):
        spy = self.spy().start()            # the SMTP server is down
        cids = self.post_many(spy, 30)
        harness.wait_for(lambda: count(self.micro, "spied_mail", "attempts >= 1") == 30,
                         timeout=60, what="a first, failed attempt for every mail")
        spy.kill()
        self.assertEqual(self.status_counts(), {"pending": 30})
        last = harness.query(self.micro, "select last_error from spied_mail limit 1")[0][0]
        self.assertTrue(last, "a failed attempt records why")

        self.smtp.start()
        self.spy().start()
        harness.wait_for(lambda: count(self.micro, "spied_mail", "status = 'sent'") == 30,
                         timeout=90, what="every pending mail sent after the restart")
        got = message_ids(self.smtp)
        self.assertEqual(set(got), {mid(c) for c in cids})
        self.assertEqual(set(got.values()), {1}, "a mail went twice")
        # What goes out is the spy's own record.
        m = next(m for m in self.smtp.messages() if str(m["Message-Id"]) == f"<{mid(cids[0])}>")
        dest, subj, body = harness.query(self.micro, "select destination, subject, body from "
                                         "spied_mail where correlation_id = %s", (cids[0],))[0]
        self.assertEqual((str(m["To"]), str(m["Subject"])), (dest, subj))
        self.assertEqual(m.get_content().replace("\r\n", "\n"), body.replace("\r\n", "\n"))
        print(f"\n  live spy SIGKILLed with 30 pending mails: 30 delivered after restart, "
              f"0 duplicates", flush=True)

    def test_sigkill_mid_session_resends_at_most_the_batch_in_flight(self):
        batch = 5
        self.smtp.start(delay=0.2)          # slow: a session is easy to catch
        spy = self.spy(DELIVERY_BATCH=batch).start()
        cids = self.post_many(spy, 20)
        harness.wait_for(lambda: len(self.smtp.messages()) >= 1, timeout=60,
                         what="the first mail stored by the SMTP server")
        spy.kill()
        sent_before = count(self.micro, "spied_mail", "status = 'sent'")
        stored_before = len(self.smtp.messages())
        self.assertEqual(count(self.micro, "spied_mail"), 20)

        self.smtp.stop()
        self.smtp.start(delay=None)
        self.spy(DELIVERY_BATCH=batch).start()
        harness.wait_for(lambda: count(self.micro, "spied_mail", "status = 'sent'") == 20,
                         timeout=120, what="every mail sent after the restart")
        got = message_ids(self.smtp)
        self.assertEqual(set(got), {mid(c) for c in cids}, "a mail was lost")
        dups = sum(n - 1 for n in got.values())
        self.assertLessEqual(max(got.values()), 2, got)
        self.assertLessEqual(dups, batch, got)
        # A duplicate can only be a mail the server stored before the kill
        # whose row was not settled yet.
        self.assertLessEqual(dups, stored_before - sent_before)
        print(f"\n  live spy SIGKILLed mid-session (batch {batch}): {stored_before} stored, "
              f"{sent_before} settled before the kill; 20 delivered, {dups} duplicate(s) "
              f"with the same Message-Id", flush=True)

    def test_a_repeated_correlation_id_never_sends_a_second_mail(self):
        self.smtp.start()
        live = self.spy().start()
        recorder = self.spy(mode="spy").start()
        a, b, c = (str(uuid.uuid4()) for _ in range(3))

        st, first = self.notify(live, a, "Repeat Me", 7)
        self.assertEqual(st, 201, first)
        self.assertEqual(self.notify(live, a, "Repeat Me", 7), (200, first))
        st, other = self.notify(live, a, "Someone Else", 8, 1)
        self.assertEqual((st, other), (200, first), "another body under the same id")
        # Recorded by a spy-mode spy: nothing to send, even when the live
        # spy sees the id later.
        self.assertEqual(self.notify(recorder, b, "Only Recorded", 9)[0], 201)
        self.assertEqual(self.notify(live, b, "Only Recorded", 9)[0], 200)

        harness.wait_for(lambda: message_ids(self.smtp)[mid(a)] == 1, timeout=60,
                         what="the first mail")
        live.stop()
        live = self.spy().start()
        self.assertEqual(self.notify(live, a, "Repeat Me", 7), (200, first))
        # One worker sends due rows oldest first: once a mail written after
        # every repeat is out, a second row for a repeat would be out too.
        self.assertEqual(self.notify(live, c, "Sentinel", 10)[0], 201)
        harness.wait_for(lambda: message_ids(self.smtp)[mid(c)] == 1, timeout=60,
                         what="the sentinel mail")
        got = message_ids(self.smtp)
        self.assertEqual(got, collections.Counter({mid(a): 1, mid(c): 1}))
        self.assertEqual(count(self.micro, "spied_mail"), 3)
        self.assertEqual(harness.query(self.micro, "select status, attempts from spied_mail "
                                       "where correlation_id = %s", (a,))[0], ("sent", 1))
        self.assertEqual(harness.query(self.micro, "select status from spied_mail "
                                       "where correlation_id = %s", (b,))[0][0], None)

    def test_a_refused_recipient_is_failed_and_a_busy_one_retried(self):
        self.smtp.start(reject_rcpt="^refused", tempfail_rcpt="^busy")
        spy = self.spy(DELIVERY_MAX_ATTEMPTS=3).start()
        ok, refused, busy = (str(uuid.uuid4()) for _ in range(3))
        for cid, name in ((ok, "Fine"), (refused, "Refused"), (busy, "Busy")):
            self.assertEqual(self.notify(spy, cid, name)[0], 201)
        harness.wait_for(lambda: count(self.micro, "spied_mail", "status = 'pending'") == 0,
                         timeout=60, what="every mail settled")
        rows = {r[0]: r[1:] for r in harness.query(
            self.micro, "select correlation_id::text, status, attempts, last_error from spied_mail")}
        self.assertEqual(rows[ok][:2], ("sent", 1))
        self.assertEqual(rows[refused][:2], ("failed", 1), "a 5xx is not retried")
        self.assertIn("550", rows[refused][2])
        self.assertEqual(rows[busy][:2], ("failed", 3), "a 4xx is retried up to the limit")
        self.assertIn("451", rows[busy][2])
        self.assertEqual(message_ids(self.smtp), collections.Counter({mid(ok): 1}))

    def test_live_mode_needs_schema_version_2_and_the_migration_reruns(self):
        with open(SQL_MICRO) as f:
            full = f.read()
        v1 = full[:full.index("-- Version 2")]
        name = self.dbs.micro_name + "_v1"
        ScratchDbs._create(harness.MICRO_URL, name, ())
        self.addCleanup(harness.execute, harness.MICRO_URL.rsplit("/", 1)[0] + "/postgres",
                        f'drop database if exists "{name}" with (force)')
        self.micro = harness.MICRO_URL.rsplit("/", 1)[0] + "/" + name
        harness.execute(self.micro, v1)
        old = str(uuid.uuid4())
        harness.execute(self.micro, "insert into spied_mail (correlation_id, payroll_id, "
                        "destination, subject, body) values (%s, 1, 'old@example.com', "
                        "'Payroll 1 shipped', 'recorded before the migration')", (old,))

        spy = self.spy().start(wait=False)
        self.assertEqual(spy.proc.wait(30), 2)
        spy.log.close()
        self.assertIn("sql/micro.sql", spy.log_text())

        with open(SQL_QUEUE) as f:
            queue = f.read()
        for _ in (1, 2):
            harness.execute(self.micro, full)
            harness.execute(self.micro, queue)
        self.assertEqual([r[0] for r in harness.query(self.micro, "select version from "
                                                      "schema_version order by 1")], [1, 2, 3, 4])
        # Version 3 queued the row recorded before it for the reconciler.
        self.assertEqual(harness.query(self.micro, "select correlation_id::text from "
                                       "reconcile_queue"), [(old,)])
        self.assertEqual(self.status_counts(), {"null": 1})
        self.smtp.start()
        live = self.spy().start()
        new = str(uuid.uuid4())
        self.assertEqual(self.notify(live, new, "After Migration", 2)[0], 201)
        harness.wait_for(lambda: message_ids(self.smtp)[mid(new)] == 1, timeout=60,
                         what="mail after the migration")
        self.assertEqual(set(message_ids(self.smtp)), {mid(new)}, "the old record was sent")
        self.assertEqual(self.status_counts(), {"null": 1, "sent": 1})


if __name__ == "__main__":
    unittest.main()
