"""Canary release through nginx weighted upstreams (docs/CANARY.md).

Covers: nginx/generate's weight files (the committed ones are exactly its
output; each passes `nginx -t`; a 0% path is left out of the upstream); the
split a real nginx makes through nginx_10_90, nginx_50_50 and nginx_90_10
over 1,000 requests (within 3 points of the weights), first with two small
loopback backends, then with the real services (old path mailer-real
NOTIFIER=parallel, new path mailer-real NOTIFIER=remote in front of
mailer-spy SPY_MODE=live); no request lost while scripts/canary changes the
weights under load; `scripts/canary step` advancing, holding and rolling
back on the reconciler's verdict (reconciliation_run in postgresMono) and
on the new path's 5xx rate.
"""
import filecmp
import os
import shutil
import subprocess
import tempfile
import threading
import time
import unittest

import harness
from harness import TOP, request
from canary_env import NGINX, Nginx, TinyBackend, scratch_db, to_addr

GENERATE = os.path.join(TOP, "nginx", "generate")
STEPS = list(range(0, 101, 10))


def split(ng, n=1000):
    """n POSTs through nginx; returns {path: count} from X-Canary-Path and
    checks that the backend that answered belongs to that path."""
    seen = {"old": 0, "new": 0}
    for i in range(n):
        st, h, body = request(ng.port, "POST", "/payroll",
                              {"shipTo": f"Split{i}", "total": 1})
        assert st in (200, 201), (st, body)
        path = h.get("x-canary-path")
        seen[path] += 1
        if b'"backend"' in body:
            assert body.decode().find(f'"{path}"') > 0, (path, body)
    return seen


@unittest.skipUnless(os.path.exists(NGINX), "nginx not installed")
class GeneratedFiles(unittest.TestCase):
    def test_committed_files_are_the_generator_output(self):
        out = tempfile.mkdtemp()
        try:
            env = {k: v for k, v in os.environ.items() if not k.startswith("CANARY_")}
            subprocess.run([GENERATE, out], env=env, check=True)
            names = sorted(os.listdir(out))
            self.assertEqual(names, sorted(f"nginx_{x}_{100 - x}.conf" for x in STEPS))
            committed = sorted(f for f in os.listdir(os.path.join(TOP, "nginx"))
                               if f.startswith("nginx_") and f.endswith(".conf"))
            self.assertEqual(committed, names)
            _, mismatch, errors = filecmp.cmpfiles(out, os.path.join(TOP, "nginx"),
                                                   names, shallow=False)
            self.assertEqual((mismatch, errors), ([], []),
                             "nginx/ differs from nginx/generate's output: rerun nginx/generate")
        finally:
            shutil.rmtree(out)

    def test_weights_and_zero_percent_left_out(self):
        for x in STEPS:
            with open(os.path.join(TOP, "nginx", f"nginx_{x}_{100 - x}.conf")) as f:
                text = f.read()
            up = text[text.index("upstream canary_paths {"):]
            up = up[:up.index("}")]
            self.assertIn(f"zone canary_{x}_{100 - x} ", up)
            self.assertNotIn("weight=0", text)
            self.assertEqual(f"127.0.0.1:8092 weight={x};" in up, x > 0, x)
            self.assertEqual(f"127.0.0.1:8091 weight={100 - x};" in up, x < 100, x)
            self.assertEqual(up.count("server "), 1 if x in (0, 100) else 2)

    def test_every_file_passes_nginx_t(self):
        ng = Nginx("127.0.0.1:9", "127.0.0.1:9")
        try:
            for x in STEPS:
                shutil.copy(os.path.join(ng.conf_dir, f"nginx_{x}_{100 - x}.conf"), ng.active)
                r = ng.test_config()
                self.assertEqual(r.returncode, 0, f"nginx_{x}_{100 - x}.conf: {r.stderr}")
        finally:
            ng.cleanup()

    def test_generator_refuses_a_value_nginx_would_misread(self):
        out = tempfile.mkdtemp()
        try:
            r = subprocess.run([GENERATE, out], capture_output=True, text=True,
                               env=dict(os.environ, CANARY_LISTEN="80; include /etc/passwd"))
            self.assertEqual(r.returncode, 2)
            self.assertIn("CANARY_LISTEN", r.stderr)
            self.assertEqual(os.listdir(out), [])
        finally:
            shutil.rmtree(out)


