"""reconcile_queue (sql/*.sql versions 3 and 4): the reconciler finds
unconsumed rows through a queue kept by triggers, so that a consume touches
no index of the mail tables and PostgreSQL can update the row in place
(HOT). A writer that queues its own rows says so (reconcile_queue.
caller_keeps) and the triggers stay out: mailer-spy's batches do.

What a user relies on, from outside: consumed_at stays the truth whoever
writes the tables (services, an operator's UPDATE, a test's INSERT, COPY,
DELETE, TRUNCATE); an existing version-2 database migrates in place and
keeps every unconsumed row; a reconciler run consumes mostly in place;
mailer-spy queues what it records, and refuses a database without the
queue."""
import io
import os
import subprocess
import threading
import time
import unittest
import uuid

import psycopg2

import harness
from canary_env import scratch_db
from harness import MICRO_URL, MONO_URL, TOP
from reconciler_util import RECONCILER, q

TABLES = (("mono", MONO_URL, "sent_mail", ["mono.sql", "queue.sql", "reconciler.sql"]),
          ("micro", MICRO_URL, "spied_mail", ["micro.sql", "queue.sql"]))


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
                                        " where version < 100")[0][0], 4)

    def test_the_insert_trigger_is_per_row_and_steps_aside_for_caller_keeps(self):
        """Version 4: no transition table (a copy of every inserted row)
        is built for an INSERT, and a session that queues its own rows can
        turn the trigger off with caller_keeps."""
        for side, url, table, _ in TABLES:
            with self.subTest(side=side):
                (tgtype, when), = q(url, "select tgtype, pg_get_triggerdef(oid) from"
                                         " pg_trigger where tgname = %s",
                                    (f"{table}_queue_insert",))
                self.assertEqual(tgtype & 1, 1, "a row trigger")
                self.assertIn("caller_keeps", when)


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

    def test_an_insert_under_caller_keeps_is_left_to_the_caller(self):
        """Both sides: with caller_keeps the INSERT trigger queues nothing,
        so the caller's own queue insert (as mailer-spy's batch does it, in
        the same statement) is the only one; without it, the trigger
        queues each row."""
        for side, _, table, _ in TABLES:
            url = self.urls[side]
            with self.subTest(side=side):
                q(url, f"truncate {table}")
                conn = psycopg2.connect(url)
                with conn.cursor() as c:
                    c.execute("set local reconcile_queue.caller_keeps = on")
                    c.execute(f"insert into {table} (correlation_id, payroll_id,"
                              " destination, subject, body) select md5('n' || i)::uuid,"
                              " %s, 'd', 's', 'b' from generate_series(1, 5) i",
                              (PAYROLL[url],))
                    c.execute("select count(*) from reconcile_queue")
                    self.assertEqual(c.fetchone()[0], 0)
                    c.execute(f"with ins as (insert into {table} (correlation_id,"
                              " payroll_id, destination, subject, body) select"
                              " md5('s' || i)::uuid, %s, 'd', 's', 'b' from"
                              " generate_series(1, 4) i returning correlation_id)"
                              " insert into reconcile_queue select correlation_id"
                              " from ins", (PAYROLL[url],))
                    c.execute(f"delete from {table} where correlation_id in"
                              " (select md5('n' || i)::uuid from generate_series(1, 5) i)")
                conn.commit()
                conn.close()
                self.assertEqual(queue_matches(self, url, table, "caller's own insert"), 4)
                insert(url, table, [f"t{i}" for i in range(3)])
                self.assertEqual(queue_matches(self, url, table, "trigger's insert"), 7)


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
                if f == "queue.sql":
                    continue        # the queue came with version 3
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
                                          " where version in (3, 4)")[0][0], 2)
        p = subprocess.run([RECONCILER, "run", "--grace", "0"], env=env,
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        for side, _, table, _ in TABLES:
            self.assertEqual(q(urls[side], f"select count(*) from {table}"
                                           " where consumed_at is null")[0][0], 0)
            self.assertEqual(queue_matches(self, urls[side], table, "run"), 0)


class MigrationFromVersion3(unittest.TestCase):
    """A version-3 database (statement INSERT trigger, git e3e862f) with
    rows: loading today's file turns the trigger into the row trigger, keeps
    the queue as it was, and what is written afterwards is queued."""

    V3 = "e3e862f"

    def test_v3_database_migrates_in_place(self):
        try:
            old = {f: subprocess.run(["git", "-C", TOP, "show", f"{self.V3}:sql/{f}"],
                                     check=True, capture_output=True, text=True).stdout
                   for f in ("mono.sql", "micro.sql")}
        except subprocess.CalledProcessError:
            self.skipTest("git history not available")
        for side, url, table, files in TABLES:
            with self.subTest(side=side):
                u = scratch_db(url, f"queue_v3_{side}", [])
                for f in files:
                    if f != "queue.sql":    # version 3's files held the queue
                        q(u, old[f] if f in old else
                          open(os.path.join(TOP, "sql", f)).read())
                PAYROLL[u] = (q(u, "insert into payroll (ship_to, total) values ('t', 1)"
                                   " returning id")[0][0] if table == "sent_mail" else 1)
                self.assertEqual(q(u, "select tgtype & 1 from pg_trigger where tgname = %s",
                                   (f"{table}_queue_insert",))[0][0], 0)
                insert(u, table, [f"v{i}" for i in range(30)])
                insert(u, table, [f"w{i}" for i in range(10)], consumed=True)
                self.assertEqual(queue_matches(self, u, table, "v3 inserts"), 30)
                for _ in (1, 2):
                    for f in files[:2]:     # the mail table's file, queue.sql
                        q(u, open(os.path.join(TOP, "sql", f)).read())
                    self.assertEqual(q(u, "select tgtype & 1 from pg_trigger where"
                                          " tgname = %s", (f"{table}_queue_insert",))[0][0], 1)
                    self.assertEqual(queue_matches(self, u, table, "migration"), 30)
                self.assertEqual(q(u, "select count(*) from pg_proc where proname = %s",
                                   (f"{table}_queue_insert",))[0][0], 0)
                self.assertEqual(q(u, "select array_agg(version order by version) from"
                                      " schema_version where version < 100")[0][0],
                                 [1, 2, 3, 4])
                insert(u, table, [f"x{i}" for i in range(5)])
                self.assertEqual(queue_matches(self, u, table, "insert after"), 35)


@unittest.skipUnless(os.path.exists(os.path.join(harness.BIN_DIR, "mailer-spy")),
                     "mailer-spy not built")
class SpyQueuesWhatItRecords(unittest.TestCase):
    def test_the_spy_queues_its_rows_itself_and_once(self):
        """mailer-spy's batch queues its new rows in its own statement: with
        the table's INSERT trigger disabled every recorded row is still
        queued, and a repeated id (200, nothing written) queues nothing."""
        u = scratch_db(MICRO_URL, "queue_spy", ["micro.sql", "queue.sql"])
        q(u, "alter table spied_mail disable trigger spied_mail_queue_insert")
        spy = harness.Service("mailer-spy", env={"MICRO_DATABASE_URL": u,
                                                  "SPY_MODE": "spy"},
                              log_name="queue-spy").start()
        self.addCleanup(spy.stop)
        ids = [str(uuid.UUID(int=0xbeef0000 + i)) for i in range(40)]
        results = {}
        lock = threading.Lock()

        def post(cid, n):
            st, _, body = spy.request("POST", "/notifications", {
                "correlationId": cid, "payrollId": n, "shipTo": f"Queue User {n}",
                "total": 12.5})
            with lock:
                results.setdefault(cid, []).append(st)

        # Concurrent, so that batches of several rows (and repeats inside a
        # batch) happen; each id twice.
        threads = [threading.Thread(target=post, args=(cid, 1 + i % 40))
                   for i, cid in enumerate(ids + ids)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for cid in ids:
            self.assertEqual(sorted(results[cid]), [200, 201], cid)
        self.assertEqual(queue_matches(self, u, "spied_mail", "spy batches"), 40)
        self.assertEqual(q(u, "select count(*) from spied_mail")[0][0], 40)

    def test_the_spy_refuses_a_database_without_the_queue(self):
        """A postgresMicro at schema version 2 (no reconcile_queue): the spy
        does not start, names the file to load, and writes nothing."""
        u = scratch_db(MICRO_URL, "queue_spy_v2", [])
        old = subprocess.run(["git", "-C", TOP, "show", "ae4f79a:sql/micro.sql"],
                             capture_output=True, text=True)
        if old.returncode != 0:
            self.skipTest("git history not available")
        q(u, old.stdout)
        spy = harness.Service("mailer-spy", env={"MICRO_DATABASE_URL": u,
                                                  "SPY_MODE": "spy"},
                              log_name="queue-spy-v2").start(wait=False)
        self.addCleanup(spy.stop)
        self.assertEqual(spy.proc.wait(30), 2)
        spy.log.close()
        self.assertIn("reconcile_queue", spy.log_text())
        self.assertIn("sql/micro.sql", spy.log_text())
        self.assertEqual(q(u, "select count(*) from spied_mail")[0][0], 0)


class ConsumesStayOnTheirPage(unittest.TestCase):
    # A consume stays on its packed page only if the page can be pruned of
    # the versions earlier batches left, and on-access pruning gives up on
    # any version newer than the oldest transaction id still running in the
    # whole cluster, whichever database that transaction is in (PostgreSQL's
    # GlobalVisState: "definitely needed" is the snapshot's xmin, taken
    # cluster-wide). Another class's bulk INSERT or CREATE DATABASE in
    # another slot made 0 of 6,000 consumes HOT here; one session holding
    # `select txid_current()` open in the postgres database does the same
    # every time. So this class runs with nothing beside it.
    runs_alone = True

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
