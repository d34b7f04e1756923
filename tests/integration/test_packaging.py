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

Issue 17: the PostgreSQL healthchecks ask over TCP and pass only once the
init scripts' last table exists (run against a real cluster, with and
without the schema); nginx/active and nginx/logs are shipped, so
scripts/canary as a non-root user replaces the file Docker created as
root; the environment file reads the same through `set -a; .` and through
systemd's EnvironmentFile= rules, and the cron line exports it; no `*/5`
left in the docs; README's sample report has the lines the reconciler
prints; `make install` with PREFIX and DESTDIR; the manual pages pass
`mandoc -Tlint` and list the options `--help` lists; a taken port stops
`scripts/demo` with the port, its process and the variables that move it.
"""
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import unittest

import socket

import yaml

import harness
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
        where = {"mono.sql": ["postgres-mono"], "reconciler.sql": ["postgres-mono"],
                 "micro.sql": ["postgres-micro"],
                 "queue.sql": ["postgres-mono", "postgres-micro"]}
        for f in sorted(os.listdir(os.path.join(TOP, "sql"))):
            if not f.endswith(".sql"):
                continue
            self.assertIn(f, where, f"sql/{f}: which database is it for?")
            for service in where[f]:
                mounts = [src for src, _ in binds(svc[service])]
                self.assertIn(os.path.join(TOP, "sql", f), mounts, service)
        # queue.sql after the mail table's file, before reconciler.sql
        for service, order in (("postgres-mono", ["mono.sql", "queue.sql", "reconciler.sql"]),
                               ("postgres-micro", ["micro.sql", "queue.sql"])):
            inits = sorted((dst, os.path.basename(src)) for src, dst in binds(svc[service])
                           if dst.startswith("/docker-entrypoint-initdb.d/"))
            self.assertEqual([f for _, f in inits], order, service)

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
            for f in ("reconciler.service", "reconciler.timer", "reconciler-alert@.service",
                      "reconciler-purge.service", "reconciler-purge.timer"):
                # verify checks the ExecStart binary exists: point it at one that does.
                text = read(f"contrib/{f}").replace("/usr/local/bin/reconciler", "/bin/true")
                with open(os.path.join(d, f), "w") as out:
                    out.write(text)
            p = subprocess.run(["systemd-analyze", "verify", "--man=no", "reconciler.service",
                                "reconciler.timer", "reconciler-alert@x.service",
                                "reconciler-purge.service", "reconciler-purge.timer"],
                               cwd=d, capture_output=True, text=True)
            self.assertEqual((p.returncode, p.stderr.strip()), (0, ""))
        finally:
            shutil.rmtree(d)
        svc = read("contrib/reconciler.service")
        self.assertRegex(svc, r"(?m)^SuccessExitStatus=4$")
        self.assertRegex(svc, r"(?m)^ExecStart=/usr/local/bin/reconciler run --quiet$")
        self.assertRegex(svc, r"(?m)^OnFailure=reconciler-alert@%n.service$")
        self.assertRegex(read("contrib/reconciler.timer"), r"(?m)^OnCalendar=\*-\*-\* \*:\*:00$")
        purge = read("contrib/reconciler-purge.service")
        self.assertRegex(purge, r"(?m)^ExecStart=/usr/local/bin/reconciler purge --older-than 90$")
        self.assertRegex(purge, r"(?m)^SuccessExitStatus=4$")

    def test_crontab_line(self):
        lines = [l for l in read("contrib/reconciler.cron").splitlines()
                 if l and not l.startswith("#") and "=" not in l.split()[0]]
        self.assertEqual(len(lines), 2)
        purge = lines[1].split(None, 6)
        self.assertEqual(purge[:6], ["30", "3", "*", "*", "*", "parallel-run"])
        self.assertIn("reconciler purge --older-than 90 --quiet", purge[6])
        self.assertIn("[ $rc -eq 4 ]", purge[6])
        p = subprocess.run(["sh", "-n", "-c", purge[6]], capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        f = lines[0].split(None, 6)
        self.assertEqual(f[:5], ["*"] * 5)
        self.assertEqual(f[5], "parallel-run")
        self.assertIn("reconciler run --quiet", f[6])
        self.assertIn("[ $rc -eq 4 ]", f[6])
        p = subprocess.run(["sh", "-n", "-c", f[6]], capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)


PG_SERVICES = {"postgres-mono": harness.MONO_URL, "postgres-micro": harness.MICRO_URL}


@unittest.skipUnless(COMPOSE, "docker-compose not installed")
class ComposeHealth(unittest.TestCase):
    """The postgres healthcheck run for real against a dev-env cluster."""

    @classmethod
    def setUpClass(cls):
        p = subprocess.run([COMPOSE, "-f", "docker-compose.yml", "config"], cwd=TOP,
                           capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        cls.svc = yaml.safe_load(p.stdout)["services"]

    def check(self, name):
        test = self.svc[name]["healthcheck"]["test"]
        self.assertEqual(test[0], "CMD-SHELL")
        return test[1].replace("$$", "$")

    def init_scripts(self, name):
        """The sql/ files of a service's init folder, in the order the image runs them."""
        out = sorted((dst, src) for src, dst in binds(self.svc[name])
                     if dst.startswith("/docker-entrypoint-initdb.d/"))
        return [os.path.basename(src) for _, src in out]

    def run_check(self, name, url):
        from urllib.parse import urlparse
        u = urlparse(url)
        env = dict(os.environ, PGPORT=str(u.port), PGCONNECT_TIMEOUT="5",
                   **{k: str(v) for k, v in self.svc[name]["environment"].items()})
        env["POSTGRES_DB"] = u.path.lstrip("/")
        return subprocess.run(["sh", "-c", self.check(name)], env=env,
                              capture_output=True, text=True, timeout=30)

    def test_asks_over_tcp(self):
        for name in PG_SERVICES:
            cmds = shell_commands([self.check(name)])
            for c in cmds:
                if c[0] in ("pg_isready", "psql") or (c[0].startswith("PGPASSWORD=") and c[1] == "psql"):
                    self.assertIn("-h", c, c)
                    self.assertEqual(c[c.index("-h") + 1], "127.0.0.1", c)
            self.assertIn("pg_isready", [c[0] for c in cmds])

    def test_probes_a_table_of_the_last_init_script(self):
        # The TCP check already waits for the end of the init scripts (the
        # image's temporary server listens on no TCP port); the probe then
        # names a table of the last script, which runs last.
        for name in PG_SERVICES:
            last = self.init_scripts(name)[-1]
            tables = re.findall(r"(?im)^create table if not exists (\w+)", read(f"sql/{last}"))
            self.assertIn(self.svc[name]["environment"]["SCHEMA_TABLE"], tables,
                          f"{name}: SCHEMA_TABLE is not created by {last}")

    def test_unhealthy_until_the_schema_is_loaded(self):
        from canary_env import scratch_db
        for name, base in PG_SERVICES.items():
            with self.subTest(service=name):
                db = "health_" + name.replace("-", "_")
                url = scratch_db(base, db, [])
                try:
                    p = self.run_check(name, url)
                    self.assertNotEqual(p.returncode, 0, "healthy without the schema")
                    scratch_db(base, db, self.init_scripts(name))
                    p = self.run_check(name, url)
                    self.assertEqual(p.returncode, 0, p.stderr)
                finally:
                    harness.execute(base.rsplit("/", 1)[0] + "/postgres",
                                    f'drop database if exists "{db}" with (force)')