@unittest.skipUnless(os.path.exists(NGINX), "nginx not installed")
class SplitWithLoopbackBackends(unittest.TestCase):
    def setUp(self):
        self.old = TinyBackend("old")
        self.new = TinyBackend("new")

    def tearDown(self):
        self.old.stop()
        self.new.stop()

    def test_split_within_three_points(self):
        for x in (10, 50, 90):
            ng = Nginx(f"127.0.0.1:{self.old.port}", f"127.0.0.1:{self.new.port}",
                       initial=f"nginx_{x}_{100 - x}.conf")
            try:
                ng.start()
                seen = split(ng)
                self.assertAlmostEqual(seen["new"] / 10, x, delta=3, msg=seen)
                self.assertAlmostEqual(seen["old"] / 10, 100 - x, delta=3, msg=seen)
                # nginx logs after the answer goes out: the last line may lag.
                logged = lambda: sum(1 for l in ng.access_lines()
                                     if l[1] == "new" and l[3] == "/payroll")
                harness.wait_for(lambda: logged() >= seen["new"], timeout=5, what="access log")
                self.assertEqual(logged(), seen["new"])
            finally:
                ng.cleanup()

    def test_ends_send_everything_to_one_path(self):
        for x in (0, 100):
            ng = Nginx(f"127.0.0.1:{self.old.port}", f"127.0.0.1:{self.new.port}",
                       initial=f"nginx_{x}_{100 - x}.conf")
            try:
                ng.start()
                seen = split(ng, 100)
                self.assertEqual(seen["new"], x)
            finally:
                ng.cleanup()


class Load:
    """Steady POSTs through nginx from a few threads, one connection each."""

    def __init__(self, port, threads=4):
        self.port = port
        self.stop_flag = threading.Event()
        self.statuses = {}
        self.paths = {}
        self.errors = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, args=(i,)) for i in range(threads)]

    def run(self, t):
        i = 0
        while not self.stop_flag.is_set():
            i += 1
            try:
                st, h, _ = request(self.port, "POST", "/payroll",
                                   {"shipTo": f"Load{t}x{i}", "total": 5}, timeout=30)
                with self.lock:
                    self.statuses[st] = self.statuses.get(st, 0) + 1
                    p = h.get("x-canary-path")
                    self.paths[p] = self.paths.get(p, 0) + 1
            except Exception as e:  # a reset or a refused connection is a lost request
                with self.lock:
                    self.errors.append(repr(e))

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop_flag.set()
        for t in self.threads:
            t.join()

    def total(self):
        with self.lock:
            return sum(self.statuses.values()) + len(self.errors)


def changes_under_load(tc, ng, ok_status):
    """Moves the weights through the canary tool while a load runs; asserts
    nothing was lost and the master never restarted."""
    master = ng.proc.pid
    with Load(ng.port) as load:
        harness.wait_for(lambda: load.total() > 50, what="load to start")
        for pct in (10, 50, 90, 100, 0, 30):
            before = load.total()
            r = ng.canary("set", str(pct))
            tc.assertEqual(r.returncode, 0, r.stderr)
            harness.wait_for(lambda: load.total() > before + 100, timeout=30,
                             what="requests after the reload")
        r = ng.canary("rollback")
        tc.assertEqual(r.returncode, 0, r.stderr)
        before = load.total()
        harness.wait_for(lambda: load.total() > before + 100, timeout=30,
                         what="requests after the rollback")
    tc.assertEqual(load.errors, [])
    tc.assertEqual(set(load.statuses), {ok_status}, load.statuses)
    tc.assertGreater(load.paths.get("new", 0), 0)
    tc.assertGreater(load.paths.get("old", 0), 0)
    tc.assertEqual(ng.proc.pid, master)
    tc.assertIsNone(ng.proc.poll())
    with open(ng.error_log) as f:
        log = f.read()
    tc.assertIn("reconfiguring", log)
    return load


