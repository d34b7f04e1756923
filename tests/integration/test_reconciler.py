"""reconciler: every outcome of DESIGN.md's table from rows written straight
into both databases, reruns reporting nothing twice, grace, dry run, shards,
the lock, unreachable or failing databases, rules, reports and ack."""
import csv
import io
import json
import os
import re
import subprocess
import tempfile
import time
import unittest
import uuid

import psycopg2

from harness import MICRO_URL, MONO_URL, db, free_port
from reconciler_util import (LOCK_CLASS, RECONCILER, bulk, communicate, consumed, insert,
                             q, report_json, reset, run, state)

BODY = "Hello Ann,\r\n\r\nPayroll 1 shipped to Ann of 320.00.\r\n"


def mail(dest="ann@example.com", subj="Payroll 1 shipped", body=BODY):
    return (dest, subj, body)


class Outcomes(unittest.TestCase):
    def setUp(self):
        self.pid = reset()

    def pair(self, mono, micro, age=3600):
        cid = uuid.uuid4()
        if mono:
            insert(MONO_URL, "sent_mail", [(cid,) + mono], self.pid, age)
        if micro:
            insert(MICRO_URL, "spied_mail", [(cid,) + micro], self.pid, age)
        return str(cid)

    def mismatches(self):
        return {r[0]: r[1:] for r in q(
            MONO_URL, "select correlation_id::text, kind, array_to_string(fields, ','),"
            " mono_destination, mono_subject, mono_body, micro_destination, micro_subject,"
            " micro_body, resolved_at is not null, resolution, run_id, resolved_by"
            " from reconciliation_mismatch")}

    def test_each_outcome_then_rerun(self):
        matched = [self.pair(mail(), mail()) for _ in range(3)]
        subj = self.pair(mail(), mail(subj="Payroll 1 sent"))
        body_dest = self.pair(mail(), mail(dest="Ann@example.com", body=BODY + "x"))
        only_mono = self.pair(mail(), None)
        only_micro = self.pair(None, mail(body="spy only"))

        rc, out, err = run("run", "--grace", "0", "--format", "json")
        self.assertEqual(rc, 1, err)
        rep = json.loads(out)
        c = rep["run"]["counts"]
        self.assertEqual((c["matched"], c["content"], c["missing_in_micro"],
                          c["missing_in_mono"], c["new_mismatches"], c["mono_rows"],
                          c["micro_rows"]), (3, 2, 1, 1, 4, 6, 6))
        run_id = rep["run"]["id"]
        self.assertEqual(len(rep["mismatches"]), 4)

        mm = self.mismatches()
        self.assertEqual(set(mm), {subj, body_dest, only_mono, only_micro})
        self.assertEqual(mm[subj][:2], ("content", "subject"))
        self.assertEqual(mm[subj][2:8], mail() + mail(subj="Payroll 1 sent"))
        self.assertEqual(mm[body_dest][:2], ("content", "destination,body"))
        self.assertEqual(mm[only_mono][:2], ("missing_in_micro", ""))
        self.assertEqual(mm[only_mono][2:8], mail() + (None, None, None))
        self.assertEqual(mm[only_micro][:2], ("missing_in_mono", ""))
        self.assertEqual(mm[only_micro][2:8], (None, None, None) + mail(body="spy only"))
        self.assertTrue(all(v[8] is False and v[10] == run_id for v in mm.values()))

        for url, table in ((MONO_URL, "sent_mail"), (MICRO_URL, "spied_mail")):
            rows = dict(q(url, f"select correlation_id::text, consumed_by from {table}"))
            self.assertEqual({k for k, v in rows.items() if v is not None}, set(matched))
            self.assertTrue(all(rows[k] == run_id for k in matched))

        before = state()
        rc, out, err = run("run", "--grace", "0", "--format", "json")
        self.assertEqual(rc, 0, err)
        c = json.loads(out)["run"]["counts"]
        self.assertEqual((c["matched"], c["new_mismatches"], c["skipped_open"]), (0, 0, 4))
        self.assertEqual(json.loads(out)["mismatches"], [])
        self.assertEqual(state(), before)

    # Values that a text COPY would escape or that differ from each other
    # by one byte only: the binary streams, the spill file and the binary
    # array parameters must carry them byte for byte (a match stays a
    # match, a near miss is a mismatch stored exactly as written).
    TRICKY = [
        ("tab\there", "tab here"),
        ("back\\slash", "back\\\\slash"),
        ("\\N", ""),
        ("", " "),
        ("line\nbreak", "line\\nbreak"),
        ("cr\r\nlf", "cr\nlf"),
        ("caf\u00e9 \u00fc \u6f22\u5b57 \U0001F600", "cafe\u0301 \u00fc \u6f22\u5b57 \U0001F600"),
        ("quote\"'comma,semi;", "quote\"'comma,semi;\t"),
        ("\x01ctrl\x7f\x1b[0m", "\x01ctrl\x7f\x1b[1m"),
        ("\\x41 \\\\x41", "A \\\\x41"),
        ("x" * 100000 + "a", "x" * 100000 + "b"),
    ]

    def test_bytes_compare_exactly(self):
        """Every field through each path: one COPY, chunks that end between
        the pairs, and batches small enough to go through several spilled
        and ramped batches."""
        for env in ({}, {"RECONCILER_READ_CHUNK": "3"},
                    {"RECONCILER_BATCH_ROWS": "4", "RECONCILER_READ_CHUNK": "5"}):
            with self.subTest(env=env):
                self.pid = reset()
                same, diff, alone = [], {}, {}
                for v, alt in self.TRICKY:
                    for f in range(3):
                        m = list(mail())
                        m[f] = v
                        same.append(self.pair(tuple(m), tuple(m)))
                        x = list(m)
                        x[f] = alt
                        diff[self.pair(tuple(m), tuple(x))] = (f, tuple(m), tuple(x))
                    alone[self.pair(mail(body=v), None)] = ("missing_in_micro", mail(body=v))
                    alone[self.pair(None, mail(subj=alt))] = ("missing_in_mono", mail(subj=alt))
                rc, out, err = run("run", "--grace", "0", "--format", "json", env=env)
                self.assertEqual(rc, 1, err)
                c = json.loads(out)["run"]["counts"]
                self.assertEqual((c["matched"], c["content"], c["missing_in_micro"],
                                  c["missing_in_mono"]),
                                 (len(same), len(diff), len(self.TRICKY), len(self.TRICKY)))
                for url, table in ((MONO_URL, "sent_mail"), (MICRO_URL, "spied_mail")):
                    self.assertEqual(consumed(url, table), set(same))
                mm = self.mismatches()
                self.assertEqual(set(mm), set(diff) | set(alone))
                names = ("destination", "subject", "body")
                for cid, (f, m, x) in diff.items():
                    self.assertEqual(mm[cid][:2], ("content", names[f]))
                    self.assertEqual(mm[cid][2:8], m + x)
                for cid, (kind, m) in alone.items():
                    self.assertEqual(mm[cid][0], kind)
                    want = m + (None,) * 3 if kind == "missing_in_micro" else (None,) * 3 + m
                    self.assertEqual(mm[cid][2:8], want)
                # The JSON report carries the same bytes.
                rep = {r["correlation_id"]: r for r in json.loads(out)["mismatches"]}
                for cid, (f, m, x) in diff.items():
                    self.assertEqual(rep[cid]["mono"][names[f]], m[f])
                    self.assertEqual(rep[cid]["micro"][names[f]], x[f])

    def test_late_arrival_resolves_missing(self):
        late_same = self.pair(mail(), None)
        late_diff = self.pair(None, mail())
        self.assertEqual(run("run", "--grace", "0")[0], 1)
        first = report_json()["run"]["id"]

        insert(MICRO_URL, "spied_mail", [(late_same,) + mail()], self.pid)
        insert(MONO_URL, "sent_mail", [(late_diff,) + mail(subj="other")], self.pid)
        rc, out, err = run("run", "--grace", "0", "--format", "json")
        self.assertEqual(rc, 1, err)   # the late pair that differs is new
        rep = json.loads(out)
        c = rep["run"]["counts"]
        self.assertEqual((c["late"], c["matched"], c["content"], c["new_mismatches"]),
                         (2, 1, 1, 1))
        second = rep["run"]["id"]
        rows = q(MONO_URL, "select correlation_id::text, kind, resolution, resolved_by,"
                 " run_id from reconciliation_mismatch order by id")
        self.assertEqual(sorted(rows), sorted([
            (late_same, "missing_in_micro", "late", second, first),
            (late_diff, "missing_in_mono", "late", second, first),
            (late_diff, "content", None, None, second)]))
        self.assertIn(late_same, consumed(MONO_URL, "sent_mail"))
        self.assertIn(late_same, consumed(MICRO_URL, "spied_mail"))
        self.assertNotIn(late_diff, consumed(MONO_URL, "sent_mail"))
        self.assertEqual(run("run", "--grace", "0")[0], 0)

    def test_healing_after_a_crash_between_marks(self):
        cid = self.pair(mail(), mail())
        q(MICRO_URL, "update spied_mail set consumed_at = now(), consumed_by = 999")
        other = self.pair(mail(), None)
        q(MICRO_URL, "insert into spied_mail (correlation_id, payroll_id, destination,"
          " subject, body, created_at, consumed_at, consumed_by) values (%s, 1, %s, %s, %s,"
          " now() - interval '1 hour', now(), 999)", (other,) + mail(body="not the same"))
        rc, out, err = run("run", "--grace", "0", "--format", "json")
        self.assertEqual(rc, 1, err)
        c = json.loads(out)["run"]["counts"]
        self.assertEqual((c["healed"], c["content"], c["missing_in_micro"]), (1, 1, 0))
        self.assertEqual(consumed(MONO_URL, "sent_mail"), {cid})
        self.assertEqual([r[0] for r in q(MONO_URL, "select kind from reconciliation_mismatch")],
                         ["content"])
        # A second run: nothing reported twice, nothing consumed anew.
        before = state()
        rc, out, err = run("run", "--grace", "0", "--format", "json")
        self.assertEqual(rc, 0, err)
        c = json.loads(out)["run"]["counts"]
        self.assertEqual((c["healed"], c["new_mismatches"], c["skipped_open"]), (0, 0, 1))
        self.assertEqual(state(), before)

    def test_grace(self):
        young_pair = self.pair(mail(), mail(), age=0)
        half = self.pair(mail(), None)
        insert(MICRO_URL, "spied_mail", [(half,) + mail()], self.pid, age=0)
        young_alone = self.pair(mail(), None, age=0)
        rc, out, err = run("run", "--grace", "60", "--format", "json")
        self.assertEqual(rc, 0, err)
        c = json.loads(out)["run"]["counts"]
        self.assertEqual((c["mono_rows"], c["micro_rows"], c["matched"], c["deferred"],
                          c["new_mismatches"]), (1, 0, 0, 1, 0))
        self.assertEqual(consumed(MONO_URL, "sent_mail"), set())
        self.assertEqual(q(MONO_URL, "select count(*) from reconciliation_mismatch")[0][0], 0)
        # Once the grace has passed, they are compared.
        rc, out, err = run("run", "--grace", "0", "--format", "json")
        self.assertEqual(rc, 1, err)
        c = json.loads(out)["run"]["counts"]
        self.assertEqual((c["matched"], c["missing_in_micro"]), (2, 1))
        self.assertEqual(consumed(MONO_URL, "sent_mail"), {young_pair, half})
        self.assertEqual(q(MONO_URL, "select correlation_id::text from reconciliation_mismatch"),
                         [(young_alone,)])

    def test_dry_run_changes_nothing(self):
        # An open "missing" whose partner has arrived (a run would resolve
        # it as late) and a row whose partner is consumed (a run would heal
        # it): a dry run reports both and writes neither.
        late = self.pair(mail(), None)
        self.assertEqual(run("run", "--grace", "0")[0], 1)
        insert(MICRO_URL, "spied_mail", [(late,) + mail()], self.pid)
        healed = self.pair(mail(), mail())
        q(MICRO_URL, "update spied_mail set consumed_at = now(), consumed_by = 999"
          " where correlation_id = %s", (healed,))
        self.pair(mail(), mail())
        self.pair(mail(), mail(body="<b>x</b>"))
        self.pair(mail(), None)
        before = state()
        runs = q(MONO_URL, "select count(*) from reconciliation_run")
        rc, out, err = run("run", "--dry-run", "--grace", "0", "--format", "json")
        self.assertEqual(rc, 1, err)
        rep = json.loads(out)
        self.assertTrue(rep["run"]["dry_run"])
        c = rep["run"]["counts"]
        self.assertEqual((c["matched"], c["late"], c["healed"], c["content"],
                          c["missing_in_micro"]), (2, 1, 1, 1, 1))
        self.assertEqual(len(rep["mismatches"]), 2)
        self.assertEqual(state(), before)
        self.assertEqual(q(MONO_URL, "select count(*) from reconciliation_run"), runs)
        rc, out, err = run("run", "-n", "--grace", "0")
        self.assertEqual(rc, 1)
        self.assertIn("dry run", out)
        self.assertIn("mismatch - ", out)     # never stored: no id to show
        self.assertNotIn("mismatch 0 ", out)
        rc, out, err = run("run", "-n", "--grace", "0", "--format", "html")
        self.assertEqual(rc, 1)
        self.assertIn("Mismatch (dry run)", out)
        self.assertEqual(state(), before)

    def test_rules_absorb_noise(self):
        ign = self.pair(mail(), mail(dest="ANN@example.com",
                                     body=BODY.replace("Ann of", "Ann  of")))
        real = self.pair(mail(), mail(dest="Ann@example.com", subj="x"))
        with tempfile.NamedTemporaryFile("w", suffix=".rules", delete=False) as f:
            f.write("# test rules\n[dest-case]\nfield = destination\nlowercase = yes\n\n"
                    "[spaces]\nfield = body\nregex = [ ]+\nreplace = _\n")
            path = f.name
        try:
            rc, out, err = run("run", "--grace", "0", "--rules", path, "--format", "json")
        finally:
            os.unlink(path)
        self.assertEqual(rc, 1, err)
        rep = json.loads(out)
        c = rep["run"]["counts"]
        self.assertEqual((c["matched"], c["ignored"], c["content"]), (0, 1, 1))
        self.assertEqual(rep["run"]["rules"], [{"rule": "dest-case", "absorbed": 2},
                                               {"rule": "spaces", "absorbed": 1}])
        self.assertIn(ign, consumed(MONO_URL, "sent_mail"))
        self.assertIn(ign, consumed(MICRO_URL, "spied_mail"))
        self.assertEqual(q(MONO_URL, "select correlation_id::text, array_to_string(fields, ',')"
                           " from reconciliation_mismatch"), [(real, "subject")])

    def test_documented_rules_example_works(self):
        """The rules file shown in docs/RECONCILER.md, copied as a user
        would, parses and absorbs what it says it does."""
        with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                               "docs", "RECONCILER.md")) as f:
            doc = f.read()
        section = doc[doc.index("## Noise rules"):]
        example = section[section.index("```\n") + 4:]
        example = example[:example.index("```")]
        stamped = BODY + "Sent 2026-01-01T10:00:00Z\r\n"
        ign = self.pair(mail(body=stamped),
                        mail(dest="ANN@example.com", subj="Payroll 1 shipped ",
                             body=stamped.replace("01T10:00:00Z", "02T11:30:00Z")))
        with tempfile.NamedTemporaryFile("w", suffix=".rules") as f:
            f.write(example)
            f.flush()
            rc, out, err = run("run", "--grace", "0", "--rules", f.name, "--format", "json")
        self.assertEqual(rc, 0, err)
        rep = json.loads(out)
        self.assertEqual(rep["run"]["counts"]["ignored"], 1)
        self.assertEqual(rep["run"]["rules"], [{"rule": "timestamp", "absorbed": 1},
                                               {"rule": "destination-case", "absorbed": 1},
                                               {"rule": "blanks", "absorbed": 1}])
        self.assertIn(ign, consumed(MICRO_URL, "spied_mail"))

    def test_bad_rules_file_is_a_usage_error(self):
        self.pair(mail(), None)
        with tempfile.NamedTemporaryFile("w", suffix=".rules") as f:
            f.write("[x]\nfield = body\nregex = (\n")
            f.flush()
            rc, out, err = run("run", "--grace", "0", "--rules", f.name)
        self.assertEqual(rc, 2)
        self.assertIn(":3: regex", err)
        self.assertEqual(q(MONO_URL, "select count(*) from reconciliation_run")[0][0], 0)

    def test_reports_and_ack(self):
        self.pair(mail(), mail())
        evil = self.pair(mail(), mail(body=BODY + "<script>alert(1)</script>\r\n"))
        only = self.pair(mail(), None)
        self.assertEqual(run("run", "--grace", "0", "--quiet")[0], 1)
        rep = report_json()
        self.assertEqual(rep["run"]["counts"]["new_mismatches"], len(rep["mismatches"]))
        self.assertEqual(rep["run"]["counts"]["matched"], 1)

        rc, out, err = run("report", "--format", "csv")
        self.assertEqual(rc, 0, err)
        rows = list(csv.DictReader(io.StringIO(out, newline="")))
        self.assertEqual(len(rows), 2)
        self.assertEqual({r["correlation_id"] for r in rows}, {evil, only})
        byid = {r["correlation_id"]: r for r in rows}
        self.assertTrue(byid[evil]["micro_body"].endswith("<script>alert(1)</script>\r\n"))

        rc, out, err = run("report", str(rep["run"]["id"]), "--format", "html")
        self.assertEqual(rc, 0, err)
        self.assertNotIn("<script>", out)
        self.assertIn("&lt;script&gt;alert(1)&lt;/script&gt;", out)
        self.assertIn("<mark>", out)
        self.assertTrue(out.startswith("<!DOCTYPE html>"))

        rc, out, err = run("report")
        self.assertEqual(rc, 0)
        self.assertLess(out.index("new_mismatches 2"), out.index(evil))

        rc, out, err = run("mismatches", "--open", "--format", "json")
        self.assertEqual(len(json.loads(out)["mismatches"]), 2)
        mid = [m["id"] for m in json.loads(out)["mismatches"] if m["correlation_id"] == evil][0]
        rc, out, err = run("ack", str(mid), "--note", "known: new footer")
        self.assertEqual(rc, 0, err)
        self.assertIn(evil, consumed(MONO_URL, "sent_mail"))
        self.assertIn(evil, consumed(MICRO_URL, "spied_mail"))
        self.assertEqual(q(MONO_URL, "select resolution, note from reconciliation_mismatch"
                           " where id = %s", (mid,)), [("ack", "known: new footer")])
        rc, out, err = run("ack", str(mid))
        self.assertEqual(rc, 2)
        self.assertIn("already resolved", err)
        rc, out, err = run("mismatches", "--open", "--format", "csv")
        self.assertEqual(len(list(csv.DictReader(io.StringIO(out, newline="")))), 1)
        # DESIGN.md: `reconciler mismatches` lists the open ones; --all
        # adds the resolved ones, with their resolution.
        rc, out, err = run("mismatches", "--format", "json")
        self.assertEqual(rc, 0, err)
        self.assertEqual([m["correlation_id"] for m in json.loads(out)["mismatches"]], [only])
        rc, out, err = run("mismatches", "--all", "--format", "json")
        self.assertEqual(rc, 0, err)
        self.assertEqual({m["correlation_id"]: m["resolution"]
                          for m in json.loads(out)["mismatches"]}, {evil: "ack", only: None})
        rc, out, err = run("mismatches", "--all")
        self.assertIn("(ack)", out)
        self.assertIn("note: \"known: new footer\"", out)
        self.assertEqual(run("report", "999999")[0], 2)
        # The acknowledged rows are not seen again; the other is still open.
        rc, out, err = run("run", "--grace", "0", "--format", "json")
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out)["run"]["counts"]["skipped_open"], 1)

    def test_ack_of_a_mismatch_resolved_meanwhile(self):
        cid = self.pair(mail(), None)
        self.assertEqual(run("run", "--grace", "0")[0], 1)
        mid = q(MONO_URL, "select id from reconciliation_mismatch")[0][0]
        # Another party holds the mismatch row: ack has looked it up and
        # waits on its update; the other party resolves it and commits.
        other = db(MONO_URL)
        other.autocommit = False
        try:
            with other.cursor() as c:
                c.execute("select 1 from reconciliation_mismatch where id = %s for update",
                          (mid,))
            e = dict(os.environ, MONO_DATABASE_URL=MONO_URL, MICRO_DATABASE_URL=MICRO_URL)
            p = subprocess.Popen([RECONCILER, "ack", str(mid), "--note", "mine"], env=e,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            deadline = time.time() + 60
            while time.time() < deadline and p.poll() is None and not q(
                    MONO_URL, "select 1 from pg_stat_activity where application_name ="
                    " 'reconciler' and wait_event_type = 'Lock' and datname = current_database()"):
                time.sleep(0.05)
            with other.cursor() as c:
                c.execute("update reconciliation_mismatch set resolved_at = now(),"
                          " resolution = 'late' where id = %s", (mid,))
            other.commit()
        finally:
            other.close()
        out, err = p.communicate(timeout=60)
        self.assertEqual(p.returncode, 2, err)
        self.assertIn("resolved meanwhile", err)
        self.assertNotIn("acknowledged", out)
        self.assertEqual(q(MONO_URL, "select resolution, note from reconciliation_mismatch"),
                         [("late", None)])
        self.assertNotIn(cid, consumed(MONO_URL, "sent_mail"))

    def test_quiet_prints_only_news(self):
        self.pair(mail(), mail())
        rc, out, err = run("run", "--grace", "0", "--quiet")
        self.assertEqual((rc, out, err), (0, "", ""))
        self.pair(mail(), None)
        rc, out, err = run("run", "--grace", "0", "--quiet")
        self.assertEqual(rc, 1)
        self.assertIn("missing_in_micro", out)


class Sharding(unittest.TestCase):
    def setUp(self):
        self.pid = reset()

    def load(self):
        reset()
        bulk(MONO_URL, "sent_mail", self.pid, 3000, where="i % 97 <> 0")
        bulk(MICRO_URL, "spied_mail", self.pid, 3000, where="i % 89 <> 0",
             body_sql="case when i % 53 = 0 then 'changed' else 'Hello ' || i ||"
                      " E',\\r\\n\\r\\nPayroll ' || i || ' shipped.\\r\\n' end")

    def test_shards_partition_the_work(self):
        self.load()
        rc, _, err = run("run", "--grace", "0")
        self.assertEqual(rc, 1, err)
        whole = state()
        self.load()
        runs = []
        for k in (1, 2, 3):
            rc, out, err = run("run", "--grace", "0", "--shard", f"{k}/3", "--format", "json")
            self.assertEqual(rc, 1, err)
            runs.append(json.loads(out)["run"])
        self.assertEqual(state(), whole)
        # Disjoint: each consumed row was consumed by exactly one shard's run,
        # and the per-shard rows add up to the whole.
        by = q(MONO_URL, "select consumed_by, count(*) from sent_mail where consumed_by"
               " is not null group by 1")
        self.assertEqual(sorted(r[0] for r in by), sorted(r["id"] for r in runs))
        self.assertEqual(sum(r["counts"]["mono_rows"] for r in runs),
                         q(MONO_URL, "select count(*) from sent_mail")[0][0])
        self.assertEqual(sum(r["counts"]["matched"] for r in runs), len(whole[0]))
        for r in runs:
            self.assertGreater(r["counts"]["matched"], 500)
        # Each shard has its own lock: shard 1 held does not block shard 2.
        conn = db(MONO_URL)
        try:
            with conn.cursor() as c:
                c.execute("select pg_advisory_lock(%s, %s)", (LOCK_CLASS, 3 * 1025 + 1))
            self.assertEqual(run("run", "--grace", "0", "--shard", "1/3")[0], 4)
            self.assertEqual(run("run", "--grace", "0", "--shard", "2/3")[0], 0)
        finally:
            conn.close()


class Safety(unittest.TestCase):
    def setUp(self):
        self.pid = reset()

    def test_lock_held_exits_4_at_once(self):
        insert(MONO_URL, "sent_mail", [(uuid.uuid4(),) + mail()], self.pid)
        for url in (MONO_URL, MICRO_URL):
            conn = db(url)
            try:
                with conn.cursor() as c:
                    c.execute("select pg_advisory_lock(%s, %s)", (LOCK_CLASS, 1026))
                t0 = time.time()
                rc, out, err = run("run", "--grace", "0")
                self.assertEqual(rc, 4, err)
                self.assertIn("another run holds the lock", err)
                self.assertLess(time.time() - t0, 5)
                # A dry run writes nothing and takes no lock: it still runs.
                rc, out, err = run("run", "--grace", "0", "--dry-run")
                self.assertEqual(rc, 1, err)
            finally:
                conn.close()
        self.assertEqual(consumed(MONO_URL, "sent_mail"), set())
        self.assertEqual(q(MONO_URL, "select count(*) from reconciliation_mismatch")[0][0], 0)

    def test_two_runs_started_together(self):
        bulk(MONO_URL, "sent_mail", self.pid, 60000)
        bulk(MICRO_URL, "spied_mail", self.pid, 60000)
        e = dict(os.environ, MONO_DATABASE_URL=MONO_URL, MICRO_DATABASE_URL=MICRO_URL)
        # Whichever run wins the advisory locks then waits on this table
        # lock (it opens its run row), so the two surely overlap however
        # slowly the machine starts them; the loser never touches the table.
        blocker = db(MONO_URL)
        blocker.autocommit = False
        try:
            with blocker.cursor() as c:
                c.execute("lock table reconciliation_run in exclusive mode")
            procs = [subprocess.Popen([RECONCILER, "run", "--grace", "0", "--quiet"],
                                      env=e, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE)
                     for _ in range(2)]
            # The loser exits at once, while the winner is still held.
            deadline = time.time() + 60
            while time.time() < deadline and all(p.poll() is None for p in procs):
                time.sleep(0.05)
            done = [p for p in procs if p.poll() is not None]
            self.assertEqual([p.returncode for p in done], [4])
            self.assertIn(b"another run holds the lock", done[0].stderr.read())
        finally:
            blocker.rollback()
            blocker.close()
        rcs = sorted(p.wait(120) for p in procs)
        for p in procs:
            p.stdout.close()
            p.stderr.close()
        self.assertEqual(rcs, [0, 4])
        self.assertEqual(len(consumed(MICRO_URL, "spied_mail")), 60000)
        self.assertEqual(q(MONO_URL, "select count(*), sum(matched) from reconciliation_run"),
                         [(1, 60000)])

    def test_unreachable_database_exits_3(self):
        insert(MONO_URL, "sent_mail", [(uuid.uuid4(),) + mail()], self.pid)
        closed = f"postgresql://postgres@127.0.0.1:{free_port()}/micro"
        rc, out, err = run("run", "--grace", "0", "--micro", closed)
        self.assertEqual(rc, 3)
        self.assertIn("postgresMicro unreachable", err)
        self.assertEqual(len(err.strip().splitlines()), 1, err)  # one clear line
        self.assertNotIn("\\x0a", err)
        # the documented spelling; --mono and --micro above are its aliases
        rc, out, err = run("run", "--grace", "0", "--mono-database-url", closed)
        self.assertEqual(rc, 3)
        self.assertIn("postgresMono unreachable", err)
        self.assertEqual(q(MONO_URL, "select count(*) from reconciliation_mismatch")[0][0], 0)
        self.assertEqual(q(MONO_URL, "select count(*) from reconciliation_run")[0][0], 0)

    def cut_mid_run(self, url, name):
        """Starts a large run, cuts the reconciler's sessions on url once it
        has consumed something; returns (exit code, stderr)."""
        bulk(MONO_URL, "sent_mail", self.pid, 40000)
        bulk(MICRO_URL, "spied_mail", self.pid, 40000)
        e = dict(os.environ, MONO_DATABASE_URL=MONO_URL, MICRO_DATABASE_URL=MICRO_URL,
                 RECONCILER_BATCH_ROWS="500")
        p = subprocess.Popen([RECONCILER, "run", "--grace", "0", "--log-level", "debug"], env=e,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 60
        while time.time() < deadline and p.poll() is None:
            if q(MICRO_URL, "select count(*) from spied_mail where consumed_at is not null"
                 )[0][0] > 0:
                break
            time.sleep(0.01)
        q(url, "select pg_terminate_backend(pid) from pg_stat_activity"
          " where application_name = 'reconciler' and datname = current_database()")
        out, err = communicate(p, 180)
        self.assertEqual(p.returncode, 3, err)
        self.assertIn(name, err)
        # Never a false "missing" (nor any mismatch: the data has none).
        self.assertEqual(q(MONO_URL, "select count(*) from reconciliation_mismatch")[0][0], 0)
        return err

    def finish_cleanly(self):
        rc, out, err = run("run", "--grace", "0", "--format", "json")
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out)["run"]["counts"]["new_mismatches"], 0)
        self.assertEqual(len(consumed(MONO_URL, "sent_mail")), 40000)
        self.assertEqual(len(consumed(MICRO_URL, "spied_mail")), 40000)

    def test_database_failing_mid_run_exits_3_without_false_missing(self):
        self.cut_mid_run(MICRO_URL, "postgresMicro")
        self.assertEqual(q(MONO_URL, "select status from reconciliation_run"), [("failed",)])
        # The next run finishes the work, finding nothing wrong.
        self.finish_cleanly()

    def test_mono_failing_mid_run_exits_3_without_false_missing(self):
        self.cut_mid_run(MONO_URL, "postgresMono")
        # The run row cannot be closed without postgresMono: it stays
        # 'running' until the next run of its shard marks it aborted.
        self.assertEqual(q(MONO_URL, "select status from reconciliation_run"), [("running",)])
        self.finish_cleanly()
        self.assertEqual(q(MONO_URL, "select status from reconciliation_run order by id"),
                         [("aborted",), ("done",)])


