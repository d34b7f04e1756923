"""Tools for the fault and attack tests (test_faults*.py, test_hostile*.py).

- ScratchDbs: a fresh pair of databases (one per cluster) with the project's
  schema, so a test counts rows, mismatches and mail exactly, whatever other
  tests left in the shared ones.
- Load: a steady POST /payroll load from a few threads; every request is
  bounded by a timeout and its outcome recorded (a timeout is a hung request).
- pg_stop / pg_start: take one of the dev-env clusters down and up again.
- Ledger: from the load's answers, the databases and the Maildir, the
  invariant every fault test ends with (each 201 has its payroll row, its
  sent_mail row and exactly one delivered message; duplicates only as one
  recognisable batch after a crash) and the figures docs/RELIABILITY.md
  quotes, appended to $TEST_LOG_DIR/reliability.jsonl.
"""
import http.client
import json
import os
import random
import re
import shutil
import subprocess
import threading
import time
import urllib.parse

import harness

TOP = harness.TOP
SQL_DIR = os.path.join(TOP, "sql")
PGBIN = os.environ.get("PGBIN", "/usr/lib/postgresql/15/bin")


def have(*programs):
    return all(os.access(os.path.join(harness.BIN_DIR, p), os.X_OK) for p in programs)


def with_db(url, dbname):
    u = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(u._replace(path="/" + dbname))


def admin(url):
    return with_db(url, "postgres")


class ScratchDbs:
    """mono_<tag> and micro_<tag>, schema loaded, dropped on close()."""

    def __init__(self, tag=None):
        tag = tag or "f%d_%d" % (os.getpid(), random.randrange(1 << 30))
        self.mono_name, self.micro_name = "mono_" + tag, "micro_" + tag
        self.mono = with_db(harness.MONO_URL, self.mono_name)
        self.micro = with_db(harness.MICRO_URL, self.micro_name)
        self._create(harness.MONO_URL, self.mono_name, ("mono.sql", "queue.sql", "reconciler.sql"))
        self._create(harness.MICRO_URL, self.micro_name, ("micro.sql", "queue.sql"))

    @staticmethod
    def _create(url, name, files):
        harness.execute(admin(url), f'drop database if exists "{name}" with (force)')
        harness.execute(admin(url), f'create database "{name}"')
        for f in files:
            path = os.path.join(SQL_DIR, f)
            if os.path.exists(path):
                with open(path) as fh:
                    harness.execute(with_db(url, name), fh.read())

    @staticmethod
    def clone(url, src, dst):
        """CREATE DATABASE dst TEMPLATE src (src must have no connections)."""
        harness.release(src)
        harness.execute(admin(url), f'drop database if exists "{dst}" with (force)')
        harness.execute(admin(url), f'create database "{dst}" template "{src}"')
        return with_db(url, dst)

    def close(self):
        for url, name in ((harness.MONO_URL, self.mono_name), (harness.MICRO_URL, self.micro_name)):
            harness.release(name)
            try:
                harness.execute(admin(url), f'drop database if exists "{name}" with (force)')
            except Exception:
                pass


def count(url, table, where="true"):
    return harness.query(url, f"select count(*) from {table} where {where}")[0][0]


# --- the clusters -------------------------------------------------------

def _dev_dir():
    return os.path.dirname(os.path.abspath(harness.MAILDIR))


def _as_pg(argv):
    return (["runuser", "-u", "postgres", "--"] + argv) if os.geteuid() == 0 else argv


def pg_stop(which):
    """Fast shutdown of the dev-env cluster `mono` or `micro`."""
    data = os.path.join(_dev_dir(), "pg-" + which)
    subprocess.run(_as_pg([os.path.join(PGBIN, "pg_ctl"), "-D", data, "-m", "fast",
                           "-w", "stop"]), check=True, capture_output=True, timeout=60)


def pg_start(which):
    """Start it again with the options it last ran with (postmaster.opts)."""
    data = os.path.join(_dev_dir(), "pg-" + which)
    with open(os.path.join(data, "postmaster.opts")) as f:
        import shlex
        argv = shlex.split(f.read())
    opts = []
    skip = False
    for a in argv[1:]:
        if skip:
            skip = False
            continue
        if a == "-D":
            skip = True
            continue
        opts.append(a)
    subprocess.run(_as_pg([os.path.join(PGBIN, "pg_ctl"), "-D", data, "-w", "-t", "60",
                           "-l", os.path.join(data, "server.log"),
                           "-o", " ".join(shlex.quote(o) for o in opts), "start"]),
                   check=True, capture_output=True, timeout=90)


def pg_is_up(url):
    try:
        harness.query(url, "select 1")
        return True
    except Exception:
        return False


# --- load ---------------------------------------------------------------