@unittest.skipUnless(os.path.exists(NGINX), "nginx not installed")
class ReloadUnderLoad(unittest.TestCase):
    def test_weight_changes_lose_no_request(self):
        old, new = TinyBackend("old"), TinyBackend("new")
        ng = Nginx(f"127.0.0.1:{old.port}", f"127.0.0.1:{new.port}")
        try:
            ng.start()
            load = changes_under_load(self, ng, 201)
            self.assertEqual(old.count + new.count, sum(load.statuses.values()))
            self.assertIn("split: 0% new", ng.canary("status").stdout)
        finally:
            ng.cleanup()
            old.stop()
            new.stop()

    def test_a_file_nginx_rejects_keeps_the_previous_split(self):
        old, new = TinyBackend("old"), TinyBackend("new")
        ng = Nginx(f"127.0.0.1:{old.port}", f"127.0.0.1:{new.port}",
                   initial="nginx_10_90.conf")
        try:
            ng.start()
            with open(os.path.join(ng.conf_dir, "nginx_20_80.conf"), "a") as f:
                f.write("this is not nginx\n")
            r = ng.canary("set", "20")
            self.assertEqual(r.returncode, 4, r.stdout + r.stderr)
            self.assertIn("kept the previous split", r.stderr)
            self.assertIn("split: 10% new", ng.canary("status").stdout)
            st, h, _ = request(ng.port, "GET", "/")
            self.assertEqual(st, 200)
            r = ng.canary("set", "15")
            self.assertEqual(r.returncode, 2)
            self.assertIn("no generated file for 15%", r.stderr)
        finally:
            ng.cleanup()
            old.stop()
            new.stop()


RECONCILER_SQL = os.path.join(TOP, "sql", "reconciler.sql")


