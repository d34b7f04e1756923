"""`make demo`'s script, scripts/demo, run whole with its own ports and its
own dev environment (DEV_DIR, DEV_*_PORT, DEMO_*_PORT, DEMO_DIR), then
`scripts/demo stop`.

Covers: every step announces itself in one line and the run ends 0 with
the services up; the seed's exact curl, a non-ASCII name, delivery into
the dev environment's Maildir; the second spy with the editable template
(demo/spy-template-v2.txt) makes the reconciler report a content mismatch
(the body) for exactly the payrolls that went through it and none of the
others; the html report is written; a failing step is named with the log
to read; `stop` stops the services and the dev environment.
"""
import os
import re
import shutil
import subprocess
import tempfile
import unittest

import harness
from harness import TOP, BIN_DIR, free_port, request
from canary_env import to_addr

DEMO = os.path.join(TOP, "scripts", "demo")
PROGRAMS = ("mailer-real", "mailer-spy", "reconciler")

STEPS = [
    "checking the programs are built",
    "stopping what a previous demo left running",
    "starting the dev environment",
    "starting mailer-spy on",
    "starting mailer-real on",
    "reconciling rows from before the demo",
    "posting payrolls to mailer-real, the seed's request first",
    "waiting for delivery and for the spy's records",
    "the delivered mail is in the dev environment's Maildir",
    "starting a second mailer-spy on",
    "restarting mailer-real with SPY_URL=",
    "posting more payrolls",
    "waiting for delivery and for the second spy's records",
    "running the reconciler: reconciler run --grace 0",
    "the run's report: reconciler report",
    "writing the html report",
    "the clusters: reconciler clusters",
    "the console: reconciler serve on",
    "the console: http://",
    "the services are still up",
]


@unittest.skipUnless(all(os.path.exists(os.path.join(BIN_DIR, p)) for p in PROGRAMS),
                     "mailer-real, mailer-spy and reconciler not all built yet")