class NginxActive(unittest.TestCase):
    NOBODY = 65534

    def test_shipped_and_ignored_inside(self):
        p = subprocess.run(["git", "ls-files", "nginx/active", "nginx/logs"], cwd=TOP,
                           capture_output=True, text=True)
        self.assertEqual(sorted(p.stdout.split()), ["nginx/active/README", "nginx/logs/README"])
        for f in ("nginx/active/canary.conf", "nginx/logs/canary.log"):
            p = subprocess.run(["git", "check-ignore", "-q", f], cwd=TOP)
            self.assertEqual(p.returncode, 0, f"{f} is not ignored")

    def canary_as_nobody(self, owner):
        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d)
        os.chmod(d, 0o755)
        active = os.path.join(d, "active")
        os.mkdir(active)
        os.chown(active, owner, owner)
        # What the nginx container does on first start, as root.
        shutil.copy(os.path.join(TOP, "nginx", "nginx_0_100.conf"),
                    os.path.join(active, "canary.conf"))
        env = {"PATH": os.environ["PATH"], "CANARY_DIR": os.path.join(TOP, "nginx"),
               "CANARY_ACTIVE": os.path.join(active, "canary.conf"),
               "CANARY_NGINX": "true", "CANARY_ACCESS_LOG": os.path.join(d, "none.log")}
        p = subprocess.run(["setpriv", f"--reuid={self.NOBODY}", f"--regid={self.NOBODY}",
                            "--clear-groups", os.path.join(TOP, "scripts", "canary"), "set", "10"],
                           env=env, capture_output=True, text=True, timeout=30)
        with open(os.path.join(active, "canary.conf")) as f:
            return p, f.read()

    @unittest.skipUnless(os.geteuid() == 0 and shutil.which("setpriv"), "needs root and setpriv")
    def test_a_user_switches_the_file_docker_created(self):
        p, text = self.canary_as_nobody(self.NOBODY)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("# canary-weights: new=10 old=90", text)
        # The failure shipping the folder prevents: a folder Docker made is root's.
        p, text = self.canary_as_nobody(0)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("# canary-weights: new=0 old=100", text)