@unittest.skipUnless(os.path.exists(NGINX), "nginx not installed")
@unittest.skipUnless(os.path.exists(RECONCILER_SQL), "sql/reconciler.sql not on this branch yet")
class StepGates(unittest.TestCase):
    """scripts/canary step on reconciliation_run rows written here directly
    (the verdict's source of truth) and on the new path's access log."""

    @classmethod
    def setUpClass(cls):
        cls.mono = scratch_db(harness.MONO_URL, "canary_gates", ["mono.sql", "queue.sql", "reconciler.sql"])

    def setUp(self):
        harness.execute(self.mono, "truncate reconciliation_mismatch, reconciliation_run")
        self.old, self.new = TinyBackend("old"), TinyBackend("new")
        self.ng = None

    def tearDown(self):
        if self.ng:
            self.ng.cleanup()
        self.old.stop()
        self.new.stop()

    def nginx(self, new_status=None):
        self.new.status = new_status
        self.ng = Nginx(f"127.0.0.1:{self.old.port}", f"127.0.0.1:{self.new.port}")
        self.ng.start()
        return self.ng

    def run_row(self, matched, content=0, missing=0, ago="0 seconds", status="done"):
        harness.execute(self.mono, """
            insert into reconciliation_run (started_at, finished_at, status, cutoff,
                grace_seconds, matched, content, missing_in_micro, new_mismatches)
            values (now() - %s::interval, now(), %s, now(), 0, %s, %s, %s, %s)""",
            (ago, status, matched, content, missing, content + missing))

    def step(self, **env):
        env.setdefault("CANARY_MIN_COMPARED", 100)
        env.setdefault("CANARY_MIN_REQUESTS", 20)
        return self.ng.canary("step", MONO_DATABASE_URL=self.mono, **env)

    def split_now(self):
        return self.ng.canary("status").stdout.split("split: ")[1].split("%")[0]

    def test_advances_when_the_reconciler_agrees(self):
        ng = self.nginx()
        self.run_row(matched=150)
        r = self.step()
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("now 10% new", r.stdout)
        self.assertEqual(self.split_now(), "10")
        seen = split(ng, 200)
        self.assertAlmostEqual(seen["new"], 20, delta=6)

    def test_holds_without_a_run_since_the_change(self):
        self.nginx()
        self.run_row(matched=500, ago="1 hour")
        self.run_row(matched=500, status="failed")
        r = self.step()
        self.assertEqual(r.returncode, 3, r.stdout + r.stderr)
        self.assertIn("no finished reconciler run", r.stderr)
        self.assertEqual(self.split_now(), "0")

    def test_holds_with_too_few_compared_rows(self):
        self.nginx()
        self.run_row(matched=40)
        self.run_row(matched=40)
        r = self.step()
        self.assertEqual(r.returncode, 3, r.stdout + r.stderr)
        self.assertIn("compared 80 rows", r.stderr)
        self.assertEqual(self.split_now(), "0")

    def test_rolls_back_when_mismatches_are_over_the_threshold(self):
        ng = self.nginx()
        self.assertEqual(ng.canary("set", "30").returncode, 0)
        self.run_row(matched=990, content=3, missing=2)   # 0.5% > 0.1%
        r = self.step()
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("5 of 995 compared rows mismatched", r.stdout)
        self.assertIn("now 0% new", r.stdout)
        self.assertEqual(self.split_now(), "0")
        self.assertEqual(split(ng, 50)["new"], 0)

    def test_a_rate_under_the_threshold_passes(self):
        self.nginx()
        self.run_row(matched=999, content=1)   # 0.1% is not over 0.1%
        r = self.step(CANARY_MAX_MISMATCH_RATE="0.001")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(self.split_now(), "10")

    def test_rolls_back_when_the_new_path_answers_5xx(self):
        ng = self.nginx(new_status=500)
        self.assertEqual(ng.canary("set", "20").returncode, 0)
        statuses = [request(ng.port, "POST", "/payroll", {"shipTo": "X", "total": 1})[0]
                    for _ in range(200)]
        self.assertEqual(statuses.count(500), 40)
        self.run_row(matched=500)
        harness.wait_for(lambda: sum(1 for l in ng.access_lines() if l[1] == "new") >= 40,
                         what="access log")
        r = self.step()
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("40 of 40 requests answered 5xx", r.stdout)
        self.assertEqual(self.split_now(), "0")

    def test_advances_past_10_with_a_healthy_new_path(self):
        ng = self.nginx()
        self.assertEqual(ng.canary("set", "10").returncode, 0)
        self.run_row(matched=500)
        r = self.step()
        self.assertEqual(r.returncode, 3, r.stdout + r.stderr)   # no traffic on the new path yet
        self.assertIn("served 0 requests", r.stderr)
        for _ in range(300):
            request(ng.port, "POST", "/payroll", {"shipTo": "X", "total": 1})
        harness.wait_for(lambda: sum(1 for l in ng.access_lines() if l[1] == "new") >= 30,
                         what="access log")
        r = self.step()
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("0 of 30 requests 5xx", r.stdout)
        self.assertEqual(self.split_now(), "20")

    def test_bad_configuration_is_refused(self):
        self.nginx()
        r = self.step(CANARY_MAX_MISMATCH_RATE="lots")
        self.assertEqual(r.returncode, 2)
        self.assertIn("CANARY_MAX_MISMATCH_RATE", r.stderr)
        r = self.ng.canary("step", MONO_DATABASE_URL="postgresql://postgres@127.0.0.1:1/none")
        self.assertEqual(r.returncode, 4, r.stdout + r.stderr)
        self.assertIn("database", r.stderr)
        self.assertEqual(self.split_now(), "0")


