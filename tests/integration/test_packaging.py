"""Packaging: docker-compose.yml, the Dockerfile and contrib/ (cron, systemd).

Covers: the compose file passes `docker-compose config -q` (no engine runs
here, so that is as far as compose goes) and has the shape docs/CANARY.md
and the README promise (healthchecks, depends_on on service_healthy, the
schemas from sql/ as init scripts); the Dockerfile builds with exactly the
steps CI runs (.ci/run: scripts/install-deps, then the same make command),
its build mode installs every library the Makefile's pkg-config list needs,
its runtime mode every library the programs link, and it runs as a
non-root user; the systemd units pass `systemd-analyze verify` and treat
exit 4 (lock held) as success; the crontab line is well formed.
"""
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import unittest

import yaml

from harness import TOP, BIN_DIR

COMPOSE = shutil.which("docker-compose")


def read(path):
    with open(os.path.join(TOP, path)) as f:
        return f.read()


def deps_lists():
    """The package lists in scripts/install-deps, by name (BUILD, RUNTIME, ...)."""
    text = read("scripts/install-deps")
    return {k: v.split() for k, v in re.findall(r'^([A-Z]+)="([^"]*)"', text, re.M)}


def shell_commands(lines):
    """Simple commands in shell lines, split on && ; || and |, as token lists."""
    out = []
    for line in lines:
        for part in re.split(r"&&|\|\||;|\|", line):
            toks = shlex.split(part, comments=True)
            if toks:
                out.append(toks)
    return out


def dockerfile():
    """[(stage_base, [RUN lines], user)] for each FROM in the Dockerfile."""
    text = re.sub(r"\\\n", " ", read("Dockerfile"))
    stages = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word == "FROM":
            stages.append({"from": rest.split()[0], "run": [], "user": None})
        elif word == "RUN":
            stages[-1]["run"].append(rest)
        elif word == "USER":
            stages[-1]["user"] = rest.strip()
    return stages


def ci_commands():
    lines = [l for l in read(".ci/run").splitlines() if not l.lstrip().startswith(("#", "echo"))]
    return shell_commands(lines)


def binds(service):
    """(host path, container path) of a service's bind mounts in `config` output."""
    out = []
    for v in service.get("volumes", []):
        if isinstance(v, dict):
            if v.get("type") == "bind":
                out.append((v["source"], v["target"]))
        elif v.startswith("/"):
            src, dst = v.split(":")[:2]
            out.append((src, dst))
    return out


def dpkg_owner(path):
    p = subprocess.run(["dpkg", "-S", os.path.realpath(path)], capture_output=True, text=True)
    if p.returncode != 0:
        p = subprocess.run(["dpkg", "-S", path], capture_output=True, text=True)
    return p.stdout.split(":")[0] if p.returncode == 0 else None


class Dockerfile(unittest.TestCase):
    def test_builds_with_the_steps_ci_runs(self):
        stages = dockerfile()
        self.assertEqual([s["from"].split(" ")[0] for s in stages],
                         ["debian:bookworm-slim", "debian:bookworm-slim"])
        build, final = stages
        ci = ci_commands()
        checks = {"test", "test-asan", "valgrind"}   # CI's checks, not the build
        ci_make = [c for c in ci if c[0] == "make" and not checks & set(c)]
        docker_make = [c for s in stages for c in shell_commands(s["run"]) if c[0] == "make"]
        self.assertEqual(docker_make, ci_make)
        self.assertIn(["scripts/install-deps"], ci)
        deps = [c for c in shell_commands(build["run"]) if c[0] == "scripts/install-deps"]
        self.assertEqual(deps, [["scripts/install-deps", "build"]])
        deps = [c for c in shell_commands(final["run"]) if c[0] == "scripts/install-deps"]
        self.assertEqual(deps, [["scripts/install-deps", "runtime"]])
        # Nothing else installs packages behind the script's back.
        for s in stages:
            for c in shell_commands(s["run"]):
                self.assertNotIn(c[0], ("apt-get", "apt", "dpkg"), c)

    def test_runs_as_a_non_root_user(self):
        user = dockerfile()[-1]["user"]
        self.assertIsNotNone(user)
        self.assertNotIn(user, ("root", "0"))

    def test_build_mode_has_every_library_the_makefile_links(self):
        m = re.search(r"^ALL_PKGS\s*:=\s*(.*)$", read("Makefile").replace("\\\n", " "), re.M)
        lists = deps_lists()
        for pc in m.group(1).split():
            d = subprocess.run(["pkg-config", "--variable=pcfiledir", pc],
                               capture_output=True, text=True).stdout.strip()
            owner = dpkg_owner(os.path.join(d, pc + ".pc"))
            self.assertIsNotNone(owner, pc)
            self.assertIn(owner.split(":")[0], lists["BUILD"], f"{pc} comes from {owner}")
        self.assertTrue(set(lists["BUILD"]) <= set(lists["BUILD"] + lists["TEST"]))

    @unittest.skipUnless(os.path.isdir(BIN_DIR) and os.listdir(BIN_DIR), "no programs built")
    def test_runtime_mode_has_every_library_the_programs_link(self):
        runtime = set(deps_lists()["RUNTIME"]) | {"libc6", "libgcc-s1"}
        for prog in sorted(os.listdir(BIN_DIR)):
            needed = re.findall(r"\(NEEDED\).*\[(.*)\]", subprocess.run(
                ["readelf", "-d", os.path.join(BIN_DIR, prog)],
                capture_output=True, text=True).stdout)
            ldd = subprocess.run(["ldd", os.path.join(BIN_DIR, prog)],
                                 capture_output=True, text=True).stdout
            for lib in needed:
                if re.match(r"lib(a|ub|l|t)san\.so", lib):
                    continue    # `make test-asan`'s build: never what the image ships
                m = re.search(re.escape(lib) + r" => (\S+)", ldd)
                self.assertIsNotNone(m, f"{prog}: {lib} not found")
                owner = dpkg_owner(m.group(1))
                self.assertIn(owner, runtime, f"{prog} links {lib} from {owner}")


