"""The reconciler killed at many points of a large run, and two runs started
together, across the real flow.

The rows come from the real programs: payrolls POSTed to mailer-real
(NOTIFIER=parallel) with mailer-spy recording. Then the spy's store is
damaged the way a faulty new renderer or a lost request would: some bodies
changed (content mismatches), some spy records deleted (missing in micro),
some monolith records deleted (missing in mono). The matched pairs are then
multiplied (same content, new correlation ids on both sides) so that one
run takes long enough to be killed in the middle.

Both databases are cloned (CREATE DATABASE ... TEMPLATE) before any run:
one copy gets a single uninterrupted run, the reference. Then:

- killed at many points: for each of KILLS points spread over the
  reference run's duration, a fresh copy gets `reconciler run` SIGKILLed at
  that point, then runs to the end;
- killed again and again: one copy gets several runs in a row each killed
  part-way (each resuming what the last left), then one run to the end;
- two together: a copy gets two runs started at the same instant.

Each must end in the reference's state: the same rows consumed on both
sides, the same open mismatches, none recorded twice, and a further run
finds nothing. Marking batches are small (BATCH_ROWS) so a run has many
batch boundaries for the kills to fall between.

Right after a SIGKILL the killed run's lock can outlive it for a moment
(its backend finishes, or with client_connection_check_interval abandons,
the statement in progress before it notices the dead client); a run
started then exits 4 at once as DESIGN says, and the test starts it again
as cron would, within LOCK_WAIT_S, counting those refusals.
"""
import concurrent.futures
import io
import os
import signal
import subprocess
import time
import unittest
import uuid

import harness
from fault_tools import Ledger, ScratchDbs, Stack, admin, have

FLOW = int(os.environ.get("FAULT_REC_FLOW", "400"))
COPIES = int(os.environ.get("FAULT_REC_COPIES", "20000"))
KILLS = int(os.environ.get("FAULT_REC_KILLS", "6"))
# Rows per marking batch: many batch boundaries in a run for kills to fall
# between (the default, 25000, would give three).
BATCH_ROWS = os.environ.get("FAULT_REC_BATCH_ROWS", "2000")
# Successive kills on one copy, as fractions of the uninterrupted run.
CHAIN = (0.15, 0.3, 0.1, 0.25, 0.2)
# How long a killed run's lock may outlive it (its backend finishing the
# statement in progress) before the next run is let in.
LOCK_WAIT_S = 30


def rec(mono, micro, *args, wait=True, timeout=300):
    env = dict(os.environ, MONO_DATABASE_URL=mono, MICRO_DATABASE_URL=micro, LOG_LEVEL="info",
               RECONCILER_BATCH_ROWS=BATCH_ROWS)
    argv = [os.path.join(harness.BIN_DIR, "reconciler")] + list(args)
    if not wait:
        return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)


def state(mono, micro):
    """What a finished reconciliation leaves: consumed ids on both sides and
    the open mismatches."""
    return {
        "mono_consumed": frozenset(r[0] for r in harness.query(
            mono, "select correlation_id::text from sent_mail where consumed_at is not null")),
        "micro_consumed": frozenset(r[0] for r in harness.query(
            micro, "select correlation_id::text from spied_mail where consumed_at is not null")),
        "open": frozenset((r[0], r[1], tuple(sorted(r[2] or []))) for r in harness.query(
            mono, "select correlation_id::text, kind, fields from reconciliation_mismatch "
            "where resolved_at is null")),
    }


@unittest.skipUnless(have("mailer-real", "mailer-spy", "reconciler"),
                     "mailer-real, mailer-spy and reconciler not built")