REAL = os.path.join(harness.BIN_DIR, "mailer-real")
SPY = os.path.join(harness.BIN_DIR, "mailer-spy")
RECONCILER = os.path.join(harness.BIN_DIR, "reconciler")


@unittest.skipUnless(os.path.exists(NGINX), "nginx not installed")
@unittest.skipUnless(os.path.exists(REAL) and os.path.exists(SPY),
                     "mailer-real and mailer-spy not built yet")
@unittest.skipUnless(os.path.exists(RECONCILER_SQL), "sql/reconciler.sql not on this branch yet")
class RealServices(unittest.TestCase):
    """The canary topology of docs/CANARY.md with the real programs, on
    databases of their own so the reconciler sees only this class's rows."""

    @classmethod
    def setUpClass(cls):
        cls.mono = scratch_db(harness.MONO_URL, "canary_mono", ["mono.sql", "queue.sql", "reconciler.sql"])
        cls.micro = scratch_db(harness.MICRO_URL, "canary_micro", ["micro.sql", "queue.sql"])

    def setUp(self):
        self.services = []
        self.ng = None

    def tearDown(self):
        if self.ng:
            self.ng.cleanup()
        for s in reversed(self.services):
            s.stop()

    def service(self, name, env, log_name):
        s = harness.Service(name, env=env, log_name=log_name)
        self.services.append(s)
        return s.start()

    def topology(self, initial, live_template=None):
        smtp = {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(harness.SMTP_PORT)}
        spy = self.service("mailer-spy", dict(smtp, MICRO_DATABASE_URL=self.micro,
                                              SPY_MODE="spy", LOG_LEVEL="info"), "canary-spy")
        live_env = dict(smtp, MICRO_DATABASE_URL=self.micro, SPY_MODE="live", LOG_LEVEL="info",
                        SPY_TOKEN="canary-live-token")
        if live_template:
            live_env["SPY_TEMPLATE"] = live_template
        live = self.service("mailer-spy", live_env, "canary-spy-live")
        old = self.service("mailer-real", dict(smtp, MONO_DATABASE_URL=self.mono,
                                               NOTIFIER="parallel", LOG_LEVEL="info",
                                               SPY_URL=f"http://127.0.0.1:{spy.port}"),
                           "canary-real-old")
        new = self.service("mailer-real", dict(smtp, MONO_DATABASE_URL=self.mono,
                                               NOTIFIER="remote", LOG_LEVEL="info",
                                               SPY_URL=f"http://127.0.0.1:{live.port}",
                                               SPY_TOKEN="canary-live-token"),
                           "canary-real-new")
        self.ng = Nginx(f"127.0.0.1:{old.port}", f"127.0.0.1:{new.port}", initial=initial)
        self.ng.start()
        return self.ng

    def post(self, name, total=12.5):
        st, h, body = request(self.ng.port, "POST", "/payroll", {"shipTo": name, "total": total})
        self.assertEqual(st, 201, body)
        import json
        return h["x-canary-path"], json.loads(body)

    def reconcile(self):
        env = dict(os.environ, MONO_DATABASE_URL=self.mono, MICRO_DATABASE_URL=self.micro)
        return subprocess.run([RECONCILER, "run", "--grace", "0"], env=env,
                              capture_output=True, text=True, timeout=120)

    def wait_settled(self, n):
        """Every payroll's mail sent (old path) or delegated and recorded by
        the live spy (new path)."""
        def done():
            pending = harness.query(self.mono, "select count(*) from sent_mail "
                                    "where status not in ('sent', 'delegated')")[0][0]
            rows = harness.query(self.mono, "select count(*) from sent_mail")[0][0]
            spied = harness.query(self.micro, "select count(*) from spied_mail")[0][0]
            return pending == 0 and rows == n and spied == n
        harness.wait_for(done, timeout=60, what="delivery")

    def clean(self):
        harness.execute(self.mono, "truncate reconciliation_mismatch, reconciliation_run, "
                        "sent_mail, payroll")
        harness.execute(self.micro, "truncate spied_mail")

    def test_split_within_three_points_with_the_real_paths(self):
        for x in (10, 50, 90):
            self.clean()
            ng = self.topology(f"nginx_{x}_{100 - x}.conf")
            seen = {"old": 0, "new": 0}
            for i in range(1000):
                path, body = self.post(f"Split {x} {i}")
                seen[path] += 1
                # The answer itself tells the paths apart: the new path's
                # mailer-real delegates the sending.
                want = "delegated" if path == "new" else "pending"
                self.assertEqual(body["notification"]["status"], want, body)
            self.assertAlmostEqual(seen["new"] / 10, x, delta=3, msg=seen)
            self.tearDown()
            self.setUp()

    def test_weight_changes_lose_no_request_with_the_real_paths(self):
        self.clean()
        ng = self.topology("nginx_0_100.conf")
        load = changes_under_load(self, ng, 201)
        n = sum(load.statuses.values())
        self.assertEqual(harness.query(self.mono, "select count(*) from payroll")[0][0], n)

    def test_live_mode_sends_one_mail_per_payroll_and_the_records_agree(self):
        self.clean()
        ng = self.topology("nginx_50_50.conf")
        tag = os.urandom(4).hex()
        names = [f"Live {tag} {i}" for i in range(60)] + [f"José Núñez {tag}"]
        paths = {}
        for name in names:
            path, body = self.post(name, 320)
            paths[body["notification"]["destination"]] = path
        self.assertGreater(list(paths.values()).count("new"), 10)
        self.wait_settled(len(names))
        mails = {}

        def delivered():
            mails.clear()
            for m in harness.maildir_messages():
                to = to_addr(m)
                if to in paths:
                    mails[to] = mails.get(to, 0) + 1
            return len(mails) == len(paths)
        harness.wait_for(delivered, timeout=30, what="every mail in the Maildir")
        time.sleep(1)   # a duplicate would arrive late: look again
        delivered()
        self.assertEqual(set(mails.values()), {1}, {k: v for k, v in mails.items() if v != 1})
        statuses = dict(harness.query(self.mono, "select status, count(*) from sent_mail group by 1"))
        self.assertEqual(statuses.get("delegated"), list(paths.values()).count("new"))
        self.assertEqual(statuses.get("sent"), list(paths.values()).count("old"))
        r = self.reconcile()
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        run = harness.query(self.mono, "select matched, new_mismatches from reconciliation_run "
                            "order by id desc limit 1")[0]
        self.assertEqual(run, (len(names), 0))

    def test_step_on_the_real_reconcilers_verdict(self):
        for template, want_rc, want_split in ((None, 0, "20"),
                                              (os.path.join(TOP, "demo", "spy-template-v2.txt"), 1, "0")):
            self.clean()
            ng = self.topology("nginx_10_90.conf", live_template=template)
            for i in range(200):
                self.post(f"Step {i}")
            self.wait_settled(200)
            r = self.reconcile()
            self.assertEqual(r.returncode, want_rc, r.stdout + r.stderr)
            harness.wait_for(lambda: sum(1 for l in ng.access_lines() if l[1] == "new") >= 10,
                             what="access log")
            r = ng.canary("step", MONO_DATABASE_URL=self.mono, CANARY_MIN_COMPARED=100,
                          CANARY_MIN_REQUESTS=10)
            self.assertEqual(r.returncode, want_rc, r.stdout + r.stderr)
            self.assertIn(f"split: {want_split}% new", ng.canary("status").stdout)
            self.tearDown()
            self.setUp()
