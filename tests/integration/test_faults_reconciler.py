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
one copy gets a single uninterrupted run, the reference. The other gets
`reconciler run` SIGKILLed at a dozen points spread over the reference
run's duration, then one run to the end. A third gets two runs started at
the same instant. Each must end in the reference's state: the same rows
consumed on both sides, the same open mismatches, none recorded twice.
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
COPIES = int(os.environ.get("FAULT_REC_COPIES", "60000"))
KILLS = int(os.environ.get("FAULT_REC_KILLS", "12"))


def rec(mono, micro, *args, wait=True, timeout=300):
    env = dict(os.environ, MONO_DATABASE_URL=mono, MICRO_DATABASE_URL=micro, LOG_LEVEL="info")
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
            cls.killed = cls.clone("kill")
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

    def test_killed_at_many_points(self):
        ref = self.reference()
        mono, micro = self.killed
        outcomes = []
        for k in range(1, KILLS + 1):
            delay = self.ref_duration * k / (KILLS + 1)
            p = rec(mono, micro, "run", "--grace", "0", wait=False)
            time.sleep(delay)
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                outcomes.append("killed")
            else:
                outcomes.append(f"exit {p.returncode}")
            p.communicate(timeout=60)
        self.assertGreaterEqual(outcomes.count("killed"), KILLS // 2,
                                f"most runs finished before their kill: {outcomes}")
        p = rec(mono, micro, "run", "--grace", "0")
        self.assertIn(p.returncode, (0, 1), p.stderr)
        got = state(mono, micro)
        self.assertEqual(got["open"], ref["open"], "open mismatches differ from the uninterrupted run")
        self.assertEqual(got["mono_consumed"], ref["mono_consumed"])
        self.assertEqual(got["micro_consumed"], ref["micro_consumed"])
        self.assert_no_double_record(mono)
        again = rec(mono, micro, "run", "--grace", "0")
        self.assertEqual(again.returncode, 0, "a run after the end found something new")
        led = Ledger(self, f"reconciler SIGKILLed at {KILLS} points of a run", mono)
        led.note(rows_per_side=FLOW + COPIES - 10, kills=outcomes.count("killed"), outcomes=outcomes,
                 content=len(self.changed), missing_in_micro=len(self.no_micro),
                 missing_in_mono=len(self.no_mono), same_as_uninterrupted=True,
                 reference_run_s=round(self.ref_duration, 2))
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