class Demo(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="demo-test-")
        os.chmod(cls.tmp, 0o755)
        cls.env = dict(os.environ)
        for k in ("MONO_DATABASE_URL", "MICRO_DATABASE_URL", "SMTP_HOST", "SMTP_PORT", "DEV_MAILDIR"):
            cls.env.pop(k, None)
        cls.env.update({
            "DEV_DIR": os.path.join(cls.tmp, "dev"),
            "DEV_MONO_PORT": str(free_port()),
            "DEV_MICRO_PORT": str(free_port()),
            "DEV_SMTP_PORT": str(free_port()),
            "DEMO_REAL_PORT": str(free_port()),
            "DEMO_SPY_PORT": str(free_port()),
            "DEMO_SPY2_PORT": str(free_port()),
            "DEMO_DIR": os.path.join(cls.tmp, "demo"),
            "BIN_DIR": BIN_DIR,
        })
        cls.demo_dir = cls.env["DEMO_DIR"]
        cls.result = subprocess.run([DEMO], env=cls.env, capture_output=True, text=True, timeout=600)
        # The dev env's URLs as the demo used them.
        cls.urls = {}
        path = os.path.join(cls.demo_dir, "dev-env.env")
        if os.path.exists(path):
            for line in open(path):
                k, _, v = line.replace("export ", "").strip().partition("=")
                cls.urls[k] = v.strip("'")

    @classmethod
    def tearDownClass(cls):
        subprocess.run([DEMO, "stop"], env=cls.env, capture_output=True, text=True, timeout=120)
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def out(self):
        return self.result.stdout + self.result.stderr

    def cids(self, batch):
        with open(os.path.join(self.demo_dir, f"batch{batch}.cids")) as f:
            return [l.strip() for l in f if l.strip()]

    def test_1_every_step_runs_and_says_what_it_does(self):
        self.assertEqual(self.result.returncode, 0, self.out())
        announced = [l[4:] for l in self.result.stdout.splitlines() if l.startswith("==> ")]
        self.assertEqual(len(announced), len(STEPS), announced)
        for got, want in zip(announced, STEPS):
            self.assertTrue(got.startswith(want), (got, want))
        self.assertNotIn("FAILED", self.out())

    def test_2_posts_the_seed_request_and_a_non_ascii_name(self):
        port = self.env["DEMO_REAL_PORT"]
        self.assertIn("$ curl -v -H \"Content-Type: application/json\" -d "
                      "'{\"shipTo\":\"Juablaz\",\"total\":320}' "
                      f"localhost:{port}/payroll", self.result.stdout)
        self.assertRegex(self.result.stdout, r"201 payroll \d+ -> juablaz@example.com")
        self.assertRegex(self.result.stdout, r"201 payroll \d+ -> jose.nunez@example.com")
        rows = harness.query(self.urls["MONO_DATABASE_URL"],
                             "select p.ship_to, p.total::text, m.status from payroll p "
                             "join sent_mail m on m.payroll_id = p.id order by p.id")
        self.assertIn(("Juablaz", "320.00", "sent"), rows)
        self.assertIn(("José Núñez", "1234.50", "sent"), rows)
        self.assertEqual(len(rows), 8)
        self.assertEqual({r[2] for r in rows}, {"sent"})

    def test_3_shows_the_mail_in_the_maildir(self):
        maildir = self.urls["DEV_MAILDIR"]
        self.assertIn(maildir, self.result.stdout)
        msgs = harness.maildir_messages(maildir)
        self.assertEqual(len(msgs), 8)
        seed = [m for m in msgs if to_addr(m) == "juablaz@example.com"]
        self.assertEqual(len(seed), 2)  # Juablaz is posted once in each batch
        jose = [m for m in msgs if to_addr(m) == "jose.nunez@example.com"]
        self.assertEqual(len(jose), 1)
        self.assertIn("Hello José Núñez,", jose[0].get_content())
        self.assertIn("Subject: Payroll ", self.result.stdout)

    def test_4_report_shows_only_the_changed_templates_mismatches(self):
        mono = self.urls["MONO_DATABASE_URL"]
        run_id, matched, new = harness.query(
            mono, "select id, matched, new_mismatches from reconciliation_run "
                  "order by id desc limit 1")[0]
        self.assertEqual((matched, new), (5, 3))
        rows = harness.query(mono, "select correlation_id::text, kind, fields "
                                   "from reconciliation_mismatch where run_id = %s", (run_id,))
        self.assertEqual(sorted(r[0] for r in rows), sorted(self.cids(2)))
        self.assertEqual({(r[1], tuple(r[2])) for r in rows}, {("content", ("body",))})
        with open(os.path.join(self.demo_dir, "report.txt")) as f:
            report = f.read()
        self.assertIn(report.strip().splitlines()[0], self.result.stdout)
        for cid in self.cids(2):
            self.assertIn(cid, report)
        for cid in self.cids(1):
            self.assertNotIn(cid, report)
        self.assertIn("exit 1: new mismatches", self.result.stdout)

    def test_5_writes_the_html_report(self):
        path = os.path.join(self.demo_dir, "report.html")
        self.assertIn(f"xdg-open {path}", self.result.stdout)
        with open(path, encoding="utf-8") as f:
            html = f.read()
        self.assertIn("<html", html.lower())
        text = re.sub(r"<[^>]+>", "", html)   # the diff marks the changed letters
        self.assertIn("Hello Carmen,", text)
        self.assertIn("Hi Carmen,", text)
        self.assertNotIn("Hello Bob,", text)
        for cid in self.cids(2):
            self.assertIn(cid, html)

    def test_6_services_stay_up(self):
        for port in ("DEMO_REAL_PORT", "DEMO_SPY_PORT", "DEMO_SPY2_PORT"):
            st, _, _ = request(int(self.env[port]), "GET", "/healthz")
            self.assertEqual(st, 200, port)
        st, h, _ = request(int(self.env["DEMO_REAL_PORT"]), "GET", "/healthz")
        self.assertTrue(h["x-served-by"].startswith("mailer-real/"))
        self.assertIn("make demo-stop", self.result.stdout)

    def test_7_a_failing_step_names_itself_and_its_log(self):
        bad = os.path.join(self.tmp, "broken-template.txt")
        with open(bad, "w") as f:
            f.write("Hello {nobody},\n")
        env = dict(self.env, DEMO_TEMPLATE=bad)
        r = subprocess.run([DEMO], env=env, capture_output=True, text=True, timeout=600)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn('FAILED at "starting a second mailer-spy on', r.stderr)
        log = os.path.join(self.demo_dir, "mailer-spy-v2.log")
        self.assertIn(f"read {log}", r.stderr)
        with open(log) as f:
            self.assertIn("nobody", f.read())

    def test_8_stop_stops_everything(self):
        r = subprocess.run([DEMO, "stop"], env=self.env, capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        for port in ("DEMO_REAL_PORT", "DEMO_SPY_PORT", "DEMO_SPY2_PORT"):
            with self.assertRaises(OSError):
                request(int(self.env[port]), "GET", "/healthz", timeout=2)
        st = subprocess.run([os.path.join(TOP, "scripts", "dev-env"), "status"], env=self.env,
                            capture_output=True, text=True)
        self.assertEqual(st.returncode, 1, st.stdout)
        self.assertIn("postgres-mono: stopped", st.stdout)
