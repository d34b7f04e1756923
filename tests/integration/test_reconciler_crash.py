"""reconciler killed at any instant: the same data reconciled in one
uninterrupted run and in runs killed at many points (a debug hook that
_exits at batch boundaries, at each stage around the two marks; SIGKILL,
SIGTERM and cut sessions at random instants are test_reconciler_converge's),
each followed by runs until one completes,
must end with identical consumed sets on both sides and identical mismatch
sets. The data mixes every outcome, including open "missing" mismatches
whose partners arrive late and rows healed after a previous crash."""
import time
import unittest

from harness import MICRO_URL, MONO_URL
from reconciler_util import bulk, q, reset, run, state

N = 15000
BATCH = "1000"   # 15+ batches per run, so kills land at many boundaries

VARY = ("case when i % 61 = 0 then 'other body ' || i else 'Hello ' || i ||"
        " E',\\r\\n\\r\\nPayroll ' || i || ' shipped.\\r\\n' end")


def build():
    """The same starting state every time: a first run has opened some
    'missing' mismatches; then their partners and the bulk arrive."""
    pid = reset()
    bulk(MONO_URL, "sent_mail", pid, 300, prefix="late")
    bulk(MICRO_URL, "spied_mail", pid, 300, prefix="late-x")
    rc, _, err = run("run", "--grace", "0", "--quiet")
    assert rc == 1, err
    # Late partners: half equal, half different.
    bulk(MICRO_URL, "spied_mail", pid, 300, prefix="late",
         body_sql="case when i % 2 = 0 then 'late and different' else 'Hello ' || i ||"
                  " E',\\r\\n\\r\\nPayroll ' || i || ' shipped.\\r\\n' end")
    bulk(MONO_URL, "sent_mail", pid, 150, prefix="late-x")
    # The bulk: matches, content mismatches, missing on each side.
    bulk(MONO_URL, "sent_mail", pid, N, where="i % 97 <> 0")
    bulk(MICRO_URL, "spied_mail", pid, N, where="i % 89 <> 0", body_sql=VARY)
    # Rows a crashed run consumed on one side only (to be healed).
    q(MICRO_URL, "update spied_mail set consumed_at = now(), consumed_by = 0"
      " where correlation_id in (select md5('p' || i)::uuid from generate_series(1, 500) i"
      " where i % 7 = 0 and i % 61 <> 0 and i % 97 <> 0)")


def finish():
    """Runs until one completes (exit 0 or 1). Right after a kill the
    server may still be finishing the dead client's statement and hold its
    lock: that run exits 4 and cron (here: this loop) tries again."""
    for n in range(1, 100):
        rc, out, err = run("run", "--grace", "0", "--quiet",
                           env={"RECONCILER_BATCH_ROWS": BATCH})
        if rc in (0, 1):
            return n
        if rc != 4:
            raise AssertionError(f"rerun exited {rc}: {err}")
        time.sleep(0.1)
    raise AssertionError("no run completed")


class CrashTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        build()
        finish()
        cls.reference = state()
        mono, micro, mm = cls.reference
        # The reference itself is what the outcome table says.
        assert len(mono) == len(micro) > 12000
        kinds = {}
        for m in mm:
            kinds[(m[1], m[9])] = kinds.get((m[1], m[9]), 0) + 1
        cls.kinds = kinds

    def test_reference_has_every_outcome(self):
        k = self.kinds
        # The first run's 300 + 300 "missing": all of one side answered
        # late, half of the other.
        self.assertEqual(k[("missing_in_micro", True)], 300)
        self.assertEqual(k[("missing_in_mono", True)], 150)
        # Still missing: 150 late-x, and bulk ids with i % 97 = 0 but not
        # i % 89 = 0 (154 - 1); bulk i % 89 = 0 but not i % 97 = 0.
        self.assertEqual(k[("missing_in_mono", False)], 150 + 153)
        self.assertEqual(k[("missing_in_micro", False)], 168 - 1)
        # 150 late and different, plus bulk bodies varied at i % 61 = 0.
        self.assertGreater(k[("content", False)], 150 + 200)

    def check_same(self, what):
        got = state()
        ref = self.reference
        self.assertEqual(len(got[0]), len(ref[0]), what)
        self.assertEqual(got[0], ref[0], f"{what}: mono consumed set differs")
        self.assertEqual(got[1], ref[1], f"{what}: micro consumed set differs")
        self.assertEqual(got[2], ref[2], f"{what}: mismatch set differs")

    def test_exit_at_batch_boundaries(self):
        for batch, stage in ((1, "a"), (1, "b"), (3, "b"), (5, "c"), (8, "a"),
                             (11, "b"), (13, "c"), (14, "b")):
            with self.subTest(batch=batch, stage=stage):
                build()
                rc, out, err = run("run", "--grace", "0", "--quiet",
                                   env={"RECONCILER_BATCH_ROWS": BATCH,
                                        "RECONCILER_CRASH_AT": f"{batch}:{stage}"},
                                   hooks=True)
                self.assertEqual(rc, 99, f"the hook did not fire: {rc} {err}")
                finish()
                self.check_same(f"exit at batch {batch}{stage}")
                # The killed run is marked aborted by the next one.
                self.assertIn(("aborted",), q(MONO_URL,
                              "select distinct status from reconciliation_run"))

    def test_spill_file_and_read_chunks_change_nothing(self):
        """The same final state whatever way the batches travel (marks
        overlapping the reads, batches in memory or through the spill
        file) and the streams are cut into COPYs (997 or 13 rows each, so
        chunk ends fall anywhere; or one COPY for all), and when an
        overlapped run dies on a batch it read back from the spill file."""
        for extra in ({"RECONCILER_OVERLAP": "1"},
                      {"RECONCILER_OVERLAP": "1", "RECONCILER_SPILL_ALL": "1"},
                      {"RECONCILER_READ_CHUNK": "997"},
                      {"RECONCILER_READ_CHUNK": "0"},
                      {"RECONCILER_OVERLAP": "1", "RECONCILER_READ_CHUNK": "13"}):
            with self.subTest(**extra):
                build()
                rc, out, err = run("run", "--grace", "0", "--quiet",
                                   env=dict(extra, RECONCILER_BATCH_ROWS=BATCH))
                self.assertIn(rc, (0, 1), err)
                finish()
                self.check_same(f"run with {extra}")
        build()
        rc, out, err = run("run", "--grace", "0", "--quiet",
                           env={"RECONCILER_BATCH_ROWS": BATCH,
                                "RECONCILER_OVERLAP": "1",
                                "RECONCILER_SPILL_ALL": "1",
                                "RECONCILER_CRASH_AT": "6:b"}, hooks=True)
        self.assertEqual(rc, 99, f"the hook did not fire: {rc} {err}")
        finish()
        self.check_same("exit at batch 6b, overlapped, every batch spilled")


if __name__ == "__main__":
    unittest.main()