def systemd_environment_file(text):
    """Parses text the way systemd reads EnvironmentFile= (systemd.exec(5),
    env-file.c): comments start with # or ;, a backslash continues a line,
    single quotes keep everything, double quotes take backslash escapes for
    " \\ ` $, unquoted values lose trailing blanks, a line without = is
    skipped, and an assignment whose name is not a valid variable name (such
    as `export X`) is ignored. Returns ({name: value}, [ignored names])."""
    PRE_KEY, KEY, PRE_VALUE, VALUE, VALUE_ESC, SQ, DQ, DQ_ESC, COMMENT, COMMENT_ESC = range(10)
    state, key, value, out, bad = PRE_KEY, "", "", {}, []
    last_ws = None

    def push(k, v):
        k = k.rstrip(" \t")
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k):
            out[k] = v
        else:
            bad.append(k)

    for c in text + "\n":
        if state == PRE_KEY:
            if c in "#;":
                state = COMMENT
            elif not c.isspace():
                state, key = KEY, c
        elif state == KEY:
            if c in "\n\r":
                state, key = PRE_KEY, ""
            elif c == "=":
                state, value, last_ws = PRE_VALUE, "", None
            else:
                key += c
        elif state == PRE_VALUE:
            if c in "\n\r":
                push(key, value)
                state, key = PRE_KEY, ""
            elif c == "'":
                state = SQ
            elif c == '"':
                state = DQ
            elif c == "\\":
                state = VALUE_ESC
            elif not c.isspace():
                state, value, last_ws = VALUE, value + c, None
        elif state == VALUE:
            if c in "\n\r":
                push(key, value[:last_ws] if last_ws is not None else value)
                state, key = PRE_KEY, ""
            elif c == "\\":
                state, last_ws = VALUE_ESC, None
            else:
                if c.isspace():
                    if last_ws is None:
                        last_ws = len(value)
                else:
                    last_ws = None
                value += c
        elif state == VALUE_ESC:
            state = VALUE
            if c not in "\n\r":
                value += c
        elif state == SQ:
            if c == "'":
                state = PRE_VALUE
            else:
                value += c
        elif state == DQ:
            if c == '"':
                state = PRE_VALUE
            elif c == "\\":
                state = DQ_ESC
            else:
                value += c
        elif state == DQ_ESC:
            state = DQ
            if c in '"\\`$':
                value += c
            elif c != "\n":
                value += "\\" + c
        elif state == COMMENT:
            if c == "\\":
                state = COMMENT_ESC
            elif c in "\n\r":
                state = PRE_KEY
        elif state == COMMENT_ESC:
            state = COMMENT
    return out, bad


