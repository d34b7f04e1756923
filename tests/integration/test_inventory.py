"""The seed's canary check: `curl payment.service/inventory` (docs/CANARY.md).

Covers: GET /inventory on mailer-real names the service, its canary path
(CANARY_PATH, else from NOTIFIER: remote is new), the notifier and the
version, with X-Served-By like every answer; a bad CANARY_PATH stops the
program with exit 2 naming the variable; only GET is allowed. Then the
loop of 100 requests docs/CANARY.md prints, run as written (curl with
--resolve payment.service) through a real nginx rendered by nginx/generate
in front of two real mailer-reals (old: NOTIFIER=parallel, new:
NOTIFIER=remote): the counts per path match the split's weights, and the
front also answers a Host other than payment.service (the default server).
"""
import json
import os
import re
import subprocess
import unittest

import harness
from harness import TOP, request
from canary_env import NGINX, Nginx

REAL = os.path.join(harness.BIN_DIR, "mailer-real")
WORKERS = 2     # worker_processes in canary_env's nginx.conf


def docs_loop():
    """The shell block that follows `<!-- inventory-loop -->` in docs/CANARY.md."""
    with open(os.path.join(TOP, "docs", "CANARY.md")) as f:
        text = f.read()
    m = re.search(r"<!-- inventory-loop -->\n```sh\n(.*?)```", text, re.S)
    assert m, "docs/CANARY.md lost its inventory loop"
    return m.group(1)


@unittest.skipUnless(os.path.exists(REAL), "mailer-real not built yet")
class Inventory(unittest.TestCase):
    def real(self, **env):
        base = {"MONO_DATABASE_URL": harness.MONO_URL, "SPY_URL": "http://127.0.0.1:9",
                "LOG_LEVEL": "info"}
        base.update(env)
        s = harness.Service("mailer-real", env=base, log_name="inventory-real")
        self.addCleanup(s.stop)
        return s.start()

    def inventory(self, s):
        st, h, body = s.request("GET", "/inventory")
        self.assertEqual(st, 200, body)
        self.assertEqual(h["content-type"], "application/json")
        self.assertTrue(h["x-served-by"].startswith("mailer-real/"), h)
        doc = json.loads(body)
        self.assertEqual(set(doc), {"service", "path", "notifier", "version"}, doc)
        self.assertEqual(doc["service"], "mailer-real")
        self.assertEqual("mailer-real/" + doc["version"], h["x-served-by"])
        return doc

    def test_path_follows_notifier_unless_canary_path_says(self):
        for notifier, env, want in [("parallel", {}, "old"), ("smtp", {}, "old"),
                                    ("remote", {}, "new"),
                                    ("parallel", {"CANARY_PATH": "new"}, "new"),
                                    ("remote", {"CANARY_PATH": "old"}, "old")]:
            with self.subTest(notifier=notifier, env=env):
                s = self.real(NOTIFIER=notifier, **env)
                doc = self.inventory(s)
                self.assertEqual((doc["path"], doc["notifier"]), (want, notifier))
                s.stop()

    def test_the_flag_overrides_the_environment(self):
        s = harness.Service("mailer-real", args=["--canary-path", "new"],
                            env={"MONO_DATABASE_URL": harness.MONO_URL,
                                 "CANARY_PATH": "old", "NOTIFIER": "smtp"},
                            log_name="inventory-real")
        self.addCleanup(s.stop)
        s.start()
        self.assertEqual(self.inventory(s)["path"], "new")

    def test_a_bad_canary_path_is_refused_at_start(self):
        for bad in ("sideways", "OLD", "new "):
            with self.subTest(bad=bad):
                p = subprocess.run([REAL], env=dict(os.environ, CANARY_PATH=bad,
                                                    MONO_DATABASE_URL=harness.MONO_URL,
                                                    PORT=str(harness.free_port())),
                                   capture_output=True, text=True, timeout=10)
                self.assertEqual(p.returncode, 2, p.stderr)
                self.assertIn("CANARY_PATH", p.stderr)
                self.assertIn(repr(bad), p.stderr)

    def test_only_get(self):
        s = self.real()
        st, h, body = s.request("POST", "/inventory", {"x": 1})
        self.assertEqual(st, 405, body)
        self.assertIn("GET", h["allow"])


@unittest.skipUnless(os.path.exists(NGINX), "nginx not installed")
@unittest.skipUnless(os.path.exists(REAL), "mailer-real not built yet")
class ThroughNginx(unittest.TestCase):
    """The docs' loop, as written, through nginx and the two real paths."""

    @classmethod
    def setUpClass(cls):
        env = {"MONO_DATABASE_URL": harness.MONO_URL, "SPY_URL": "http://127.0.0.1:9",
               "LOG_LEVEL": "info"}
        cls.old = harness.Service("mailer-real", env=dict(env, NOTIFIER="parallel"),
                                  log_name="inventory-old").start()
        cls.new = harness.Service("mailer-real", env=dict(env, NOTIFIER="remote"),
                                  log_name="inventory-new").start()

    @classmethod
    def tearDownClass(cls):
        cls.new.stop()
        cls.old.stop()

    def nginx(self, initial):
        ng = Nginx(f"127.0.0.1:{self.old.port}", f"127.0.0.1:{self.new.port}",
                   initial=initial)
        self.addCleanup(ng.cleanup)
        return ng.start()

    def run_loop(self, ng):
        p = subprocess.run(["sh", "-eu", "-c", docs_loop()],
                           env=dict(os.environ, port=str(ng.port)),
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr)
        lines = p.stdout.splitlines()
        m = re.fullmatch(r"new=(\d+) old=(\d+)", lines[0])
        self.assertTrue(m, p.stdout)
        counts = {"new": 0, "old": 0}
        for line in lines[1:]:
            n, path = line.split()
            counts[path] = int(n)
        self.assertEqual(sum(counts.values()), 100, p.stdout)
        return int(m.group(1)), int(m.group(2)), counts

    def test_counts_match_the_weights(self):
        for x in (0, 10, 50, 90, 100):
            with self.subTest(split=x):
                ng = self.nginx(f"nginx_{x}_{100 - x}.conf")
                new_w, old_w, counts = self.run_loop(ng)
                self.assertEqual((new_w, old_w), (x, 100 - x))
                # One shared rotation (the upstream's zone) makes these
                # exact; separate rotations per worker would each be off
                # by less than one: never more than WORKERS in all.
                self.assertLessEqual(abs(counts["new"] - x), WORKERS, counts)
                if x in (0, 100):
                    self.assertEqual(counts["new"], x, counts)
                ng.cleanup()

    def test_payment_service_and_the_default_server(self):
        ng = self.nginx("nginx_100_0.conf")
        for host in ("payment.service", "localhost", "other.example"):
            with self.subTest(host=host):
                st, h, body = request(ng.port, "GET", "/inventory",
                                      headers={"Host": host})
                self.assertEqual(st, 200, body)
                self.assertEqual(h["x-canary-path"], "new")
                self.assertEqual(json.loads(body)["path"], "new")
        with open(ng.active) as f:
            self.assertRegex(f.read(), r"server_name payment\.service\b")


if __name__ == "__main__":
    unittest.main()
