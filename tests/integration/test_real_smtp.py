"""mailer-real delivery over real SMTP servers (aiosmtpd on loopback).

Covers: an SMTP outage (payrolls still 201, rows stay pending with the
error, every one delivered exactly once when a server appears on the
port); a 5xx for one recipient failing that row only, inside a batch sent
over one session; two mailer-real processes on one database delivering
each row once; SMTP_STARTTLS=required (with a trusted certificate it
sends over TLS; against a server without STARTTLS nothing is sent); SMTP
AUTH with the right and the wrong password; a server without 8BITMIME
gets José Núñez quoted-printable (7-bit on the wire, the same text once
decoded); sent_at and a retry's next attempt count from the SMTP attempt,
not from the claim; a worker killed, or whose database connection is
cut, in the middle of an SMTP session releases its claimed rows at once
(its advisory locks go with the connection: the unrecorded mail is sent
again, at least once, same Message-Id), with no lease to wait out, and
stops sending the batch; a mail whose outcome cannot be recorded on a
live connection is not sent again on every commit (the worker backs off).
"""
import concurrent.futures
import email
import email.policy
import json
import os
import ssl
import tempfile
import time
import unittest

from fault_tools import ScratchDbs, admin, with_db
from harness import Service, query, execute, wait_for, MONO_URL
from real_support import (CaptureSMTP, closed_port, mono_env, reset_outbox,
                          self_signed_cert, split_message)


def post(svc, ship, total=1):
    st, _, data = svc.request("POST", "/payroll", {"shipTo": ship, "total": total})
    assert st == 201, (st, data)
    return json.loads(data)


def statuses(cids):
    rows = query(MONO_URL, "select correlation_id::text, status, attempts, last_error "
                           "from sent_mail where correlation_id = any(%s::uuid[])", (list(cids),))
    return {r[0]: r[1:] for r in rows}


