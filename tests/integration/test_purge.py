"""Retention: `reconciler purge --older-than DAYS [--dry-run]` (docs/RECONCILER.md).

Covers: what goes and what stays on both databases (sent_mail consumed
before the cutoff and done delivering: sent, failed, delegated and handed
over; never pending, never a delegated row still to hand over, never
unconsumed; spied_mail consumed and recorded-only, sent or failed, never
pending; mismatches resolved before the cutoff, never open ones); --dry-run
prints the same counts and changes nothing; a second purge deletes nothing;
bad values exit 2 and change nothing; another purge holding the lock exits
4; a database down exits 3. At 1,000,000 sent_mail rows (generate_series):
the batches commit one by one (held at a row another session locks, the
batches before it are already gone, writers are not blocked and the purge
holds no lock above ROW EXCLUSIVE on the table), and the end state is right.
"""
import os
import subprocess
import unittest

import harness
from canary_env import scratch_db

RECONCILER = os.path.join(harness.BIN_DIR, "reconciler")


class Purge(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.mono = scratch_db(harness.MONO_URL, "purge_mono", ["mono.sql", "queue.sql", "reconciler.sql"])
        cls.micro = scratch_db(harness.MICRO_URL, "purge_micro", ["micro.sql", "queue.sql"])

    def setUp(self):
        harness.execute(self.mono, "truncate reconciliation_mismatch, reconciliation_run, "
                        "sent_mail, payroll, reconcile_queue")
        harness.execute(self.micro, "truncate spied_mail, reconcile_queue")

    def purge(self, *args, micro=None, timeout=600):
        env = dict(os.environ, MONO_DATABASE_URL=self.mono,
                   MICRO_DATABASE_URL=micro or self.micro)
        return subprocess.run([RECONCILER, "purge"] + list(args), env=env,
                              capture_output=True, text=True, timeout=timeout)

    def counts(self, out):
        """{table: n} from purge's output."""
        got = {}
        for line in out.splitlines()[1:]:
            p = line.split()
            got[p[1]] = int(p[-1])
        return got

    def fixture(self):
        mono_rows = [  # (status, consumed days ago, handed_off), kept?
            (("sent", 40, False), False), (("failed", 40, False), False),
            (("delegated", 40, True), False), (("delegated", 40, False), True),
            (("pending", 40, False), True), (("sent", 10, False), True),
            (("sent", None, False), True), (("sent", 31, False), False),
        ]
        conn = harness.db(self.mono)
        ids = {}
        with conn.cursor() as cur:
            cur.execute("insert into payroll (ship_to, total) values ('P', 1) returning id")
            pid = cur.fetchone()[0]
            for (status, days, handed), kept in mono_rows:
                cur.execute("""insert into sent_mail (correlation_id, payroll_id, destination,
                               subject, body, status, consumed_at, handed_off_at)
                               values (gen_random_uuid(), %s, 'a@example.com', 's', 'b', %s,
                                       now() - make_interval(days => %s),
                                       case when %s then now() end) returning id""",
                            (pid, status, days, handed))
                ids[cur.fetchone()[0]] = kept
            cur.execute("insert into reconciliation_run (status, cutoff, grace_seconds) values ('done', now(), 0) returning id")
            run = cur.fetchone()[0]
            mm = {}
            for resolved_days, kept in ((40, False), (10, True), (None, True)):
                cur.execute("""insert into reconciliation_mismatch (run_id, correlation_id, kind,
                               found_at, resolved_at, resolution)
                               values (%s, gen_random_uuid(), 'missing_in_micro',
                                       now() - interval '100 days',
                                       now() - make_interval(days => %s),
                                       case when %s::int is not null then 'ack' end)
                               returning id""", (run, resolved_days, resolved_days))
                mm[cur.fetchone()[0]] = kept
        conn.close()
        conn = harness.db(self.micro)
        sp = {}
        with conn.cursor() as cur:
            for (status, days), kept in (((None, 40), False), (("sent", 40), False),
                                         (("failed", 40), False), (("pending", 40), True),
                                         ((None, 10), True), ((None, None), True)):
                cur.execute("""insert into spied_mail (correlation_id, payroll_id, destination,
                               subject, body, status, consumed_at)
                               values (gen_random_uuid(), 1, 'a@example.com', 's', 'b', %s,
                                       now() - make_interval(days => %s)) returning id""",
                            (status, days))
                sp[cur.fetchone()[0]] = kept
        conn.close()
        return ids, mm, sp

    def remaining(self):
        q = lambda url, sql: sorted(r[0] for r in harness.query(url, sql))
        return (q(self.mono, "select id from sent_mail"),
                q(self.mono, "select id from reconciliation_mismatch"),
                q(self.micro, "select id from spied_mail"))

    def test_deletes_only_what_is_done_and_old(self):
        mail, mm, spied = self.fixture()
        want_gone = {"sent_mail": sum(not k for k in mail.values()),
                     "reconciliation_mismatch": sum(not k for k in mm.values()),
                     "spied_mail": sum(not k for k in spied.values())}
        before = self.remaining()
        p = self.purge("--older-than", "30", "--dry-run")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("would delete", p.stdout)
        self.assertEqual(self.counts(p.stdout), want_gone, p.stdout)
        self.assertEqual(self.remaining(), before, "--dry-run changed something")
        p = self.purge("--older-than", "30")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(self.counts(p.stdout), want_gone, p.stdout)
        self.assertEqual(self.remaining(),
                         tuple(sorted(i for i, k in d.items() if k) for d in (mail, mm, spied)))
        p = self.purge("--older-than", "30")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(set(self.counts(p.stdout).values()), {0})
        # A shorter retention reaches the 10-day-old rows; never the others.
        p = self.purge("--older-than", "5", "--quiet")
        self.assertEqual((p.returncode, p.stdout), (0, ""), p.stderr)
        mono_left = harness.query(self.mono, "select status, consumed_at is null, "
                                  "handed_off_at is null from sent_mail order by id")
        self.assertEqual(mono_left, [("delegated", False, True), ("pending", False, True),
                                     ("sent", True, True)])

    def test_bad_values_exit_2_and_change_nothing(self):
        self.fixture()
        before = self.remaining()
        for args in ([], ["--older-than", "0"], ["--older-than", "-3"],
                     ["--older-than", "ten"], ["--older-than", "36501"],
                     ["--older-than", "1.5"], ["--older-than", ""], ["--older-than", "30", "x"]):
            with self.subTest(args=args):
                p = self.purge(*args)
                self.assertEqual(p.returncode, 2, p.stdout + p.stderr)
                self.assertTrue("older-than" in p.stderr or "no arguments" in p.stderr, p.stderr)
        p = subprocess.run([RECONCILER, "run", "--older-than", "3"],
                           env=dict(os.environ, MONO_DATABASE_URL=self.mono,
                                    MICRO_DATABASE_URL=self.micro),
                           capture_output=True, text=True)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertEqual(self.remaining(), before)

    def test_another_purge_holds_the_lock(self):
        self.fixture()
        before = self.remaining()
        for url in (self.mono, self.micro):
            with self.subTest(url=url):
                holder = harness.db(url)
                try:
                    with holder.cursor() as cur:
                        cur.execute("select pg_advisory_lock(%s, 1)", (0x52454331,))
                    p = self.purge("--older-than", "30")
                    self.assertEqual(p.returncode, 4, p.stderr)
                    self.assertIn("another purge holds the lock", p.stderr)
                    self.assertEqual(self.remaining(), before)
                    p = self.purge("--older-than", "30", "--dry-run")
                    self.assertEqual(p.returncode, 0, p.stderr)
                finally:
                    holder.close()

    def test_a_database_down_exits_3(self):
        p = self.purge("--older-than", "30",
                       micro=f"postgresql://postgres@127.0.0.1:{harness.free_port()}/micro")
        self.assertEqual(p.returncode, 3, p.stderr)
        self.assertIn("postgresMicro", p.stderr)

    def test_a_million_rows_in_short_batches(self):
        n, blocker = 1_000_000, 990_001
        harness.execute(self.mono, "insert into payroll (ship_to, total) values ('P', 1)")
        # 1,000,000 rows: every 20th still pending (kept), the rest sent and
        # consumed 60 days ago; plus 100,000 on the spy's side. Ids in
        # order (uuids from the counter) keep the load quick: random uuids
        # cost the unique index minutes on a loaded machine.
        harness.execute(self.mono, f"""
            insert into sent_mail (correlation_id, payroll_id, destination, subject, body,
                                   status, consumed_at)
            select lpad(to_hex(g), 32, '0')::uuid, (select min(id) from payroll), 'a@example.com',
                   'Payroll ' || g || ' shipped', 'Hello P,\r\n\r\nPayroll shipped.\r\n',
                   case when mod(g, 20) = 0 then 'pending' else 'sent' end,
                   now() - interval '60 days'
              from generate_series(1, {n}) g""")
        harness.execute(self.mono, "analyze sent_mail")
        harness.execute(self.micro, """
            insert into spied_mail (correlation_id, payroll_id, destination, subject, body,
                                    consumed_at)
            select lpad(to_hex(g), 32, '0')::uuid, g, 'a@example.com', 's', 'b',
                   now() - interval '60 days'
              from generate_series(1, 100000) g""")
        first = harness.query(self.mono, "select min(id) from sent_mail")[0][0]
        block_id = first + blocker - 1     # a row the purge would delete, near the end
        holder = harness.db(self.mono)
        holder.autocommit = False
        cur = holder.cursor()
        cur.execute("select id from sent_mail where id = %s for update", (block_id,))
        env = dict(os.environ, MONO_DATABASE_URL=self.mono, MICRO_DATABASE_URL=self.micro)
        proc = subprocess.Popen([RECONCILER, "purge", "--older-than", "30"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            def waiting():
                if proc.poll() is not None:
                    raise AssertionError("purge ended before reaching the locked row: "
                                         + proc.stderr.read())
                return harness.query(self.mono, """select count(*) from pg_stat_activity
                    where application_name = 'reconciler' and wait_event_type = 'Lock'
                      and datname = current_database()""")[0][0] == 1
            harness.wait_for(waiting, timeout=300, what="purge waiting on the locked row")
            # Every batch before the blocked one is committed and visible.
            left_before = harness.query(self.mono, "select count(*) from sent_mail "
                                        "where id < %s and status = 'sent'",
                                        (block_id - 2 * 5000,))[0][0]
            self.assertEqual(left_before, 0)
            # The table is open to writers meanwhile.
            harness.execute(self.mono, """set local lock_timeout = '2s';
                insert into sent_mail (correlation_id, payroll_id, destination, subject, body)
                values (gen_random_uuid(), (select min(id) from payroll), 'w@example.com', 's', 'b');
                update sent_mail set attempts = attempts + 1 where id = %s""", (first + 19,))
            modes = {r[0] for r in harness.query(self.mono, """
                select l.mode from pg_locks l join pg_stat_activity a on a.pid = l.pid
                 where a.application_name = 'reconciler' and l.locktype = 'relation'
                   and a.datname = current_database()
                   and l.relation = 'sent_mail'::regclass""")}
            self.assertTrue(modes <= {"AccessShareLock", "RowExclusiveLock"}, modes)
        finally:
            holder.rollback()
            holder.close()
        out, err = proc.communicate(timeout=600)
        if proc.returncode == 3:
            # lock_timeout ran out while the row was held: a rerun finishes.
            self.assertIn("lock", err)
            p = self.purge("--older-than", "30")
            self.assertEqual(p.returncode, 0, p.stderr)
        else:
            self.assertEqual(proc.returncode, 0, err)
        self.assertEqual(harness.query(self.mono, "select status, count(*) from sent_mail "
                                       "group by 1 order by 1"),
                         [("pending", n // 20 + 1)])
        self.assertEqual(harness.query(self.micro, "select count(*) from spied_mail")[0][0], 0)


if __name__ == "__main__":
    unittest.main()