def peak_rss_kib(*args):
    """Runs the reconciler; (exit code, its peak RSS in KiB, stderr). The
    program logs its own VmHWM: getrusage's ru_maxrss of a child would count
    this Python process's memory too, inherited up to the exec."""
    rc, out, err = run(*args, "--log-level", "debug")
    peaks = re.findall(r"peak memory (\d+) KiB", err)
    assert len(peaks) == 1, err
    return rc, int(peaks[0]), err


class Memory(unittest.TestCase):
    """Memory stays flat whatever the table sizes: 20 times the rows (and
    the mismatches) may not grow the process by what a table's worth of
    rows would take (200k rows are some 30 MiB of row data per side)."""

    def load(self, n):
        pid = reset()
        bulk(MONO_URL, "sent_mail", pid, n, where="i % 211 <> 0")
        bulk(MICRO_URL, "spied_mail", pid, n, where="i % 223 <> 0",
             body_sql="case when i % 199 = 0 then 'different' else 'Hello ' || i ||"
                      " E',\\r\\n\\r\\nPayroll ' || i || ' shipped.\\r\\n' end")

    def measure(self, n):
        self.load(n)
        got = {}
        for what, args in (("dry run", ("run", "--grace", "0", "--dry-run", "--format",
                                        "html")),
                           ("run", ("run", "--grace", "0", "--format", "json")),
                           ("mismatches", ("mismatches", "--format", "html"))):
            rc, rss, err = peak_rss_kib(*args)
            self.assertIn(rc, (0, 1), (what, err))
            got[what] = rss
        self.assertEqual(len(consumed(MICRO_URL, "spied_mail")),
                         sum(1 for i in range(1, n + 1) if i % 211 and i % 223 and i % 199))
        return got

    # ASan keeps freed blocks in its quarantine (256 MiB by default): under
    # the sanitizer build the resident size is the sanitizer's, not the
    # program's, so flatness is measured by make test only.
    @unittest.skipIf("ASAN_OPTIONS" in os.environ, "peak RSS is not the program's under ASan")
    def test_peak_rss_flat_with_table_size(self):
        small = self.measure(10000)
        large = self.measure(200000)
        for what in small:
            self.assertLess(large[what] - small[what], 12 * 1024,
                            f"{what}: {small[what]} KiB at 10k pairs, {large[what]} KiB"
                            " at 200k")