class RealSmtpTest(unittest.TestCase):
    def setUp(self):
        reset_outbox()

    def test_outage_then_recovery_loses_nothing(self):
        port = closed_port()
        with Service("mailer-real", env=mono_env(port), log_name="real-outage") as svc:
            docs = [post(svc, f"Outage {chr(65 + i)}") for i in range(5)]
            cids = [d["notification"]["correlationId"] for d in docs]
            wait_for(lambda: all(s[1] >= 1 for s in statuses(cids).values()),
                     what="first failed attempts")
            for st, attempts, err in statuses(cids).values():
                self.assertEqual(st, "pending")
                self.assertTrue(err)
            with CaptureSMTP(port=port) as smtp:
                wait_for(lambda: all(s[0] == "sent" for s in statuses(cids).values()),
                         timeout=20, what="all sent after recovery")
                time.sleep(0.5)
                for cid in cids:
                    self.assertEqual(len(smtp.by_message_id(cid)), 1, cid)

    def test_5xx_for_one_recipient_fails_that_row_only(self):
        port = closed_port()
        # Rows are made while the server is away, then all come due at
        # once; one delivery worker claims them, so they travel in one
        # batch over one session (with several workers, concurrent claims
        # with SKIP LOCKED may split them: seen once in `make test`).
        with Service("mailer-real", env=mono_env(port, DELIVERY_RETRY_BASE_MS=600000,
                                                 DELIVERY_RETRY_MAX_MS=600000),
                     log_name="real-5xx-a") as svc:
            docs = [post(svc, "Good One"), post(svc, "reject-me@example.com"),
                    post(svc, "Good Two")]
            cids = [d["notification"]["correlationId"] for d in docs]
            wait_for(lambda: all(s[1] >= 1 for s in statuses(cids).values()),
                     what="first attempts")
        execute(MONO_URL, "update sent_mail set next_attempt_at = now() "
                          "where correlation_id = any(%s::uuid[])", (cids,))
        reject = {"reject-me@example.com": "550 5.1.1 no such user here"}
        with CaptureSMTP(port=port, reject=reject) as smtp, \
                Service("mailer-real", env=mono_env(port, DELIVERY_WORKERS=1),
                        log_name="real-5xx-b"):
            wait_for(lambda: all(s[0] != "pending" for s in statuses(cids).values()),
                     what="settled")
            st = statuses(cids)
            self.assertEqual(st[cids[0]][0], "sent")
            self.assertEqual(st[cids[2]][0], "sent")
            self.assertEqual(st[cids[1]][0], "failed")
            self.assertIn("550", st[cids[1]][2])
            got = smtp.snapshot()
            self.assertEqual(sorted(m["rcpt_tos"][0] for m in got),
                             ["good.one@example.com", "good.two@example.com"])
            self.assertEqual(len({m["peer"] for m in got}), 1, "one SMTP session")

    def test_two_processes_deliver_each_row_once(self):
        port = closed_port()
        n = 120
        with Service("mailer-real", env=mono_env(port, DELIVERY_RETRY_BASE_MS=600000,
                                                 DELIVERY_RETRY_MAX_MS=600000),
                     log_name="real-two-a") as svc:
            with concurrent.futures.ThreadPoolExecutor(8) as ex:
                docs = list(ex.map(lambda i: post(svc, f"Twin {i}"), range(n)))
        cids = [d["notification"]["correlationId"] for d in docs]
        execute(MONO_URL, "update sent_mail set next_attempt_at = now() "
                          "where correlation_id = any(%s::uuid[])", (cids,))
        env = mono_env(port, DELIVERY_BATCH=10, DELIVERY_WORKERS=2)
        with CaptureSMTP(port=port) as smtp, \
                Service("mailer-real", env=env, log_name="real-two-b"), \
                Service("mailer-real", env=env, log_name="real-two-c"):
            wait_for(lambda: all(s[0] == "sent" for s in statuses(cids).values()),
                     timeout=30, what="all sent by two processes")
            time.sleep(0.5)
            got = smtp.snapshot()
            ids = [m["raw"].split(b"Message-Id: <", 1)[1].split(b"@", 1)[0].decode()
                   for m in got]
            mine = [i for i in ids if i in set(cids)]
            self.assertEqual(len(mine), n)
            self.assertEqual(len(set(mine)), n)
            self.assertGreater(len({m["peer"] for m in got}), 1)

    # Open finding (docs/RELIABILITY.md): in the ASan build, under load, the
    # second STARTTLS session of one worker has been seen to wait out
    # SMTP_TIMEOUT_S every attempt, with no sanitizer report. The plain
    # build passes; CI's sanitizer pass leaves it out until it is explained.
    @unittest.skipIf("ASAN_OPTIONS" in os.environ, "second STARTTLS session under ASan: open finding")
    def test_starttls_required(self):
        with tempfile.TemporaryDirectory() as d:
            cert, key = self_signed_cert(d)
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(cert, key)
            with CaptureSMTP(tls_context=ctx, require_starttls=True) as smtp:
                # generous step timeout: a TLS handshake with the Python
                # server on a loaded machine (or under ASAN) can take
                # seconds. Not longer: in one loaded run the first session
                # hung for the whole 30 s ("not attempted") and its retry
                # went through in 21 ms (cause not found yet: the Python
                # server's STARTTLS is the suspect); such a session costs
                # the whole timeout.
                env = mono_env(smtp.port, SMTP_HOST="localhost", SMTP_STARTTLS="required",
                               SMTP_CA_FILE=cert, SMTP_TIMEOUT_S=10)
                with Service("mailer-real", env=env, log_name="real-tls") as svc:
                    # one after the other: a second TLS session in one
                    # process must work (libesmtp 1.1.0 trap)
                    for c in "AB":
                        cid = post(svc, f"Tls {c}")["notification"]["correlationId"]
                        wait_for(lambda: statuses([cid])[cid][0] == "sent", timeout=90,
                                 what="sent over TLS")
                        self.assertTrue(smtp.by_message_id(cid)[0]["tls"])
                # without the CA, the certificate is not trusted: nothing sent
                env = mono_env(smtp.port, SMTP_HOST="localhost", SMTP_STARTTLS="required")
                with Service("mailer-real", env=env, log_name="real-tls-untrusted") as svc:
                    cid = post(svc, "Tls Untrusted")["notification"]["correlationId"]
                    wait_for(lambda: statuses([cid])[cid][1] >= 2, what="attempts")
                    st, _, err = statuses([cid])[cid]
                    self.assertEqual(st, "pending")
                    self.assertIn("certificate", err)
                    self.assertEqual(smtp.by_message_id(cid), [])
        # a server that offers no STARTTLS gets nothing
        with CaptureSMTP() as plain:
            env = mono_env(plain.port, SMTP_STARTTLS="required")
            with Service("mailer-real", env=env, log_name="real-notls") as svc:
                cid = post(svc, "No Tls")["notification"]["correlationId"]
                wait_for(lambda: statuses([cid])[cid][1] >= 2, what="attempts")
                st, attempts, err = statuses([cid])[cid]
                self.assertEqual(st, "pending")
                self.assertIn("STARTTLS", err)
                self.assertEqual(plain.by_message_id(cid), [])

    def test_auth(self):
        with CaptureSMTP(users={"mailer": "s3cret"}) as smtp:
            # a test SMTP server on loopback: AUTH without TLS is allowed here only
            env = mono_env(smtp.port, SMTP_USER="mailer", SMTP_PASSWORD="s3cret",
                           SMTP_AUTH_WITHOUT_TLS="on")
            with Service("mailer-real", env=env, log_name="real-auth") as svc:
                cid = post(svc, "Auth Ok")["notification"]["correlationId"]
                wait_for(lambda: statuses([cid])[cid][0] == "sent", what="sent with AUTH")
                self.assertTrue(smtp.by_message_id(cid)[0]["authenticated"])
            env = mono_env(smtp.port, SMTP_USER="mailer", SMTP_PASSWORD="wrong",
                           SMTP_AUTH_WITHOUT_TLS="on")
            with Service("mailer-real", env=env, log_name="real-auth-bad") as svc:
                cid = post(svc, "Auth Bad")["notification"]["correlationId"]
                wait_for(lambda: statuses([cid])[cid][1] >= 2, what="attempts")
                self.assertEqual(statuses([cid])[cid][0], "pending")
                self.assertEqual(smtp.by_message_id(cid), [])

    def test_quoted_printable_without_8bitmime(self):
        with CaptureSMTP(no_8bitmime=True) as smtp, \
                Service("mailer-real", env=mono_env(smtp.port), log_name="real-qp") as svc:
            doc = post(svc, "José Núñez", 1500.75)
            cid = doc["notification"]["correlationId"]
            m = wait_for(lambda: smtp.by_message_id(cid), what="mail delivered")[0]
            self.assertNotIn("BODY=8BITMIME", m["mail_options"])
            self.assertTrue(all(b < 0x80 for b in m["raw"]), "8-bit bytes sent to a 7-bit server")
            self.assertNotRegex(m["raw"], rb"[^\r]\n")
            headers, _ = split_message(m["raw"])
            self.assertEqual(headers["content-transfer-encoding"], "quoted-printable")
            self.assertEqual(headers["content-type"], "text/plain; charset=utf-8")
            msg = email.message_from_bytes(m["raw"], policy=email.policy.default)
            self.assertEqual(msg.get_payload(decode=True).decode("utf-8"),
                             f"Hello José Núñez,\r\n\r\nPayroll {doc['id']} shipped to "
                             f"José Núñez of 1500.75.\r\n")

    def test_times_count_from_the_attempt_not_the_claim(self):
        # The worker's transaction begins at the claim, before the SMTP
        # session; a slow EHLO puts the claim well before DATA and RCPT.
        port = closed_port()
        env = mono_env(port, DELIVERY_RETRY_BASE_MS=60000, DELIVERY_RETRY_MAX_MS=60000)
        reject = {"later@example.com": "451 4.3.0 try again later"}
        with Service("mailer-real", env=mono_env(port, DELIVERY_RETRY_BASE_MS=600000,
                                                 DELIVERY_RETRY_MAX_MS=600000),
                     log_name="real-times-a") as svc:
            cids = [post(svc, ship)["notification"]["correlationId"]
                    for ship in ("Timed One", "later@example.com")]
            wait_for(lambda: all(s[1] >= 1 for s in statuses(cids).values()),
                     what="first attempts")
        execute(MONO_URL, "update sent_mail set next_attempt_at = now(), attempts = 0 "
                          "where correlation_id = any(%s::uuid[])", (cids,))
        with CaptureSMTP(port=port, reject=reject, ehlo_delay=1.0) as smtp, \
                Service("mailer-real", env=env, log_name="real-times-b"):
            wait_for(lambda: statuses(cids)[cids[0]][0] == "sent", what="sent")
            wait_for(lambda: statuses(cids)[cids[1]][1] >= 1, what="second settled")
            t_data = smtp.by_message_id(cids[0])[0]["t_data"]
            t_refused = [t for a, t in smtp.refusals if a == "later@example.com"][0]
            sent_at, next_at = query(
                MONO_URL, "select extract(epoch from a.sent_at)::float8,"
                " extract(epoch from b.next_attempt_at)::float8"
                " from sent_mail a, sent_mail b"
                " where a.correlation_id = %s and b.correlation_id = %s", (cids[0], cids[1]))[0]
            self.assertEqual(statuses(cids)[cids[1]][0], "pending")
            self.assertGreaterEqual(sent_at, t_data - 0.3,
                                    "sent_at is the claim's time, before the mail was sent")
            self.assertGreaterEqual(next_at, t_refused + 60 - 0.3,
                                    "the retry delay counts from the claim, not the attempt")

    def worker_backend(self):
        """pid of a mailer-real worker's backend holding claimed rows (by
        session advisory locks)."""
        rows = query(MONO_URL, "select distinct l.pid from pg_locks l"
                               " join pg_database d on d.oid = l.database"
                               " where l.locktype = 'advisory' and l.granted"
                               " and d.datname = current_database()")
        return rows[0][0] if rows else None

    def due_rows(self, log_name):
        """Three payrolls made while no SMTP server listens on a port, all
        due again now with no attempt counted: (port, correlation ids)."""
        port = closed_port()
        with Service("mailer-real", env=mono_env(port, DELIVERY_RETRY_BASE_MS=600000,
                                                 DELIVERY_RETRY_MAX_MS=600000),
                     log_name=log_name + "-a") as svc:
            cids = [post(svc, f"Claimed {c}")["notification"]["correlationId"] for c in "ABC"]
            wait_for(lambda: all(s[1] >= 1 for s in statuses(cids).values()),
                     what="first attempts")
        execute(MONO_URL, "update sent_mail set next_attempt_at = now(), attempts = 0 "
                          "where correlation_id = any(%s::uuid[])", (cids,))
        return port, cids

    def test_killed_worker_releases_its_rows_at_once(self):
        port, cids = self.due_rows("real-kill")
        stall = CaptureSMTP(port=port, data_delay=30).start()
        try:
            a = Service("mailer-real", env=mono_env(port, DELIVERY_BATCH=10, DELIVERY_WORKERS=1),
                        log_name="real-kill-b").start()
            try:
                wait_for(lambda: stall.data_started >= 1, what="a session in DATA")
                self.assertIsNotNone(self.worker_backend(), "no worker holds the claimed rows")
                a.kill()
            finally:
                a.stop()
        finally:
            stall.stop()
        # The rows are due again now (no lease): another process on
        # another port delivers them, while the default poll would not
        # even have woken a second time.
        wait_for(lambda: self.worker_backend() is None, what="the killed worker's locks released")
        st = statuses(cids)
        self.assertEqual({s[0] for s in st.values()}, {"pending"})
        self.assertEqual({s[1] for s in st.values()}, {0}, "the killed attempt was recorded")
        with CaptureSMTP() as smtp, \
                Service("mailer-real", env=mono_env(smtp.port), log_name="real-kill-c"):
            wait_for(lambda: all(s[0] == "sent" for s in statuses(cids).values()),
                     timeout=20, what="all sent by the next process")
            for cid in cids:
                self.assertEqual(len(smtp.by_message_id(cid)), 1, cid)

    def test_lost_database_connection_stops_the_batch(self):
        port, cids = self.due_rows("real-lost")
        with CaptureSMTP(port=port, data_delay=1.5) as smtp, \
                Service("mailer-real", env=mono_env(port, DELIVERY_BATCH=10, DELIVERY_WORKERS=1),
                        log_name="real-lost-b") as svc:
            wait_for(lambda: smtp.data_started >= 1, what="a session in DATA")
            pid = self.worker_backend()
            self.assertIsNotNone(pid, "no worker holds the claimed rows")
            query(MONO_URL, "select pg_terminate_backend(%s)", (pid,))
            # the mail in DATA gets its 250, its outcome cannot be
            # recorded: the session stops before the next mail, the worker
            # reconnects and claims the batch again
            wait_for(lambda: all(s[0] == "sent" for s in statuses(cids).values()),
                     timeout=30, what="all sent after the reconnect")
            self.assertIn("not recorded", svc.log_text())
            for cid in cids:
                got = smtp.by_message_id(cid)
                self.assertIn(len(got), (1, 2), cid)
                self.assertEqual(len({m["raw"].split(b"Message-Id: ")[1].split(b"\r\n")[0]
                                      for m in got}), 1)
            twice = [c for c in cids if len(smtp.by_message_id(c)) == 2]
            self.assertEqual(len(twice), 1, "not just the mail whose outcome was lost went "
                             f"twice: {len(twice)} of {len(cids)}")
            self.assertEqual({s[1] for s in statuses(cids).values()}, {1},
                             "the unrecorded attempt was counted")

    def test_unrecorded_outcome_is_not_resent_on_every_commit(self):
        # A settle that fails on a live connection (here a trigger refuses
        # the 'sent' of one row) leaves its mail pending and due again at
        # once. The worker must back off, not send it again each
        # time a commit wakes it.
        execute(MONO_URL, """
            create or replace function test_refuse_sent() returns trigger
            language plpgsql as $$ begin raise exception 'test: settle refused'; end $$;
            drop trigger if exists test_refuse_sent on sent_mail;
            create trigger test_refuse_sent before update on sent_mail for each row
              when (new.destination = 'storm@example.com' and new.status = 'sent')
              execute function test_refuse_sent();""")
        self.addCleanup(execute, MONO_URL, "drop trigger if exists test_refuse_sent on sent_mail;"
                                           " drop function if exists test_refuse_sent()")
        with CaptureSMTP() as smtp, \
                Service("mailer-real", env=mono_env(smtp.port, DELIVERY_WORKERS=1),
                        log_name="real-storm") as svc:
            cid = post(svc, "storm@example.com")["notification"]["correlationId"]
            wait_for(lambda: smtp.by_message_id(cid), what="first delivery")
            for i in range(40):
                post(svc, f"Storm Waker {chr(65 + i % 26)}")   # each commit wakes it
                time.sleep(0.1)
            copies = len(smtp.by_message_id(cid))
            self.assertIn("not recorded", svc.log_text())
            self.assertLessEqual(copies, 6, f"the unrecorded mail went {copies} times")
            self.assertEqual(statuses([cid])[cid][0], "pending")