@unittest.skipUnless(COMPOSE, "docker-compose not installed")
class Compose(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        p = subprocess.run([COMPOSE, "-f", "docker-compose.yml", "config"], cwd=TOP,
                           capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        cls.config = yaml.safe_load(p.stdout)

    def test_config_is_valid(self):
        p = subprocess.run([COMPOSE, "-f", "docker-compose.yml", "config", "-q"], cwd=TOP,
                           capture_output=True, text=True)
        self.assertEqual((p.returncode, p.stderr), (0, ""))

    def test_services_and_health(self):
        svc = self.config["services"]
        for name in ("postgres-mono", "postgres-micro", "mailpit", "mailer-real",
                     "mailer-spy", "mailer-real-new", "mailer-spy-live", "reconciler", "nginx"):
            self.assertIn(name, svc)
        for name, s in svc.items():
            for dep, how in s.get("depends_on", {}).items():
                self.assertEqual(how, {"condition": "service_healthy"}, f"{name} -> {dep}")
                self.assertIn("healthcheck", svc[dep], dep)
        for name in ("mailer-real", "mailer-spy", "mailer-real-new", "mailer-spy-live"):
            s = svc[name]
            self.assertEqual(s["build"]["context"], TOP)
            port = s["environment"]["PORT"]
            self.assertIn(f"http://127.0.0.1:{port}/readyz", s["healthcheck"]["test"])
        for name in ("postgres-mono", "postgres-micro"):
            self.assertTrue(svc[name]["image"].startswith("postgres:"))
            self.assertIn("pg_isready", " ".join(svc[name]["healthcheck"]["test"]))
        self.assertEqual(svc["mailer-real"]["environment"]["NOTIFIER"], "parallel")
        self.assertEqual(svc["mailer-real-new"]["environment"]["NOTIFIER"], "remote")
        self.assertEqual(svc["mailer-real-new"]["environment"]["SPY_URL"], "http://mailer-spy-live:8081")
        self.assertEqual(svc["mailer-spy-live"]["environment"]["SPY_MODE"], "live")
        self.assertEqual(svc["mailer-spy"]["environment"]["SPY_MODE"], "spy")

    def test_every_schema_is_an_init_script(self):
        svc = self.config["services"]
        where = {"mono.sql": "postgres-mono", "reconciler.sql": "postgres-mono",
                 "micro.sql": "postgres-micro"}
        for f in sorted(os.listdir(os.path.join(TOP, "sql"))):
            if not f.endswith(".sql"):
                continue
            self.assertIn(f, where, f"sql/{f}: which database is it for?")
            mounts = [src for src, _ in binds(svc[where[f]])]
            self.assertIn(os.path.join(TOP, "sql", f), mounts)

    def test_nginx_serves_the_generated_files(self):
        nginx = self.config["services"]["nginx"]
        mounts = dict(binds(nginx))
        self.assertEqual(mounts[os.path.join(TOP, "nginx")], "/etc/nginx/canary")
        self.assertIn("nginx_0_100.conf", " ".join(nginx["command"]))
        with open(os.path.join(TOP, "nginx", "nginx_0_100.conf")) as f:
            conf = f.read()
        self.assertIn("server mailer-real:8080;", conf)
        self.assertIn("server mailer-real-new:8080;", conf)


class Contrib(unittest.TestCase):
    @unittest.skipUnless(shutil.which("systemd-analyze"), "no systemd-analyze")
    def test_systemd_units_verify(self):
        d = tempfile.mkdtemp()
        try:
            for f in ("reconciler.service", "reconciler.timer", "reconciler-alert@.service"):
                # verify checks the ExecStart binary exists: point it at one that does.
                text = read(f"contrib/{f}").replace("/usr/local/bin/reconciler", "/bin/true")
                with open(os.path.join(d, f), "w") as out:
                    out.write(text)
            p = subprocess.run(["systemd-analyze", "verify", "--man=no", "reconciler.service",
                                "reconciler.timer", "reconciler-alert@x.service"],
                               cwd=d, capture_output=True, text=True)
            self.assertEqual((p.returncode, p.stderr.strip()), (0, ""))
        finally:
            shutil.rmtree(d)
        svc = read("contrib/reconciler.service")
        self.assertRegex(svc, r"(?m)^SuccessExitStatus=4$")
        self.assertRegex(svc, r"(?m)^ExecStart=/usr/local/bin/reconciler run --quiet$")
        self.assertRegex(svc, r"(?m)^OnFailure=reconciler-alert@%n.service$")
        self.assertRegex(read("contrib/reconciler.timer"), r"(?m)^OnCalendar=\*-\*-\* \*:\*:00$")

    def test_crontab_line(self):
        lines = [l for l in read("contrib/reconciler.cron").splitlines()
                 if l and not l.startswith("#") and "=" not in l.split()[0]]
        self.assertEqual(len(lines), 1)
        f = lines[0].split(None, 6)
        self.assertEqual(f[:5], ["*"] * 5)
        self.assertEqual(f[5], "parallel-run")
        self.assertIn("reconciler run --quiet", f[6])
        self.assertIn("[ $rc -eq 4 ]", f[6])
        p = subprocess.run(["sh", "-n", "-c", f[6]], capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
