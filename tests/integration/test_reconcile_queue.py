"""reconcile_queue (sql/*.sql version 3): the reconciler finds unconsumed
rows through a queue kept by triggers, so that a consume touches no index
of the mail tables and PostgreSQL can update the row in place (HOT).

What a user relies on, from outside: consumed_at stays the truth whoever
writes the tables (services, an operator's UPDATE, a test's INSERT, COPY,
DELETE, TRUNCATE); an existing version-2 database migrates in place and
keeps every unconsumed row; a reconciler run consumes mostly in place."""
import io
import os
import subprocess
import time
import unittest

import psycopg2

from canary_env import scratch_db
from harness import MICRO_URL, MONO_URL, TOP
from reconciler_util import RECONCILER, q

TABLES = (("mono", MONO_URL, "sent_mail", ["mono.sql", "reconciler.sql"]),
          ("micro", MICRO_URL, "spied_mail", ["micro.sql"]))


def queue_matches(tc, url, table, what):
    queued = {r[0] for r in q(url, "select correlation_id::text from reconcile_queue")}
    unconsumed = {r[0] for r in q(url, f"select correlation_id::text from {table}"
                                       " where consumed_at is null")}
    tc.assertEqual(queued, unconsumed, f"{table}: queue vs unconsumed rows after {what}")
    return len(queued)


def insert(url, table, ids, consumed=False):
    q(url, f"insert into {table} (correlation_id, payroll_id, destination, subject, body,"
           f" consumed_at) select md5(x)::uuid, %s, 'd', 's', 'b', %s from unnest(%s) x"
           f" on conflict do nothing",
      (PAYROLL[url], "2026-01-01" if consumed else None, list(ids)))


PAYROLL = {}


class Schema(unittest.TestCase):
    def test_no_index_of_the_mail_tables_involves_consumption(self):
        """A consume can stay on its page only if no index (its columns,
        expressions or predicate) mentions consumed_at or consumed_by."""
        for side, url, table, _ in TABLES:
            with self.subTest(side=side):
                defs = q(url, "select indexdef from pg_indexes where tablename = %s", (table,))
                self.assertTrue(defs)
                for (d,) in defs:
                    self.assertNotIn("consumed_", d, d)
                self.assertEqual(q(url, "select max(version) from schema_version"
                                        " where version < 100")[0][0], 3)