MAIL_TABLES = ("payroll", "sent_mail", "reconcile_queue")


def stale_statistics_db(test):
    """A scratch postgresMono, dropped when the test ends, whose tables keep
    the statistics the test gives them (autovacuum off)."""
    dbs = ScratchDbs()
    test.addCleanup(dbs.close)
    for t in MAIL_TABLES:
        execute(dbs.mono, f"alter table {t} set (autovacuum_enabled = off)")
    return dbs.mono


def sessions_ended(url):
    """Waits until no one but us is connected: the service's sessions
    report their counters to pg_stat_* as they end."""
    name = url.rsplit("/", 1)[-1].split("?")[0]
    wait_for(lambda: query(url, "select count(*) from pg_stat_activity where datname = %s"
                                " and pid <> pg_backend_pid()", (name,))[0][0] == 0,
             what="mailer-real's sessions ended")


class DeliveryPlansTest(unittest.TestCase):
    """The delivery workers read and settle their rows by key, whatever the
    planner's statistics say. After a bulk load analyzed while it was in
    progress (pg_class says 0 rows), each settle of a few outcomes used to
    be a hash join over the whole pending index: thousands of rows read to
    update a handful, quadratic in the backlog. Counted in rows the server
    read from sent_mail (pg_stat_user_indexes, pg_stat_user_tables), not in
    time."""
    N = 2000

    def test_settles_read_rows_by_key_after_a_bulk_load(self):
        url = stale_statistics_db(self)
        execute(url, f"insert into payroll (ship_to, total) select 'Bulk ' || i, 1"
                     f" from generate_series(1, {self.N}) i")
        execute(url, "insert into sent_mail (correlation_id, payroll_id, destination,"
                     " subject, body) select gen_random_uuid(), id,"
                     " 'bulk' || id || '@example.com', 'Payroll ' || id, 'Shipped.'"
                     " from payroll")
        execute(url, "analyze payroll, sent_mail, reconcile_queue")
        execute(url, "update pg_class set reltuples = 0 where relname in"
                     " ('payroll', 'sent_mail', 'reconcile_queue')")
        with CaptureSMTP() as smtp:
            with Service("mailer-real", env=mono_env(smtp.port, MONO_DATABASE_URL=url),
                         log_name="real-stale-stats"):
                # waits on the SMTP server: a query here would scan the table
                wait_for(lambda: len(smtp.messages) >= self.N, timeout=120,
                         what=f"{self.N} mails received")
        sessions_ended(url)
        idx = dict(query(url, "select indexrelname, idx_tup_read from pg_stat_user_indexes"
                              " where relname = 'sent_mail'"))
        seq = query(url, "select coalesce(seq_tup_read, 0) from pg_stat_user_tables"
                         " where relname = 'sent_mail'")[0][0]
        read = sum(idx.values()) + seq
        self.assertEqual(query(url, "select count(*) from sent_mail where status = 'sent'")[0][0],
                         self.N)
        self.assertEqual(len(smtp.messages), self.N)
        # by key: a claim looks at its batch and the rows other workers
        # hold, a read and a settle at their own rows: a few per mail
        self.assertLess(read, 20 * self.N,
                        f"rows of sent_mail read to deliver {self.N} mails: {read} "
                        f"(indexes {idx}, sequential {seq})")