class Result:
    __slots__ = ("n", "ship_to", "status", "body", "headers", "error", "elapsed", "sent_at")

    def json(self):
        try:
            return json.loads(self.body)
        except Exception:
            return None


class Load:
    """POST /payroll at about `rate` requests a second from `workers`
    threads until stop(). Each request has its own connection and a
    timeout; the outcome of every one is kept in .results."""

    def __init__(self, port, rate=40, workers=4, timeout=15, tag=None, path="/payroll",
                 body=None):
        self.port, self.rate, self.workers, self.timeout = port, rate, workers, timeout
        self.tag = tag or "load%x" % random.randrange(1 << 24)
        self.path = path
        self.body = body or (lambda n, ship_to: {"shipTo": ship_to, "total": 100 + n % 900 + 0.25})
        self.results = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._n = 0
        self._threads = []

    def _next(self):
        with self._lock:
            self._n += 1
            return self._n

    def _one(self, n):
        r = Result()
        r.n = n
        r.ship_to = f"{self.tag} {n}"
        r.status, r.body, r.headers, r.error = None, b"", {}, None
        r.sent_at = time.time()
        t0 = time.monotonic()
        data = json.dumps(self.body(n, r.ship_to)).encode()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        try:
            conn.request("POST", self.path, body=data,
                         headers={"Content-Type": "application/json",
                                  "X-Request-Id": f"{self.tag}-{n}"})
            resp = conn.getresponse()
            r.body = resp.read()
            r.status = resp.status
            r.headers = {k.lower(): v for k, v in resp.getheaders()}
        except TimeoutError as e:
            r.error = "timeout: %s" % e
        except OSError as e:
            r.error = "%s: %s" % (type(e).__name__, e)
        except http.client.HTTPException as e:
            r.error = "%s: %s" % (type(e).__name__, e)
        finally:
            conn.close()
        r.elapsed = time.monotonic() - t0
        with self._lock:
            self.results.append(r)

    def _worker(self):
        interval = self.workers / float(self.rate)
        next_t = time.monotonic() + random.random() * interval
        while not self._stop.is_set():
            now = time.monotonic()
            if now < next_t:
                self._stop.wait(next_t - now)
                continue
            next_t = max(next_t + interval, now)
            self._one(self._next())

    def start(self):
        for _ in range(self.workers):
            t = threading.Thread(target=self._worker, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join(self.timeout + 5)
        return self

    def run_for(self, seconds):
        self.start()
        time.sleep(seconds)
        return self.stop()

    def wait_count(self, n, timeout=60):
        harness.wait_for(lambda: len(self.results) >= n, timeout, what=f"{n} load requests")

    # summaries
    def created(self):
        return [r for r in self.results if r.status == 201]

    def by_status(self):
        out = {}
        for r in self.results:
            k = r.status if r.status is not None else ("timeout" if r.error and r.error.startswith("timeout") else "conn-error")
            out[k] = out.get(k, 0) + 1
        return out

    def hung(self):
        return [r for r in self.results if r.error and r.error.startswith("timeout")]


# --- the invariant ------------------------------------------------------

SUBJECT_RE = re.compile(r"^Payroll (\d+) shipped$")


def mail_index(messages):
    """payroll id -> list of (Message-Id, To) of every delivered message."""
    idx = {}
    for m in messages:
        subj = str(m.get("Subject", "")).strip()
        g = SUBJECT_RE.match(subj)
        if not g:
            continue
        idx.setdefault(int(g.group(1)), []).append(
            (str(m.get("Message-Id", "")).strip(), str(m.get("To", "")).strip()))
    return idx


class Ledger:
    """Checks the end state of a fault test and records its figures."""

    def __init__(self, test, name, mono_url, smtp=None):
        self.test, self.name, self.mono, self.smtp = test, name, mono_url, smtp
        self.figures = {"fault": name}

    def check_rows(self, load):
        """Every 201 has its payroll row and its sent_mail row, with the
        correlation id the client was given; no request hung."""
        t = self.test
        created = load.created()
        t.assertEqual(load.hung(), [], "requests hung (timed out)")
        ids = {}
        for r in created:
            j = r.json()
            t.assertIsNotNone(j, f"201 with a body that is not JSON: {r.body[:200]!r}")
            ids[int(j["id"])] = j["notification"]["correlationId"]
        t.assertEqual(len(ids), len(created), "two 201s carry the same payroll id")
        rows = dict(harness.query(self.mono, "select p.id, m.correlation_id::text from payroll p "
                                  "join sent_mail m on m.payroll_id = p.id"))
        missing = sorted(i for i in ids if i not in rows)
        t.assertEqual(missing, [], "payrolls answered 201 without payroll+sent_mail rows")
        wrong = sorted(i for i in ids if rows[i] != ids[i])
        t.assertEqual(wrong, [], "correlation id in the 201 differs from sent_mail's")
        self.ids = ids
        self.figures.update(requests=len(load.results), created=len(created),
                            statuses={str(k): v for k, v in sorted(load.by_status().items(), key=str)},
                            payroll_rows=harness.query(self.mono, "select count(*) from payroll")[0][0],
                            sent_mail_rows=harness.query(self.mono, "select count(*) from sent_mail")[0][0],
                            hung=0)
        return ids

    def wait_delivered(self, timeout=90):
        """Every sent_mail row leaves 'pending' (the outbox drained)."""
        harness.wait_for(lambda: harness.query(
            self.mono, "select count(*) from sent_mail where status = 'pending'")[0][0] == 0,
            timeout, interval=0.25, what="the outbox to drain")

    def check_mail(self, max_dup_batch=0):
        """Every sent_mail row of status 'sent' was delivered once; each
        payroll answered 201 is among them; duplicates, when allowed (after a
        crash), carry the same Message-Id and number at most max_dup_batch."""
        t = self.test
        msgs = self.smtp.messages()
        idx = mail_index(msgs)
        rows = harness.query(self.mono, "select payroll_id, status, destination from sent_mail")
        status = {pid: st for pid, st, _ in rows}
        dest = {pid: d for pid, _, d in rows}
        not_sent = sorted(i for i in self.ids if status.get(i) != "sent")
        t.assertEqual(not_sent, [], "payrolls answered 201 whose mail is not 'sent'")
        lost = sorted(pid for pid, st in status.items() if st == "sent" and pid not in idx)
        t.assertEqual(lost, [], "mail marked sent but not in the mailbox")
        phantom = sorted(pid for pid in idx if pid not in status)
        t.assertEqual(phantom, [], "mail in the mailbox for no sent_mail row")
        dups = {pid: v for pid, v in idx.items() if len(v) > 1}
        for pid, v in dups.items():
            t.assertEqual(len({mid for mid, _ in v}), 1,
                          f"payroll {pid} delivered {len(v)} times with different Message-Ids: {v}")
            t.assertTrue(v[0][0], f"payroll {pid}: duplicate without a Message-Id")
        t.assertLessEqual(len(dups), max_dup_batch,
                          f"{len(dups)} payrolls delivered more than once: {sorted(dups)[:20]}")
        t.assertTrue(all(len(v) <= 2 for v in dups.values()), "a message delivered 3 times or more")
        for pid, v in idx.items():
            t.assertEqual(v[0][1].lower(), dest[pid].lower(), f"payroll {pid} delivered to the wrong address")
        self.figures.update(delivered=sum(len(v) for v in idx.values()),
                            distinct_delivered=len(idx),
                            duplicates=sum(len(v) - 1 for v in dups.values()),
                            lost=len([i for i in self.ids if i not in idx]))
        t.assertEqual(self.figures["lost"], 0)
        return idx

    def note(self, **kw):
        self.figures.update(kw)

    def record(self):
        d = os.environ.get("TEST_LOG_DIR", harness.LOG_DIR)
        os.makedirs(d, exist_ok=True)
        self.figures["at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.figures["bin"] = harness.BIN_DIR
        with open(os.path.join(d, "reliability.jsonl"), "a") as f:
            f.write(json.dumps(self.figures) + "\n")


def tmpdir(name):
    d = os.path.join(os.environ.get("TEST_LOG_DIR", harness.LOG_DIR), "fault-tmp",
                     "%s-%d-%x" % (name, os.getpid(), random.randrange(1 << 24)))
    if os.path.exists(d):
        shutil.rmtree(d)
    os.makedirs(d)
    return d


# --- raw HTTP -----------------------------------------------------------

class RawResponse:
    def __init__(self, raw):
        self.raw = raw
        self.status, self.headers, self.body = None, {}, b""
        head, sep, body = raw.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        m = re.match(rb"HTTP/1\.[01] (\d{3})", lines[0]) if lines else None
        if m:
            self.status = int(m.group(1))
            for l in lines[1:]:
                k, _, v = l.partition(b":")
                self.headers[k.strip().lower().decode("latin-1")] = v.strip().decode("latin-1")
            self.body = body

    def json(self):
        try:
            n = int(self.headers.get("content-length", len(self.body)))
            return json.loads(self.body[:n])
        except Exception:
            return None


def raw_http(port, data, timeout=10, chunks=None):
    """Send raw bytes (without half-closing: some servers drop a request
    whose sender shut down writing) and read until the first response is
    complete, the server closes, or timeout. Returns a RawResponse."""
    import socket as so
    s = so.create_connection(("127.0.0.1", port), timeout=timeout)
    out = b""
    try:
        for part in (chunks or [data]):
            s.sendall(part)
        deadline = time.time() + timeout
        while time.time() < deadline:
            head, sep, body = out.partition(b"\r\n\r\n")
            if sep:
                m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                if m and len(body) >= int(m.group(1)):
                    break
            try:
                s.settimeout(max(0.05, deadline - time.time()))
                chunk = s.recv(65536)
            except (TimeoutError, so.timeout):
                break
            except ConnectionResetError:
                break
            if not chunk:
                break
            out += chunk
    finally:
        s.close()
    return RawResponse(out)


# --- the whole flow on private databases and a private SMTP server --------

from faulty_smtp import FaultySmtp  # noqa: E402

# Delivery knobs of mailer-real that keep a test bounded: quick retries and
# small SMTP sessions.
DELIVERY_WORKERS, DELIVERY_BATCH = 2, 20
# mailer-real's own defaults (its --help): what the crash tests run with
DEFAULT_DELIVERY = {"DELIVERY_WORKERS": "4", "DELIVERY_BATCH": "200"}
REAL_FAST_ENV = {
    "LOG_LEVEL": "info",
    "DELIVERY_WORKERS": str(DELIVERY_WORKERS),
    "DELIVERY_BATCH": str(DELIVERY_BATCH),
    "DELIVERY_POLL_MS": "200",
    "DELIVERY_RETRY_BASE_MS": "200",
    "DELIVERY_RETRY_MAX_MS": "2000",
    "DELIVERY_MAX_ATTEMPTS": "1000",
    "SMTP_TIMEOUT_S": "10",
    "SPY_TIMEOUT_MS": "2000",
}


class Stack:
    """mailer-spy + mailer-real (NOTIFIER=parallel) on scratch databases
    and a FaultySmtp of their own. Any part may be killed and started again
    on the same port."""

    def __init__(self, name, smtp_opts=None, real_env=None, spy_env=None, spy=None):
        """spy=None: with mailer-spy (NOTIFIER=parallel) when it is built,
        else mailer-real alone (NOTIFIER=smtp)."""
        if spy is None:
            spy = have("mailer-spy")
        self.name = name
        self.dbs = ScratchDbs()
        self.dir = tmpdir(name)
        self.smtp = FaultySmtp(harness.free_port(), os.path.join(self.dir, "mail"),
                               os.path.join(self.dir, "smtp.log"), **(smtp_opts or {}))
        self.spy = None
        if spy:
            env = {"MICRO_DATABASE_URL": self.dbs.micro, "SPY_MODE": "spy", "LOG_LEVEL": "info"}
            env.update(spy_env or {})
            self.spy = harness.Service("mailer-spy", env=env, log_name=f"{name}-spy")
        env = {"MONO_DATABASE_URL": self.dbs.mono, "SMTP_HOST": "127.0.0.1",
               "SMTP_PORT": str(self.smtp.port), "NOTIFIER": "parallel" if spy else "smtp",
               "PARALLEL_RUN_PERCENT": "100"}
        if spy:
            env["SPY_URL"] = f"http://127.0.0.1:{self.spy.port}"
            if spy_env and spy_env.get("SPY_TOKEN"):
                env["SPY_TOKEN"] = spy_env["SPY_TOKEN"]
        env.update(REAL_FAST_ENV)
        env.update(real_env or {})
        self.real = harness.Service("mailer-real", env=env, log_name=f"{name}-real")

    def start(self):
        self.smtp.start()
        if self.spy:
            self.spy.start()
        self.real.start()
        return self

    def restart(self, svc):
        """Start a stopped or killed service again on its port."""
        svc.proc = None
        svc.start()

    def close(self):
        for s in (self.real, self.spy):
            if s is not None:
                try:
                    s.stop()
                except Exception:
                    pass
        self.smtp.stop()
        self.dbs.close()

    def reconciler(self, *args, timeout=120, env=None):
        e = dict(os.environ, MONO_DATABASE_URL=self.dbs.mono, MICRO_DATABASE_URL=self.dbs.micro,
                 LOG_LEVEL="info")
        e.update(env or {})
        return subprocess.run([os.path.join(harness.BIN_DIR, "reconciler")] + list(args),
                              env=e, capture_output=True, text=True, timeout=timeout)

    def spied_settled(self, expect=None, timeout=30):
        """Waits until spied_mail stops growing (the parallel queue drained)."""
        last, stable = -1, 0
        deadline = time.time() + timeout
        while time.time() < deadline:
            n = count(self.dbs.micro, "spied_mail")
            if expect is not None and n >= expect:
                return n
            stable = stable + 1 if n == last else 0
            if stable >= 8:
                return n
            last = n
            time.sleep(0.25)
        return last