def shell_environment_file(path):
    """What cron's shell gets from `set -a; . FILE; set +a`: the exported
    variables the file added to an empty environment."""
    p = subprocess.run(["/bin/sh", "-c", 'set -a; . "$1"; set +a; exec env -0', "sh", path],
                       env={}, capture_output=True, text=True)
    if p.returncode != 0:
        raise ValueError(p.stderr)
    env = dict(kv.split("=", 1) for kv in p.stdout.split("\0") if "=" in kv)
    for k in ("PWD", "SHLVL", "_", "OLDPWD"):
        env.pop(k, None)
    return env


class EnvironmentFile(unittest.TestCase):
    PATH = os.path.join(TOP, "contrib", "reconciler.env")

    def both(self, text):
        with tempfile.NamedTemporaryFile("w", suffix=".env", delete=False) as f:
            f.write(text)
        self.addCleanup(os.unlink, f.name)
        return shell_environment_file(f.name), systemd_environment_file(text)

    def test_cron_and_systemd_read_the_same(self):
        text = read("contrib/reconciler.env")
        self.assertNotRegex(text, r"(?m)^\s*export\b")
        sh_env, (sd_env, ignored) = self.both(text)
        self.assertEqual(ignored, [])
        self.assertEqual(sh_env, sd_env)
        self.assertIn("MONO_DATABASE_URL", sd_env)
        self.assertIn("MICRO_DATABASE_URL", sd_env)

    def test_the_comparison_catches_the_old_format_and_shell_only_quoting(self):
        sh_env, (sd_env, ignored) = self.both("export MONO_DATABASE_URL=postgresql://a/b\n")
        self.assertEqual(ignored, ["export MONO_DATABASE_URL"])
        self.assertNotEqual(sh_env, sd_env)
        # A conninfo with & unquoted is two commands to the shell.
        sh_env, (sd_env, _) = self.both("U=postgresql://a/b?x=1&y=2\n")
        self.assertNotEqual(sh_env, sd_env)
        sh_env, (sd_env, _) = self.both("U='postgresql://a/b?x=1&y=2 z'\n# c\n")
        self.assertEqual(sh_env, sd_env)
        self.assertEqual(sd_env, {"U": "postgresql://a/b?x=1&y=2 z"})

    def test_units_and_cron_read_the_same_file(self):
        for f in ("reconciler.service", "reconciler-alert@.service"):
            self.assertRegex(read(f"contrib/{f}"),
                             r"(?m)^EnvironmentFile=/etc/parallel-run/reconciler.env$")
        line = [l for l in read("contrib/reconciler.cron").splitlines()
                if l.startswith("* ")][0].split(None, 6)[6]
        self.assertIn("/etc/parallel-run/reconciler.env", line)
        out = tempfile.mktemp()
        self.addCleanup(lambda: os.path.exists(out) and os.unlink(out))
        cmd = line.replace("/etc/parallel-run/reconciler.env", shlex.quote(self.PATH))
        cmd = cmd.replace("reconciler run --quiet", f"env >{shlex.quote(out)}", 1)
        p = subprocess.run(["/bin/sh", "-c", cmd], env={"PATH": "/usr/bin:/bin"},
                           capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        with open(out) as f:
            seen = dict(l.split("=", 1) for l in f.read().splitlines() if "=" in l)
        want, _ = systemd_environment_file(read("contrib/reconciler.env"))
        for k, v in want.items():
            self.assertEqual(seen.get(k), v, k)


class Docs(unittest.TestCase):
    def test_every_schedule_is_every_minute(self):
        for f in ["README.md"] + [f"docs/{n}" for n in os.listdir(os.path.join(TOP, "docs"))
                                  if n.endswith(".md")] + ["contrib/reconciler.cron"]:
            for line in read(f).splitlines():
                self.assertNotRegex(line, r"^\s*\*/\d+ ", f)

    @unittest.skipUnless(os.path.exists(os.path.join(BIN_DIR, "reconciler")), "not built")
    def test_readme_sample_report_has_the_lines_the_program_prints(self):
        from canary_env import scratch_db
        m = re.search(r"## Reading the report.*?```\n(.*?)```", read("README.md"), re.S)
        sample = m.group(1).splitlines()
        mono = scratch_db(harness.MONO_URL, "readme_mono", ["mono.sql", "queue.sql", "reconciler.sql"])
        micro = scratch_db(harness.MICRO_URL, "readme_micro", ["micro.sql", "queue.sql"])
        p = subprocess.run([os.path.join(BIN_DIR, "reconciler"), "run", "--grace", "0"],
                           env=dict(os.environ, MONO_DATABASE_URL=mono, MICRO_DATABASE_URL=micro),
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        shape = lambda l: re.sub(r"\d+", "0", l)
        printed = p.stdout.splitlines()[:3]
        self.assertEqual([shape(l) for l in sample[:3]], [shape(l) for l in printed])
        self.assertTrue(printed[1].startswith("started "), printed)


def help_options(prog):
    out = subprocess.run([os.path.join(BIN_DIR, prog), "--help"], capture_output=True,
                         text=True).stdout
    flags, envs = set(), set()
    for line in out.splitlines():
        m = re.match(r"\s+(?:-(\w),)?\s*--([\w-]+)", line)
        if m:
            flags.add("--" + m.group(2))
            if m.group(1):
                flags.add("-" + m.group(1))
            envs.update(re.findall(r"\[([A-Z][A-Z0-9_]*)\]", line))
    return flags, envs


def page_options(prog):
    """Flags and variables in the option list of man/PROG.8 (the .Bl after
    "The options are as follows:")."""
    text = read(f"man/{prog}.8")
    body = text[text.index("The options are as follows:"):]
    body = body[:body.index("\n.El")]
    flags, envs = set(), set()
    for line in body.splitlines():
        if line.startswith(".It "):
            for f in re.findall(r"Fl (\\-[\w-]+|\w)\b", line):
                flags.add("--" + f[2:] if f.startswith("\\-") else "-" + f)
        envs.update(re.findall(r"^\.Ev ([A-Z][A-Z0-9_]*)", line))
    return flags, envs


PROGRAMS = ("mailer-real", "mailer-spy", "reconciler")


@unittest.skipUnless(shutil.which("mandoc"), "mandoc not installed (scripts/install-deps)")
class ManualPages(unittest.TestCase):
    def test_pages_pass_mandoc_lint(self):
        for prog in PROGRAMS:
            # STYLE notes only say the other pages are not installed yet.
            p = subprocess.run(["mandoc", "-Tlint", "-Wwarning", os.path.join(TOP, "man", prog + ".8")],
                               capture_output=True, text=True)
            self.assertEqual((p.returncode, p.stdout + p.stderr), (0, ""), prog)

    @unittest.skipUnless(os.path.exists(os.path.join(BIN_DIR, "reconciler")), "not built")
    def test_help_and_page_list_the_same_options(self):
        for prog in PROGRAMS:
            with self.subTest(prog=prog):
                hf, he = help_options(prog)
                pf, pe = page_options(prog)
                self.assertIn("--help", hf)
                self.assertEqual(hf, pf)
                self.assertEqual(he, pe)
                self.assertGreater(len(hf), 5)


@unittest.skipUnless(shutil.which("mandoc"), "mandoc not installed (scripts/install-deps)")
@unittest.skipUnless(os.path.exists(os.path.join(BIN_DIR, "reconciler")), "not built")
class Install(unittest.TestCase):
    def test_make_install_with_prefix_and_destdir(self):
        dest = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, dest)
        build = os.path.dirname(os.path.abspath(BIN_DIR))
        p = subprocess.run(["make", "-s", "install", f"BUILD={build}", f"DESTDIR={dest}",
                            "PREFIX=/opt/pr"], cwd=TOP, capture_output=True, text=True,
                           timeout=600)
        self.assertEqual(p.returncode, 0, p.stderr)
        root = os.path.join(dest, "opt/pr")
        files = sorted(os.path.relpath(os.path.join(d, f), root)
                       for d, _, fs in os.walk(root) for f in fs)
        self.assertEqual(files, sorted(
            [f"bin/{x}" for x in PROGRAMS] + [f"share/man/man8/{x}.8" for x in PROGRAMS]
            + [f"share/parallel-run/sql/{f}" for f in os.listdir(os.path.join(TOP, "sql"))
               if f.endswith(".sql")]
            + [f"lib/systemd/system/{f}" for f in os.listdir(os.path.join(TOP, "contrib"))
               if f.endswith((".service", ".timer"))]
            + ["share/parallel-run/contrib/reconciler.cron",
               "share/parallel-run/contrib/reconciler.env"]))
        for x in PROGRAMS:
            exe = os.path.join(root, "bin", x)
            self.assertTrue(os.access(exe, os.X_OK))
            self.assertEqual(subprocess.run([exe, "--help"], capture_output=True).returncode, 0)
            p = subprocess.run(["mandoc", "-Tlint", "-Wwarning",
                                os.path.join(root, "share/man/man8", x + ".8")],
                               capture_output=True, text=True)
            self.assertEqual((p.returncode, p.stdout + p.stderr), (0, ""), x)
        with open(os.path.join(root, "lib/systemd/system/reconciler.service")) as f:
            self.assertRegex(f.read(), r"(?m)^ExecStart=/opt/pr/bin/reconciler run --quiet$")
        with open(os.path.join(root, "share/parallel-run/contrib/reconciler.cron")) as f:
            text = f.read()
        self.assertIn("PATH=/opt/pr/bin:", text)
        self.assertNotIn("/usr/local/bin", text)
        # Nothing outside PREFIX.
        self.assertEqual(os.listdir(dest), ["opt"])


def listener():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    return s


class DemoPortTaken(unittest.TestCase):
    """A second checkout's dev environment holding a port: simulated by this
    test process listening on it."""

    def run_demo(self, taken_var):
        held = listener()
        self.addCleanup(held.close)
        ports = {"DEV_MONO_PORT": harness.free_port(), "DEV_MICRO_PORT": harness.free_port(),
                 "DEV_SMTP_PORT": harness.free_port()}
        ports[taken_var] = held.getsockname()[1]
        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d, True)
        os.chmod(d, 0o755)
        env = dict(os.environ, DEV_DIR=os.path.join(d, "dev"), DEMO_DIR=os.path.join(d, "demo"),
                   BIN_DIR=BIN_DIR, **{k: str(v) for k, v in ports.items()})
        p = subprocess.run([os.path.join(TOP, "scripts", "demo")], env=env,
                           capture_output=True, text=True, timeout=120)
        return p, ports[taken_var], d

    @unittest.skipUnless(shutil.which("ss"), "no ss (iproute2)")
    @unittest.skipUnless(os.path.exists(os.path.join(BIN_DIR, "mailer-real")), "not built")
    def test_says_which_port_what_holds_it_and_how_to_move(self):
        for var in ("DEV_MONO_PORT", "DEV_MICRO_PORT", "DEV_SMTP_PORT"):
            with self.subTest(var=var):
                p, port, d = self.run_demo(var)
                self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
                self.assertIn(f"port {port} ({var}) is already taken by", p.stderr)
                self.assertIn(f"(pid {os.getpid()})", p.stderr)
                for v in ("DEV_MONO_PORT=", "DEV_MICRO_PORT=", "DEV_SMTP_PORT="):
                    self.assertIn(v, p.stderr)
                # It stopped before starting anything.
                self.assertFalse(os.path.exists(os.path.join(d, "dev", "pg-mono", "PG_VERSION")))