class QueueFollowsEveryWriter(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.urls = {}
        for side, url, table, files in TABLES:
            u = scratch_db(url, f"queue_{side}", files)
            cls.urls[side] = u
            if table == "sent_mail":
                PAYROLL[u] = q(u, "insert into payroll (ship_to, total) values ('t', 1)"
                                  " returning id")[0][0]
            else:
                PAYROLL[u] = 1

    def test_each_kind_of_write(self):
        for side, _, table, _ in TABLES:
            url = self.urls[side]
            with self.subTest(side=side):
                q(url, f"truncate {table}")
                insert(url, table, [f"a{i}" for i in range(50)])
                insert(url, table, [f"c{i}" for i in range(20)], consumed=True)
                self.assertEqual(queue_matches(self, url, table, "insert"), 50)
                # A repeated id (ON CONFLICT DO NOTHING) changes nothing.
                insert(url, table, ["a1", "a2"])
                queue_matches(self, url, table, "repeated insert")
                # An operator consumes some by hand, then un-consumes others.
                q(url, f"update {table} set consumed_at = now() where correlation_id in"
                       " (select md5('a' || i)::uuid from generate_series(0, 9) i)")
                self.assertEqual(queue_matches(self, url, table, "consume by hand"), 40)
                q(url, f"update {table} set consumed_at = null where correlation_id in"
                       " (select md5('c' || i)::uuid from generate_series(0, 4) i)")
                self.assertEqual(queue_matches(self, url, table, "un-consume"), 45)
                # An update that leaves consumed_at alone.
                q(url, f"update {table} set body = body || '.'")
                queue_matches(self, url, table, "other column")
                # COPY in.
                conn = psycopg2.connect(url)
                conn.autocommit = True
                with conn.cursor() as c:
                    rows = "".join(f"{'%032x' % (0xabc000 + i)}\t{PAYROLL[url]}\td\ts\tb\n"
                                   for i in range(7))
                    c.copy_expert(f"copy {table} (correlation_id, payroll_id, destination,"
                                  " subject, body) from stdin", io.StringIO(rows))
                conn.close()
                self.assertEqual(queue_matches(self, url, table, "copy"), 52)
                q(url, f"delete from {table} where correlation_id in"
                       " (select md5('a' || i)::uuid from generate_series(10, 19) i)")
                self.assertEqual(queue_matches(self, url, table, "delete"), 42)
                # A transaction that rolls back leaves the queue as it was.
                conn = psycopg2.connect(url)
                with conn.cursor() as c:
                    c.execute(f"update {table} set consumed_at = now()")
                conn.rollback()
                conn.close()
                self.assertEqual(queue_matches(self, url, table, "rollback"), 42)
                q(url, f"truncate {table}")
                self.assertEqual(queue_matches(self, url, table, "truncate"), 0)

    def test_a_session_that_keeps_the_queue_itself(self):
        """reconcile_queue.caller_keeps = on (what the reconciler's writers
        say): the trigger stays out and the session's own DELETE counts."""
        side, _, table, _ = TABLES[1]
        url = self.urls[side]
        q(url, f"truncate {table}")
        insert(url, table, [f"k{i}" for i in range(10)])
        conn = psycopg2.connect(url)
        with conn.cursor() as c:
            c.execute("set local reconcile_queue.caller_keeps = on")
            c.execute(f"update {table} set consumed_at = now()")
            c.execute("select count(*) from reconcile_queue")
            self.assertEqual(c.fetchone()[0], 10)
            c.execute("delete from reconcile_queue")
        conn.commit()
        conn.close()
        self.assertEqual(queue_matches(self, url, table, "caller keeps"), 0)


class MigrationFromVersion2(unittest.TestCase):
    """A database made by the version-2 files (as of git ae4f79a, before
    the queue) with rows in it: loading today's file queues its unconsumed
    rows, drops the old partial index, and a second load changes nothing."""

    V2 = "ae4f79a"

    def old_sql(self, name):
        return subprocess.run(["git", "-C", TOP, "show", f"{self.V2}:sql/{name}"],
                              check=True, capture_output=True, text=True).stdout

    def test_v2_database_migrates_in_place(self):
        try:
            self.old_sql("micro.sql")
        except subprocess.CalledProcessError:
            self.skipTest("git history not available")
        urls = {}
        for side, url, table, files in TABLES:
            u = scratch_db(url, f"queue_v2_{side}", [])
            for f in files:
                q(u, self.old_sql(f) if f != "reconciler.sql" else
                  open(os.path.join(TOP, "sql", f)).read())
            self.assertEqual(q(u, "select to_regclass('reconcile_queue')")[0][0], None)
            PAYROLL[u] = (q(u, "insert into payroll (ship_to, total) values ('t', 1)"
                               " returning id")[0][0] if table == "sent_mail" else 1)
            # 300 pairs, a third already consumed by an earlier run.
            insert(u, table, [f"m{i}" for i in range(200)])
            insert(u, table, [f"o{i}" for i in range(100)], consumed=True)
            urls[side] = u
        # The reconciler of this version refuses the old schema, naming
        # the file to load, and writes nothing.
        env = dict(os.environ, MONO_DATABASE_URL=urls["mono"],
                   MICRO_DATABASE_URL=urls["micro"])
        p = subprocess.run([RECONCILER, "run", "--grace", "0"], env=env,
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(p.returncode, 3, p.stdout + p.stderr)
        self.assertIn("sql/mono.sql", p.stderr)
        self.assertEqual(q(urls["mono"], "select count(*) from reconciliation_run")[0][0], 0)
        for side, _, table, files in TABLES:
            u = urls[side]
            for attempt in (1, 2):
                for f in files:
                    q(u, open(os.path.join(TOP, "sql", f)).read())
                with self.subTest(side=side, load=attempt):
                    self.assertEqual(queue_matches(self, u, table, "migration"), 200)
                    self.assertEqual(q(u, "select to_regclass(%s)",
                                       (f"{table}_unconsumed",))[0][0], None)
                    self.assertEqual(q(u, "select count(*) from schema_version"
                                          " where version = 3")[0][0], 1)
        p = subprocess.run([RECONCILER, "run", "--grace", "0"], env=env,
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        for side, _, table, _ in TABLES:
            self.assertEqual(q(urls[side], f"select count(*) from {table}"
                                           " where consumed_at is null")[0][0], 0)
            self.assertEqual(queue_matches(self, urls[side], table, "run"), 0)


class ConsumesStayOnTheirPage(unittest.TestCase):
    def test_a_run_consumes_mostly_in_place(self):
        """Most consumes of a run are HOT updates (no new index entries).
        With an index on consumed_at, or a read snapshot held through the
        marks, none would be."""
        n = 6000
        urls = {}
        for side, url, table, files in TABLES:
            u = scratch_db(url, f"queue_hot_{side}", files)
            PAYROLL[u] = (q(u, "insert into payroll (ship_to, total) values ('t', 1)"
                               " returning id")[0][0] if table == "sent_mail" else 1)
            q(u, f"insert into {table} (correlation_id, payroll_id, destination, subject,"
                 f" body, created_at) select md5('h' || i)::uuid, %s, 'u' || i || '@x',"
                 f" 'Payroll ' || i, repeat('b', 300) || i, now() - interval '1 hour'"
                 f" from generate_series(1, {n}) i", (PAYROLL[u],))
            q(u, f"vacuum analyze {table}")
            urls[side] = u
        env = dict(os.environ, MONO_DATABASE_URL=urls["mono"],
                   MICRO_DATABASE_URL=urls["micro"], RECONCILER_BATCH_ROWS="500")
        p = subprocess.run([RECONCILER, "run", "--grace", "0"], env=env,
                           capture_output=True, text=True, timeout=300)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        for side, _, table, _ in TABLES:
            u = urls[side]
            # The run's backends report their counts as they exit.
            deadline = time.time() + 20
            while True:
                upd, hot = q(u, "select n_tup_upd, n_tup_hot_upd from pg_stat_user_tables"
                                " where relname = %s", (table,))[0]
                if upd >= n or time.time() > deadline:
                    break
                time.sleep(0.2)
            with self.subTest(side=side):
                self.assertEqual(upd, n)
                self.assertGreater(hot, n // 4, f"{hot} of {upd} consumes were HOT")
            self.assertEqual(queue_matches(self, u, table, "run"), 0)


if __name__ == "__main__":
    unittest.main()