class Usage(unittest.TestCase):
    def test_reset_leaves_payroll_ids_to_the_identity(self):
        # These tests share postgresMono with mailer-real's: after them, a
        # payroll stored the normal way (as POST /payroll does) must work.
        for _ in range(2):
            q(MONO_URL, "insert into payroll (ship_to, total) values ('before', 1)")
            reset()
            self.assertIsNotNone(q(MONO_URL, "insert into payroll (ship_to, total)"
                                             " values ('after', 1) returning id"))

    def test_usage_errors_exit_2(self):
        for args, needle in ((["run", "--shard", "0/2"], "--shard"),
                             (["run", "--grace", "-1"], "--grace"),
                             (["frobnicate"], "unknown command"),
                             (["ack"], "exactly one id"),
                             (["ack", "x1"], "not a positive integer"),
                             (["run", "--bogus"], "unknown option"),
                             (["report", "--format", "xml"], "--format"),
                             (["run", "--note", "x"], "--note"),
                             (["report", "--all"], "--all"),
                             (["mismatches", "--open", "--all"], "exclude"),
                             # A connection string libpq cannot parse is
                             # configuration (2), not an unreachable server (3);
                             # the message never repeats it (a password).
                             (["run", "--mono", "bogus=1"], "--mono-database-url"),
                             (["run", "--micro-database-url", "x=1 y"], "--micro-database-url"),
                             (["run", "--micro", "postgresql://u:s3cret@[::1"], "--micro"),
                             (["ack", "1", "--micro", "host=x bad"], "--micro"),
                             (["report", "--mono", "postgresql://h:notaport/x"], "--mono")):
            rc, out, err = run(*args)
            self.assertEqual(rc, 2, (args, err))
            self.assertIn(needle, err)
            self.assertNotIn("s3cret", err)
        rc, out, err = run("run", env={"MICRO_DATABASE_URL": ""})
        self.assertEqual(rc, 2)
        self.assertIn("MICRO_DATABASE_URL", err)
        # The test and tuning knobs are configuration too: a bad value
        # stops the run before it connects, naming the variable.
        for name, value in (("RECONCILER_BATCH_ROWS", "25k"),
                            ("RECONCILER_READ_CHUNK", "-1"),
                            ("RECONCILER_OVERLAP", "maybe"),
                            ("RECONCILER_CRASH_AT", "3:x"),
                            ("RECONCILER_CRASH_AT", "b")):
            rc, out, err = run("run", env={name: value}, hooks=name == "RECONCILER_CRASH_AT")
            self.assertEqual(rc, 2, (name, value, err))
            self.assertIn(name, err)
        # The crash hook is in the test build only: the installed program
        # neither checks nor obeys RECONCILER_CRASH_AT.
        rc, out, err = run("run", "--grace", "0", env={"RECONCILER_CRASH_AT": "b"})
        self.assertIn(rc, (0, 1), err)
        rc, out, err = run("--help")
        self.assertEqual(rc, 0)
        self.assertIn("--shard", out)


if __name__ == "__main__":
    unittest.main()
