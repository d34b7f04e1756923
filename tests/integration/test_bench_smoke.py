"""Smoke test of the benchmark harness (bench/run), so it cannot rot unseen.

Runs `bench/run --quick` once (tiny sizes, about a minute at most) against the
dev environment and checks what a reader of its output relies on: it exits 0,
writes its JSON, prints a verdict for every goal, measures every baseline, and
measures every program that is built (a program not built yet is skipped,
never counted as met). It asserts no timing: benchmarks are not tests.
"""
import json
import os
import subprocess
import tempfile
import unittest

from harness import BIN_DIR, TOP

GOALS = {
    "spy": ["spy req/s >= min(50% bare, 80% DB floor)", "spy p99 <= 10 ms at half its peak"],
    "real": ["real own overhead, 4 conns: p50 <= +5%, p99 <= +10%",
             "real own overhead, half peak: p50 <= +5%, p99 <= +10%",
             "mailer-real peak >= 35% of the spy's peak",
             "spy dead: p50 within 5% of NOTIFIER=smtp",
             "spy 1 s slow: p50 within 5% of NOTIFIER=smtp",
             "spy answering 500: p50 within 5% of NOTIFIER=smtp",
             "SMTP delivery >= 50% of smtp-source"],
    "rec": ["reconciler <= 1.25x server floor", "reconciler >= 20x faster than naive fdw",
            "reconciler >= 2.5x faster than tuned fdw", "reconciler peak RSS <= 64 MiB",
            "reconciler peak RSS flat as pairs grow",
            "clustering <= 10% of a run (1M pairs)"],
}


def built(name):
    return os.access(os.path.join(BIN_DIR, name), os.X_OK)


class BenchSmoke(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        build = os.path.dirname(os.path.abspath(BIN_DIR))
        if not os.access(os.path.join(build, "bench", "loadgen"), os.X_OK):
            raise unittest.SkipTest("bench tools not built (make all)")
        cls.tmp = tempfile.TemporaryDirectory()
        out = os.path.join(cls.tmp.name, "quick.json")
        cls.proc = subprocess.run(
            ["/usr/bin/python3", os.path.join(TOP, "bench", "run"), "--quick",
             "--build", build, "--out", out],
            capture_output=True, text=True, timeout=600)
        cls.doc = None
        if os.path.exists(out):
            with open(out) as f:
                cls.doc = json.load(f)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def goal(self, name):
        found = [g for g in self.doc["goals"] if g["goal"] == name]
        self.assertEqual(len(found), 1, f"goal {name!r} in {self.doc['goals']}")
        return found[0]

    def test_runs_and_prints_every_goal(self):
        self.assertEqual(self.proc.returncode, 0, self.proc.stdout + self.proc.stderr)
        self.assertIsNotNone(self.doc)
        self.assertEqual(self.doc["errors"], [])
        for names in GOALS.values():
            for name in names:
                self.goal(name)
                self.assertIn(name, self.proc.stdout)

    def test_baselines_are_measured(self):
        r = self.doc["results"]
        self.assertGreater(r["spy"]["bare"]["rps"], 0)
        self.assertEqual(r["spy"]["bare"]["non2xx"], 0)
        self.assertGreater(r["spy"]["db_floor"]["rows_per_s"], 0)
        self.assertGreater(r["rec"]["floor"]["seconds"], 0)
        self.assertGreater(r["rec"]["fdw_tuned"]["seconds"], 0)
        self.assertGreater(r["rec"]["fdw_naive"]["seconds"], 0)
        mix = r["rec"]["mix"]
        self.assertEqual(mix["match"] + mix["content_mismatch"] + mix["missing_in_micro"]
                         + mix["missing_in_mono"], mix["pairs"])
        self.assertTrue(r["rec"]["tuned_update_pushed_down"],
                        "the tuned fdw baseline must push its remote UPDATE down")

    def test_spy_is_measured_when_built(self):
        if not built("mailer-spy"):
            self.skipTest("mailer-spy not built yet")
        spy = self.doc["results"]["spy"]
        self.assertGreater(spy["spy"]["rps"], 0)
        self.assertGreaterEqual(spy["spy"]["rows_written"], 1)
        self.assertGreater(spy["spy_half_peak"]["completed"], 0)
        for name in GOALS["spy"]:
            self.assertIsNotNone(self.goal(name)["met"])

    def test_real_is_measured_when_built(self):
        if not (built("mailer-real") and built("mailer-spy")):
            self.skipTest("mailer-real or mailer-spy not built yet")
        real = self.doc["results"]["real"]
        self.assertGreater(real["delivery"]["sent"], 0)
        self.assertGreater(real["smtp_source"]["msgs_per_s"], 0)
        self.assertGreater(real["spy_rows_from_parallel"], 0)
        self.assertGreater(real["overhead_handed_off"]["ok"], 0)
        self.assertGreater(real["peak"]["rps"], 0)
        self.assertIn("parallel vs smtp with the real spy (informational)", self.proc.stdout)
        for name in GOALS["real"]:
            self.assertIsNotNone(self.goal(name)["met"])

    def test_reconciler_is_measured_when_built(self):
        if not built("reconciler"):
            self.skipTest("reconciler not built yet")
        rec = self.doc["results"]["rec"]
        self.assertIn(rec["reconciler"]["exit"], (0, 1))
        self.assertGreater(rec["reconciler"]["max_rss_mib"], 0)
        for name in GOALS["rec"]:
            self.assertIsNotNone(self.goal(name)["met"])


if __name__ == "__main__":
    unittest.main()