class IntakePlansTest(unittest.TestCase):
    """The intake's statements reach their rows by index whatever the
    planner's statistics say. With payroll analyzed while empty, the
    foreign key's check of each new mail against payroll (planned once a
    session) was a sequential scan of payroll per mail: every payroll
    accepted made the next ones slower. Counted in rows the server read
    from payroll (pg_stat_user_tables), not in time."""
    N = 1500

    def test_payrolls_are_checked_by_key_on_empty_statistics(self):
        url = stale_statistics_db(self)
        execute(url, "vacuum analyze payroll, sent_mail, reconcile_queue")
        with CaptureSMTP() as smtp:
            with Service("mailer-real", env=mono_env(smtp.port, MONO_DATABASE_URL=url),
                         log_name="real-intake-stats") as svc:
                with concurrent.futures.ThreadPoolExecutor(8) as pool:
                    ids = list(pool.map(lambda i: post(svc, f"Intake {i}")["notification"]["correlationId"],
                                        range(self.N)))
                wait_for(lambda: len(smtp.messages) >= self.N, timeout=120,
                         what=f"{self.N} mails received")
        sessions_ended(url)
        self.assertEqual(len(set(ids)), self.N)
        self.assertEqual(query(url, "select count(*) from sent_mail s join reconcile_queue q"
                                    " using (correlation_id)")[0][0], self.N,
                         "every accepted mail is queued for the reconciler")
        seq = query(url, "select coalesce(seq_tup_read, 0) from pg_stat_user_tables"
                         " where relname = 'payroll'")[0][0]
        # by key: none; a scan per mail would read about N * N / 2
        self.assertLess(seq, self.N,
                        f"rows of payroll read by sequential scans to accept "
                        f"{self.N} payrolls: {seq}")

    def test_a_schema_without_the_queue_still_takes_payrolls(self):
        # sql/mono.sql alone (no reconciler installed): the intake's
        # statement does not name reconcile_queue
        name = "mono_noqueue_%d" % os.getpid()
        ScratchDbs._create(MONO_URL, name, ("mono.sql",))
        url = with_db(MONO_URL, name)
        self.addCleanup(execute, admin(MONO_URL),
                        f'drop database if exists "{name}" with (force)')
        with CaptureSMTP() as smtp:
            with Service("mailer-real", env=mono_env(smtp.port, MONO_DATABASE_URL=url),
                         log_name="real-no-queue") as svc:
                cids = [post(svc, f"No Queue {c}")["notification"]["correlationId"]
                        for c in "ABC"]
                wait_for(lambda: all(smtp.by_message_id(c) for c in cids),
                         what="the three mails received")
        self.assertEqual(query(url, "select count(*) from sent_mail where status = 'sent'")[0][0], 3)


if __name__ == "__main__":
    unittest.main()
