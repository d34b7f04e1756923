"""libFuzzer smoke: every fuzz target (tests/fuzz, built by `make
fuzz-build` with clang -fsanitize=fuzzer,address,undefined) replays its
committed seed corpus and then fuzzes for a few seconds. A crash, a
sanitizer report or a broken oracle (fuzz_common.h FUZZ_CHECK) fails it.
Longer campaigns: `make fuzz FUZZ_TIME=600`.
"""
import os
import shutil
import subprocess
import unittest

import harness

TOP = harness.TOP
FUZZ_BIN = os.path.join(TOP, "build", "fuzz", "bin")
SMOKE_S = os.environ.get("FUZZ_SMOKE_TIME", "4")


@unittest.skipUnless(shutil.which("clang"), "clang not installed")
class FuzzSmoke(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        p = subprocess.run(["make", "-s", "-C", TOP, "fuzz-build"], capture_output=True,
                           text=True, timeout=600)
        cls.build = p

    def test_fuzz_targets(self):
        self.assertEqual(self.build.returncode, 0, self.build.stdout + self.build.stderr)
        corpus = os.path.join(TOP, "tests", "fuzz", "corpus")
        targets = sorted(os.listdir(FUZZ_BIN)) if os.path.isdir(FUZZ_BIN) else []
        self.assertTrue(targets, "no fuzz target built")
        work = os.path.join(TOP, "build", "fuzz", "smoke")
        for t in targets:
            with self.subTest(target=t):
                seeds = os.path.join(corpus, t)
                self.assertTrue(os.path.isdir(seeds) and os.listdir(seeds), f"{t}: no seed corpus")
                os.makedirs(os.path.join(work, t), exist_ok=True)
                art = os.path.join(TOP, "build", "fuzz", "artifacts", t + "-")
                os.makedirs(os.path.dirname(art), exist_ok=True)
                env = dict(os.environ)
                env.pop("ASAN_OPTIONS", None)
                env.pop("UBSAN_OPTIONS", None)
                p = subprocess.run([os.path.join(FUZZ_BIN, t), "-runs=0", "-artifact_prefix=" + art, seeds],
                                   capture_output=True, text=True, timeout=300, env=env)
                self.assertEqual(p.returncode, 0, f"{t} fails on its seeds:\n{p.stderr[-3000:]}")
                p = subprocess.run([os.path.join(FUZZ_BIN, t), "-max_total_time=" + SMOKE_S,
                                    "-artifact_prefix=" + art, os.path.join(work, t), seeds],
                                   capture_output=True, text=True, timeout=300, env=env)
                self.assertEqual(p.returncode, 0, f"{t} found a crash:\n{p.stderr[-4000:]}")


if __name__ == "__main__":
    unittest.main()