class ReconcilerKilled(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        st = cls.st = Stack("reconciler-kill")
        try:
            st.start()
            cls.flow(st)
            st.real.stop()
            st.spy.stop()
            st.smtp.stop()
            cls.damage(st)
            cls.multiply(st)
            cls.clones = []
            cls.ref = cls.clone("ref")
            cls.chain = cls.clone("chain")
            cls.pair = cls.clone("pair")
        except Exception:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        for url, name in getattr(cls, "clones", []):
            try:
                harness.execute(url, f'drop database if exists "{name}" with (force)')
            except Exception:
                pass
        cls.st.close()

    @classmethod
    def clone(cls, suffix):
        st = cls.st
        out = []
        for url, src in ((harness.MONO_URL, st.dbs.mono_name), (harness.MICRO_URL, st.dbs.micro_name)):
            dst = f"{src}_{suffix}"
            out.append(ScratchDbs.clone(url, src, dst))
            cls.clones.append((admin(url), dst))
        return tuple(out)

    @classmethod
    def drop_clone(cls, suffix):
        st = cls.st
        for url, src in ((harness.MONO_URL, st.dbs.mono_name), (harness.MICRO_URL, st.dbs.micro_name)):
            name = f"{src}_{suffix}"
            harness.execute(admin(url), f'drop database if exists "{name}" with (force)')
            cls.clones = [c for c in cls.clones if c[1] != name]

    @classmethod
    def flow(cls, st):
        def post(n):
            s, _, b = st.real.request("POST", "/payroll", {"shipTo": f"Rec Flow {n}", "total": n + 0.5},
                                      timeout=30)
            return s
        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            statuses = list(ex.map(post, range(FLOW)))
        assert statuses.count(201) == FLOW, f"flow: {statuses.count(201)} of {FLOW} created"
        n = st.spied_settled(expect=FLOW, timeout=60)
        assert n == FLOW, f"flow: spy recorded {n} of {FLOW}"

    @classmethod
    def damage(cls, st):
        rows = harness.query(st.dbs.mono, "select correlation_id::text from sent_mail order by id")
        cids = [r[0] for r in rows]
        cls.changed = cids[0:20]
        cls.no_micro = cids[20:35]
        cls.no_mono = cids[35:45]
        harness.execute(st.dbs.micro, "update spied_mail set body = body || ' (new renderer)' "
                        "where correlation_id = any(%s::uuid[])", (cls.changed,))
        harness.execute(st.dbs.micro, "delete from spied_mail where correlation_id = any(%s::uuid[])",
                        (cls.no_micro,))
        harness.execute(st.dbs.mono, "delete from sent_mail where correlation_id = any(%s::uuid[])",
                        (cls.no_mono,))

    @classmethod
    def multiply(cls, st):
        """COPIES more matched pairs, copied from the flow's matched rows."""
        src = harness.query(st.dbs.mono, "select payroll_id, destination, subject, body from sent_mail "
                            "where correlation_id <> all(%s::uuid[]) order by id",
                            (cls.changed + cls.no_micro,))
        mono_buf, micro_buf = io.StringIO(), io.StringIO()

        def esc(s):
            return s.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
        for i in range(COPIES):
            pid, d, s, b = src[i % len(src)]
            cid = str(uuid.uuid4())
            mono_buf.write(f"{cid}\t{pid}\t{esc(d)}\t{esc(s)}\t{esc(b)}\tsent\n")
            micro_buf.write(f"{cid}\t{pid}\t{esc(d)}\t{esc(s)}\t{esc(b)}\n")
        for url, buf, sql in (
                (st.dbs.mono, mono_buf, "copy sent_mail (correlation_id, payroll_id, destination, subject, body, status) from stdin"),
                (st.dbs.micro, micro_buf, "copy spied_mail (correlation_id, payroll_id, destination, subject, body) from stdin")):
            conn = harness.db(url)
            try:
                buf.seek(0)
                with conn.cursor() as cur:
                    cur.copy_expert(sql, buf)
                    cur.execute("update %s set created_at = now() - interval '1 hour'" %
                                ("sent_mail" if "sent_mail" in sql else "spied_mail"))
                    cur.execute("analyze")
            finally:
                conn.close()

    def reference(self):
        if not hasattr(type(self), "ref_state"):
            t0 = time.monotonic()
            p = rec(*self.ref, "run", "--grace", "0")
            type(self).ref_duration = time.monotonic() - t0
            self.assertEqual(p.returncode, 1, p.stderr)
            type(self).ref_state = state(*self.ref)
            s = type(self).ref_state
            self.assertEqual({c for c, k, _ in s["open"] if k == "content"}, set(self.changed))
            self.assertEqual({c for c, k, _ in s["open"] if k == "missing_in_micro"}, set(self.no_micro))
            self.assertEqual({c for c, k, _ in s["open"] if k == "missing_in_mono"}, set(self.no_mono))
            self.assertEqual(len(s["mono_consumed"]), FLOW - 45 + COPIES)
        return type(self).ref_state

    def assert_no_double_record(self, mono):
        dup = harness.query(mono, "select correlation_id, count(*) from reconciliation_mismatch "
                            "group by 1 having count(*) > 1")
        self.assertEqual(dup, [], "a mismatch recorded twice")

    def start_killed(self, mono, micro, delay):
        """Starts a run and SIGKILLs it after `delay` seconds. A run refused
        with 4 (the lock of the run killed just before is still held: its
        backend has not yet noticed the dead client) is started again, as
        cron would, within a bound. Returns (outcome, refused)."""
        refused = 0
        t0 = time.monotonic()
        deadline = t0 + LOCK_WAIT_S
        while True:
            if refused:
                self.lock_waits.append(time.monotonic() - t0)
            p = rec(mono, micro, "run", "--grace", "0", wait=False)
            try:
                p.wait(delay)
            except subprocess.TimeoutExpired:
                p.send_signal(signal.SIGKILL)
                p.communicate(timeout=60)
                return "killed", refused
            p.communicate(timeout=60)
            if p.returncode != 4:
                return f"exit {p.returncode}", refused
            refused += 1
            self.assertLess(time.monotonic(), deadline,
                            f"the lock of a killed run still held after {LOCK_WAIT_S}s")
            time.sleep(0.1)

    def finish(self, mono, micro):
        """Runs to the end (0 or 1), starting again while refused with 4
        (bounded). Returns (exit code, refused)."""
        refused = 0
        t0 = time.monotonic()
        deadline = t0 + LOCK_WAIT_S
        while True:
            if refused:
                self.lock_waits.append(time.monotonic() - t0)
            p = rec(mono, micro, "run", "--grace", "0")
            if p.returncode != 4:
                self.assertIn(p.returncode, (0, 1), p.stderr)
                return p.returncode, refused
            refused += 1
            self.assertLess(time.monotonic(), deadline,
                            f"the lock of a killed run still held after {LOCK_WAIT_S}s")
            time.sleep(0.1)

    def assert_same_as_reference(self, mono, micro, what):
        ref = self.reference()
        got = state(mono, micro)
        self.assertEqual(got["open"], ref["open"], f"{what}: open mismatches differ from the uninterrupted run")
        self.assertEqual(got["mono_consumed"], ref["mono_consumed"], f"{what}: mono consumed set differs")
        self.assertEqual(got["micro_consumed"], ref["micro_consumed"], f"{what}: micro consumed set differs")
        self.assert_no_double_record(mono)
        again = rec(mono, micro, "run", "--grace", "0")
        self.assertEqual(again.returncode, 0, f"{what}: a run after the end found something new: {again.stdout}")

    def setUp(self):
        self.lock_waits = []

    def test_killed_at_many_points(self):
        """Each kill point on its own copy of the data: the run SIGKILLed
        at k/(KILLS+1) of the uninterrupted run's duration, then run again
        to the end, gives the reference's state."""
        self.reference()
        outcomes, refused = [], 0
        for k in range(1, KILLS + 1):
            mono, micro = self.clone(f"k{k}")
            delay = self.ref_duration * k / (KILLS + 1)
            out, r1 = self.start_killed(mono, micro, delay)
            rc, r2 = self.finish(mono, micro)
            outcomes.append(out)
            refused += r1 + r2
            self.assert_same_as_reference(mono, micro, f"killed at {delay:.2f}s ({out})")
            self.drop_clone(f"k{k}")
        self.assertGreaterEqual(outcomes.count("killed"), KILLS // 2,
                                f"most runs finished before their kill: {outcomes}")
        led = Ledger(self, f"reconciler SIGKILLed at {KILLS} points of a run (each on a copy), run again",
                     self.ref[0])
        led.note(rows_per_side=FLOW + COPIES - 10, batch_rows=int(BATCH_ROWS), kills=outcomes.count("killed"),
                 outcomes=outcomes, refused_4_then_retried=refused,
                 longest_lock_wait_s=round(max(self.lock_waits, default=0), 2),
                 content=len(self.changed), missing_in_micro=len(self.no_micro),
                 missing_in_mono=len(self.no_mono), same_as_uninterrupted=True,
                 reference_run_s=round(self.ref_duration, 2))
        led.record()

    def test_killed_again_and_again(self):
        """One copy of the data, killed at several points of successive
        runs (each resuming what the previous left), then run to the end."""
        self.reference()
        mono, micro = self.chain
        outcomes, refused = [], 0
        for f in CHAIN:
            out, r = self.start_killed(mono, micro, self.ref_duration * f)
            outcomes.append(out)
            refused += r
        self.assertGreaterEqual(outcomes.count("killed"), len(CHAIN) // 2,
                                f"most runs finished before their kill: {outcomes}")
        rc, r = self.finish(mono, micro)
        refused += r
        self.assert_same_as_reference(mono, micro, f"killed {outcomes.count('killed')} times in a row")
        led = Ledger(self, f"reconciler SIGKILLed {len(CHAIN)} times in a row, run again", mono)
        led.note(rows_per_side=FLOW + COPIES - 10, batch_rows=int(BATCH_ROWS), kills=outcomes.count("killed"),
                 outcomes=outcomes, refused_4_then_retried=refused,
                 longest_lock_wait_s=round(max(self.lock_waits, default=0), 2), same_as_uninterrupted=True)
        led.record()

    def test_two_started_together(self):
        ref = self.reference()
        mono, micro = self.pair
        a = rec(mono, micro, "run", "--grace", "0", wait=False)
        b = rec(mono, micro, "run", "--grace", "0", wait=False)
        ra, rb = a.wait(300), b.wait(300)
        a.communicate()
        b.communicate()
        self.assertEqual(sorted((ra, rb)), [1, 4], "two runs together: want one to run (1), one refused (4)")
        got = state(mono, micro)
        self.assertEqual(got, ref)
        self.assert_no_double_record(mono)
        led = Ledger(self, "two reconciler runs started together", mono)
        led.note(exit_codes=sorted((ra, rb)), same_as_uninterrupted=True)
        led.record()


if __name__ == "__main__":
    unittest.main()
