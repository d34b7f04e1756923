"""mailer-spy (SPY_MODE=spy), end to end, on its own.

The real binary against a scratch database on postgresMicro of the dev env,
over real HTTP on loopback. Covers:

- the canonical render of the seed payroll (Juablaz, 320 -> 320.00) and of
  a non-ASCII name and an address, byte for byte with CRLF, answered 201
  and committed (read back from another connection);
- a repeated correlation id: 200 with the FIRST record and nothing written,
  sequentially and from concurrent requests inside one commit;
- more than 30 bad inputs (malformed, truncated, wrong Content-Type, 1 MiB,
  unknown/duplicate keys, wrong types, CR/LF/NUL, invalid UTF-8, 1e400, -1,
  320.001, wrong method or path), each with its status, a JSON error naming
  the field, and zero rows written;
- SPY_TOKEN: missing or wrong bearer -> 401 with WWW-Authenticate;
- /healthz, /readyz (503 with Retry-After while the store is down), /metrics
  in the Prometheus text format;
- group commit seen from outside: concurrent requests share commits
  (/metrics group_commit_batch_rows), and requests waiting for a commit hold
  no server thread (/healthz answers while 60 of them wait on 2 threads);
- SPY_COMMITTERS=3: three transactions in flight at once and never a fourth
  (pg_stat_activity), a commit held up by the test does not hold the others,
  and one id in several transactions at once, or shared by concurrent
  batches in every order, still gives exactly one 201;
- postgresMicro stopped and started: 503 + Retry-After meanwhile, then 201
  again with no restart of the spy (the next one once /readyz says 200);
  its connection killed while idle: the next notification still gets 201;
- SIGTERM with requests in flight and under a concurrent load: every 201 has
  its row, nothing hangs, exit code 0.

Also: bad configuration stops the start naming the variable, --help and
docs/SPY.md list the same variables, and a SPY_TEMPLATE file renders.

Waiting for a commit is made certain, not timed: the test holds a SHARE
lock on spied_mail, so the committer's INSERT blocks until it lets go.
"""
import http.client
import json
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
import unittest
import uuid

import psycopg2

import harness
from harness import Service, wait_for
from fault_tools import ScratchDbs, count, have, pg_is_up, pg_start, pg_stop, raw_http

TOKEN = "spy-token-5f1e0c9a7b"


def note(**kw):
    """Numbers worth reading in the test log."""
    print("  [spy] " + " ".join(f"{k}={v}" for k, v in kw.items()), flush=True)


def notification(**over):
    n = {"correlationId": str(uuid.uuid4()), "payrollId": 3, "shipTo": "Juablaz",
         "total": 320}
    n.update(over)
    return n


def canonical(pid, ship_to, total, destination):
    return {"destination": destination, "subject": f"Payroll {pid} shipped",
            "body": f"Hello {ship_to},\r\n\r\nPayroll {pid} shipped to {ship_to} of {total}.\r\n"}


def metrics(svc):
    """/metrics as {'name{labels}': value}; asserts on the text format."""
    st, h, data = svc.request("GET", "/metrics")
    assert st == 200, st
    assert h["content-type"].startswith("text/plain; version=0.0.4"), h["content-type"]
    out, typed = {}, set()
    for line in data.decode("utf-8").splitlines():
        if line.startswith("# TYPE "):
            typed.add(line.split()[2])
            continue
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_]\w*="(?:[^"\\]|\\.)*",?)*\})? (\S+)', line)
        assert m, f"not Prometheus text: {line!r}"
        family = re.sub(r"_(bucket|sum|count)$", "", m.group(1))
        assert m.group(1) in typed or family in typed, f"no # TYPE for {line!r}"
        out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


MICRO = '{db="postgresMicro"}'


class Expect100(bytes):
    """A body announced with Expect: 100-continue, as curl sends a large
    one: the client sends the headers and waits for the answer."""


class Chunked(bytes):
    """A body sent with Transfer-Encoding: chunked (no Content-Length), so
    the server only learns its size while reading it."""


def send(port, method, path, body=None, headers=None):
    """harness.request, plus the two ways of sending a large body above."""
    if isinstance(body, Expect100):
        head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Expect: 100-continue",
                f"Content-Length: {len(body)}"] + [f"{k}: {v}" for k, v in (headers or {}).items()]
        r = raw_http(port, ("\r\n".join(head) + "\r\n\r\n").encode())
        n = int(r.headers.get("content-length", len(r.body)))
        return r.status, r.headers, r.body[:n]
    if isinstance(body, Chunked):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            conn.request(method, path, body=iter([body[i:i + 65536]
                                                  for i in range(0, len(body), 65536)]),
                         headers=headers or {}, encode_chunked=True)
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()
    return harness.request(port, method, path, body, headers)


class TableLock:
    """Holds a SHARE lock on spied_mail: the committer's INSERT waits."""

    def __init__(self, url):
        self.url = url
        self.conn = psycopg2.connect(url)
        with self.conn.cursor() as cur:
            cur.execute("lock table spied_mail in share mode")

    def wait_blocked(self):
        wait_for(lambda: harness.query(self.url, "select count(*) from pg_stat_activity "
                                       "where datname = current_database() and "
                                       "wait_event_type = 'Lock'")[0][0] >= 1,
                 30, what="the committer waiting for the table lock")

    def release(self):
        if self.conn is not None:
            self.conn.rollback()
            self.conn.close()
            self.conn = None


class Posts:
    """POST /notifications from threads, one fresh connection each; every
    outcome kept: a status, or the exception (a timeout is a hung request)."""

    def __init__(self, svc, timeout=60):
        self.port, self.timeout = svc.port, timeout
        self.results, self.threads = [], []
        self.lock = threading.Lock()

    def one(self, body, headers=None):
        try:
            st, h, data = harness.request(self.port, "POST", "/notifications", body, headers,
                                          timeout=self.timeout)
            r = (body, st, data, None)
        except Exception as e:  # noqa: BLE001 - the outcome is what we record
            r = (body, None, None, e)
        with self.lock:
            self.results.append(r)
        return r

    def start(self, bodies):
        for b in bodies:
            t = threading.Thread(target=self.one, args=(b,), daemon=True)
            t.start()
            self.threads.append(t)
        return self

    def join(self, timeout=90):
        deadline = time.time() + timeout
        for t in self.threads:
            t.join(max(0.1, deadline - time.time()))
        alive = sum(t.is_alive() for t in self.threads)
        assert alive == 0, f"{alive} request(s) still waiting"
        return self.results


def spied(url, cid):
    rows = harness.query(url, "select payroll_id, destination, subject, body from spied_mail "
                              "where correlation_id = %s", (cid,))
    return rows[0] if rows else None


class SpyCase(unittest.TestCase):
    """One spy on a scratch micro database per class."""
    spy_env = {}

    @classmethod
    def setUpClass(cls):
        cls.dbs = ScratchDbs()
        env = {"MICRO_DATABASE_URL": cls.dbs.micro, "SPY_MODE": "spy"}
        env.update(cls.spy_env)
        cls.svc = Service("mailer-spy", env=env, log_name=f"spy-{cls.__name__}").start()

    @classmethod
    def tearDownClass(cls):
        cls.svc.stop()
        cls.dbs.close()

    def rows(self):
        return count(self.dbs.micro, "spied_mail")

    def post(self, body, headers=None):
        return self.svc.request("POST", "/notifications", body, headers)


@unittest.skipUnless(have("mailer-spy"), "mailer-spy not built")
class SpyApi(SpyCase):
    def assert_recorded(self, n, st, data, expected, status=201):
        self.assertEqual(st, status, data)
        doc = json.loads(data)
        self.assertEqual(doc, dict(expected, correlationId=n["correlationId"]))
        row = spied(self.dbs.micro, n["correlationId"])
        self.assertIsNotNone(row, "answered 201 but no row committed")
        self.assertEqual(row, (n["payrollId"], expected["destination"], expected["subject"],
                               expected["body"]))

    def test_seed_payroll_canonical(self):
        n = notification(payrollId=3, shipTo="Juablaz", total=320)
        st, h, data = self.post(n, {"X-Request-Id": "seed-req-1"})
        self.assert_recorded(n, st, data, canonical(3, "Juablaz", "320.00", "juablaz@example.com"))
        self.assertIn(b"\\r\\n", data)
        self.assertEqual(h["x-request-id"], "seed-req-1")
        self.assertRegex(h["x-served-by"], r"^mailer-spy/\d")
        self.assertEqual(h["content-type"], "application/json")
        # 320.00 as a real and 0.5 keep their cents; a generated request id
        n2 = notification(payrollId=4, shipTo="Juablaz", total=320.00)
        st, h, data = self.post(n2)
        self.assert_recorded(n2, st, data, canonical(4, "Juablaz", "320.00", "juablaz@example.com"))
        self.assertRegex(h["x-request-id"], r"^[0-9a-f-]{36}$")
        n3 = notification(payrollId=5, shipTo="Juablaz", total=0.5)
        st, _, data = self.post(n3)
        self.assert_recorded(n3, st, data, canonical(5, "Juablaz", "0.50", "juablaz@example.com"))

    def test_non_ascii_name_and_address(self):
        n = notification(payrollId=41, shipTo="José Núñez", total=1500.75)
        st, _, data = self.post(n)
        self.assert_recorded(n, st, data,
                             canonical(41, "José Núñez", "1500.75", "jose.nunez@example.com"))
        self.assertIn("José Núñez".encode(), data)  # UTF-8 on the wire, not escaped
        n = notification(payrollId=42, shipTo="Ana.Perez@Example.COM", total=1000000000)
        st, _, data = self.post(n)
        self.assert_recorded(n, st, data, canonical(42, "Ana.Perez@Example.COM", "1000000000.00",
                                                    "Ana.Perez@example.com"))
        # an upper-case correlation id is the same id, stored lower-cased
        cid = str(uuid.uuid4())
        n = notification(correlationId=cid.upper(), payrollId=43, shipTo="Ñandú Ågren", total=7)
        st, _, data = self.post(n)
        self.assertEqual(st, 201, data)
        self.assertEqual(json.loads(data)["correlationId"], cid)
        self.assertEqual(spied(self.dbs.micro, cid)[1], "nandu.agren@example.com")

    def test_repeated_correlation_id(self):
        n = notification(payrollId=7, shipTo="First Name", total=10)
        st, _, first = self.post(n)
        self.assertEqual(st, 201, first)
        before = self.rows()
        again = dict(n, payrollId=8, shipTo="Second Name", total=99.99)
        for body in (n, again):
            st, _, data = self.post(body)
            self.assertEqual(st, 200, data)
            self.assertEqual(data, first, "a repeat must answer with the first record")
        self.assertEqual(self.rows(), before, "a repeat wrote a row")
        self.assertEqual(spied(self.dbs.micro, n["correlationId"]),
                         (7, "first.name@example.com", "Payroll 7 shipped",
                          "Hello First Name,\r\n\r\nPayroll 7 shipped to First Name of 10.00.\r\n"))

    def test_bad_inputs_write_nothing(self):
        good = notification()
        cid = good["correlationId"]
        big = json.dumps(dict(good, shipTo="x" * (1 << 20))).encode()

        def raw(s):
            return s.replace("CID", str(uuid.uuid4())).encode()

        def rawb(b):
            return b.replace(b"CID", str(uuid.uuid4()).encode())

        J = {"Content-Type": "application/json"}
        cases = [
            # (what, method, path, body, headers, status, field)
            ("malformed JSON", "POST", "/notifications", b"{", J, 400, None),
            ("truncated body", "POST", "/notifications",
             raw('{"correlationId": "CID", "payrollId": 3, "shipTo": "Jua'), J, 400, None),
            ("empty body", "POST", "/notifications", b"", J, 400, None),
            ("an array", "POST", "/notifications", b"[]", J, 400, None),
            ("a string", "POST", "/notifications", b'"Juablaz"', J, 400, None),
            ("two objects", "POST", "/notifications", raw(
                '{"correlationId":"CID","payrollId":3,"shipTo":"A","total":1}{}'), J, 400, None),
            ("trailing comma", "POST", "/notifications", raw(
                '{"correlationId":"CID","payrollId":3,"shipTo":"A","total":1,}'), J, 400, None),
            ("NaN", "POST", "/notifications", raw(
                '{"correlationId":"CID","payrollId":3,"shipTo":"A","total":NaN}'), J, 400, None),
            ("Infinity", "POST", "/notifications", raw(
                '{"correlationId":"CID","payrollId":3,"shipTo":"A","total":Infinity}'), J, 400, None),
            ("text/plain", "POST", "/notifications", json.dumps(good),
             {"Content-Type": "text/plain"}, 415, None),
            ("form", "POST", "/notifications", "shipTo=A&total=1",
             {"Content-Type": "application/x-www-form-urlencoded"}, 415, None),
            ("no Content-Type", "POST", "/notifications", json.dumps(good), {}, 415, None),
            ("1 MiB body, Content-Length", "POST", "/notifications", Expect100(big), J, 413, None),
            ("1 MiB body, chunked", "POST", "/notifications", Chunked(big), J, 413, None),
            ("unknown key", "POST", "/notifications", dict(good, extra=1), None, 400, "extra"),
            ("unknown key, case", "POST", "/notifications",
             {"correlationid": cid, "payrollId": 3, "shipTo": "A", "total": 1}, None, 400,
             "correlationid"),
            ("duplicate correlationId", "POST", "/notifications", raw(
                '{"correlationId":"CID","correlationId":"CID","payrollId":3,"shipTo":"A","total":1}'),
             J, 400, "correlationId"),
            ("duplicate total", "POST", "/notifications", raw(
                '{"correlationId":"CID","payrollId":3,"shipTo":"A","total":1,"total":2}'),
             J, 400, "total"),
            ("missing correlationId", "POST", "/notifications",
             {"payrollId": 3, "shipTo": "A", "total": 1}, None, 400, "correlationId"),
            ("missing payrollId", "POST", "/notifications",
             {"correlationId": cid, "shipTo": "A", "total": 1}, None, 400, "payrollId"),
            ("missing shipTo", "POST", "/notifications",
             {"correlationId": cid, "payrollId": 3, "total": 1}, None, 400, "shipTo"),
            ("missing total", "POST", "/notifications",
             {"correlationId": cid, "payrollId": 3, "shipTo": "A"}, None, 400, "total"),
            ("correlationId not a uuid", "POST", "/notifications",
             dict(good, correlationId="not-a-uuid"), None, 400, "correlationId"),
            ("correlationId a number", "POST", "/notifications",
             dict(good, correlationId=12), None, 400, "correlationId"),
            ("correlationId with a newline", "POST", "/notifications",
             dict(good, correlationId=cid + "\n"), None, 400, "correlationId"),
            ("payrollId a string", "POST", "/notifications", dict(good, payrollId="3"), None, 400,
             "payrollId"),
            ("payrollId 3.5", "POST", "/notifications", dict(good, payrollId=3.5), None, 400,
             "payrollId"),
            ("payrollId 0", "POST", "/notifications", dict(good, payrollId=0), None, 400,
             "payrollId"),
            ("payrollId -1", "POST", "/notifications", dict(good, payrollId=-1), None, 400,
             "payrollId"),
            ("payrollId 2^64", "POST", "/notifications", dict(good, payrollId=2 ** 64), None, 400,
             "payrollId"),
            ("shipTo a number", "POST", "/notifications", dict(good, shipTo=5), None, 400, "shipTo"),
            ("shipTo null", "POST", "/notifications", dict(good, shipTo=None), None, 400, "shipTo"),
            ("shipTo empty", "POST", "/notifications", dict(good, shipTo=""), None, 400, "shipTo"),
            ("shipTo CR/LF header injection", "POST", "/notifications",
             dict(good, shipTo="Juablaz\r\nBcc: evil@example.net"), None, 400, "shipTo"),
            ("shipTo LF", "POST", "/notifications", dict(good, shipTo="Jua\nblaz"), None, 400,
             "shipTo"),
            ("shipTo NUL", "POST", "/notifications", dict(good, shipTo="Jua\u0000blaz"), None, 400,
             "shipTo"),
            ("shipTo invalid UTF-8", "POST", "/notifications",
             rawb(b'{"correlationId":"CID","payrollId":3,"shipTo":"Jua\xffblaz","total":1}'),
             J, 400, "shipTo"),
            ("shipTo overlong UTF-8", "POST", "/notifications",
             rawb(b'{"correlationId":"CID","payrollId":3,"shipTo":"\xc0\xaf","total":1}'),
             J, 400, "shipTo"),
            ("shipTo Cyrillic (no safe local part)", "POST", "/notifications",
             dict(good, shipTo="Иван"), None, 400, "shipTo"),
            ("shipTo U+2028", "POST", "/notifications", dict(good, shipTo="Jua\u2028blaz"), None,
             400, "shipTo"),
            ("shipTo double dot", "POST", "/notifications", dict(good, shipTo="a..b"), None, 400,
             "shipTo"),
            ("shipTo lone dot", "POST", "/notifications", dict(good, shipTo="."), None, 400,
             "shipTo"),
            ("shipTo two recipients", "POST", "/notifications",
             dict(good, shipTo="evil@example.net,victim@example.com"), None, 400, "shipTo"),
            ("shipTo SMTP smuggling", "POST", "/notifications",
             dict(good, shipTo="victim@example.com>\r\nRCPT TO:<evil@example.net"), None, 400,
             "shipTo"),
            ("shipTo bad domain", "POST", "/notifications", dict(good, shipTo="a@localhost"), None,
             400, "shipTo"),
            ("shipTo 300 bytes", "POST", "/notifications", dict(good, shipTo="a" * 300), None, 400,
             "shipTo"),
            ("total 1e400", "POST", "/notifications", raw(
                '{"correlationId":"CID","payrollId":3,"shipTo":"A","total":1e400}'), J, 400, "total"),
            ("total -1", "POST", "/notifications", dict(good, total=-1), None, 400, "total"),
            ("total 320.001", "POST", "/notifications", dict(good, total=320.001), None, 400,
             "total"),
            ("total a string", "POST", "/notifications", dict(good, total="320"), None, 400, "total"),
            ("total true", "POST", "/notifications", dict(good, total=True), None, 400, "total"),
            ("total null", "POST", "/notifications", dict(good, total=None), None, 400, "total"),
            ("total above 1e9", "POST", "/notifications", dict(good, total=1000000000.01), None, 400,
             "total"),
            ("total 1e10", "POST", "/notifications", dict(good, total=1e10), None, 400, "total"),
            ("GET /notifications", "GET", "/notifications", None, None, 405, None),
            ("PUT /notifications", "PUT", "/notifications", good, None, 405, None),
            ("DELETE /notifications", "DELETE", "/notifications", None, None, 405, None),
            ("wrong path", "POST", "/notification", good, None, 404, None),
            ("path with a query-ish tail", "POST", "/notifications/x", good, None, 404, None),
        ]
        self.assertGreaterEqual(len(cases), 30)
        start = self.rows()
        seen = {}
        for what, method, path, body, headers, status, field in cases:
            with self.subTest(what):
                before = self.rows()
                st, h, data = send(self.svc.port, method, path, body, headers)
                self.assertEqual(st, status, f"{what}: {data[:200]!r}")
                self.assertEqual(h.get("content-type"), "application/json", what)
                doc = json.loads(data)
                self.assertIsInstance(doc.get("error"), str, what)
                self.assertTrue(doc["error"], what)
                self.assertIn("field", doc, what)
                if field is not None:
                    self.assertEqual(doc["field"], field, f"{what}: {doc}")
                if status == 405:
                    self.assertIn("POST", h.get("allow", ""), what)
                self.assertEqual(self.rows(), before, f"{what} wrote a row")
                seen[status] = seen.get(status, 0) + 1
        self.assertEqual(self.rows(), start)
        note(bad_inputs=len(cases), by_status=seen)
        # still serving, and the good body of the table was never the problem
        st, _, data = self.post(good)
        self.assertEqual(st, 201, data)

    def test_health_ready_metrics(self):
        st, h, data = self.svc.request("GET", "/healthz")
        self.assertEqual((st, json.loads(data)), (200, {"status": "ok"}))
        st, h, data = self.svc.request("GET", "/readyz")
        self.assertEqual((st, json.loads(data)["status"]), (200, "ready"))
        self.post(notification())
        m = metrics(self.svc)
        for key in ("group_commit_batch_rows_count" + MICRO, "group_commit_batch_rows_sum" + MICRO,
                    'group_commit_batch_rows_bucket{db="postgresMicro",le="+Inf"}',
                    "group_commit_duration_seconds_count" + MICRO,
                    "group_commit_pending" + MICRO,
                    'group_commit_items_total{db="postgresMicro",outcome="ok"}',
                    'spy_notifications_total{outcome="created"}',
                    'http_requests_total{route="notifications",status="201"}',
                    'http_request_duration_seconds_count{route="notifications"}'):
            self.assertIn(key, m)
        self.assertGreaterEqual(m["group_commit_batch_rows_count" + MICRO], 1)
        self.assertEqual(m['group_commit_batch_rows_bucket{db="postgresMicro",le="+Inf"}'],
                         m["group_commit_batch_rows_count" + MICRO])
        self.assertEqual(m["group_commit_pending" + MICRO], 0)
        # counted exactly, each status and outcome under its own labels
        base = m
        for i in range(3):
            self.assertEqual(self.post(notification(payrollId=60 + i))[0], 201)
        for bad in ({"correlationId": "x"}, dict(notification(), total=-1)):
            self.assertEqual(self.post(bad)[0], 400)
        self.assertEqual(self.svc.request("GET", "/nowhere")[0], 404)
        m = metrics(self.svc)

        def grew(key):
            return m.get(key, 0) - base.get(key, 0)
        self.assertEqual(grew('http_requests_total{route="notifications",status="201"}'), 3)
        self.assertEqual(grew('http_requests_total{route="notifications",status="400"}'), 2)
        self.assertEqual(grew('http_requests_total{route="unmatched",status="404"}'), 1)
        self.assertEqual(grew('http_request_duration_seconds_count{route="notifications"}'), 5)
        self.assertEqual(grew('spy_notifications_total{outcome="created"}'), 3)
        self.assertEqual(grew('spy_notifications_total{outcome="invalid"}'), 2)


@unittest.skipUnless(have("mailer-spy"), "mailer-spy not built")
class SpyToken(SpyCase):
    spy_env = {"SPY_TOKEN": TOKEN}

    def test_bearer_required(self):
        n = notification()
        before = self.rows()
        cases = [
            ("missing", {}),
            ("wrong token", {"Authorization": "Bearer nope"}),
            ("token prefix", {"Authorization": "Bearer " + TOKEN[:-1]}),
            ("token plus a byte", {"Authorization": "Bearer " + TOKEN + "x"}),
            ("Basic scheme", {"Authorization": "Basic " + TOKEN}),
            ("bare token", {"Authorization": TOKEN}),
            ("empty", {"Authorization": ""}),
        ]
        for what, headers in cases:
            with self.subTest(what):
                st, h, data = self.post(n, headers)
                self.assertEqual(st, 401, what)
                self.assertTrue(h.get("www-authenticate", "").startswith("Bearer"), h)
                doc = json.loads(data)
                self.assertIsNone(doc["field"])
                self.assertTrue(doc["error"])
        self.assertEqual(self.rows(), before, "an unauthorized request wrote a row")
        st, _, data = self.post(n, {"Authorization": "Bearer " + TOKEN})
        self.assertEqual(st, 201, data)
        st, _, _ = self.post(n, {"Authorization": "bearer " + TOKEN})
        self.assertEqual(st, 200, "the scheme name is case-insensitive")
        self.assertEqual(self.rows(), before + 1)
        # probes stay open to the orchestrator
        self.assertEqual(self.svc.request("GET", "/healthz")[0], 200)
        self.assertEqual(self.svc.request("GET", "/readyz")[0], 200)


@unittest.skipUnless(have("mailer-spy"), "mailer-spy not built")
class SpyGroupCommit(SpyCase):
    """One committer (SPY_COMMITTERS=1): what queued behind a commit goes
    in the next one, all of it."""
    spy_env = {"SPY_THREADS": "2", "SPY_COMMITTERS": "1"}

    def behind_one_commit(self, bodies):
        """Posts bodies while a first notification's commit is held by a
        table lock, so that they all queue for the next batch; lets go and
        returns (every answer, commits made since the first was blocked)."""
        lock = TableLock(self.dbs.micro)
        try:
            posts = Posts(self.svc).start([notification(payrollId=1, shipTo="blocker")])
            lock.wait_blocked()
            base = metrics(self.svc)
            posts.start(bodies)
            wait_for(lambda: metrics(self.svc).get("group_commit_pending" + MICRO, 0)
                     >= len(bodies) + 1, 30,
                     what=f"{len(bodies) + 1} notifications waiting for the commit")
        finally:
            lock.release()
        res = posts.join()
        self.assertTrue(all(r[3] is None for r in res), [r[3] for r in res])
        key = "group_commit_batch_rows_count" + MICRO
        return res, metrics(self.svc)[key] - base[key]

    def test_repeats_inside_one_commit(self):
        """Twelve requests with one id land in the same batch: one 201, eleven
        200 with that record, one row."""
        cid = str(uuid.uuid4())
        same = [notification(correlationId=cid, payrollId=100 + i, shipTo=f"Twin {i}", total=i)
                for i in range(12)]
        res, commits = self.behind_one_commit(same)
        mine = [r for r in res if r[0]["correlationId"] == cid]
        statuses = sorted(r[1] for r in mine)
        self.assertEqual(statuses, [200] * 11 + [201], statuses)
        answers = {r[2] for r in mine}
        self.assertEqual(len(answers), 1, "every answer must carry the same (first) record")
        row = spied(self.dbs.micro, cid)
        self.assertEqual(json.loads(answers.pop())["body"], row[3])
        self.assertEqual(count(self.dbs.micro, "spied_mail", f"correlation_id = '{cid}'"), 1)
        # the blocked batch (1 item), then one for all twelve
        self.assertEqual(commits, 2, "the twelve were not written in one commit")

    def test_a_stored_id_among_new_ones_in_one_commit(self):
        """Twenty new ids and one already stored land in one batch: its fast
        INSERT meets the stored id, and the batch is written again, each
        new row once (201 with its own record, queued for the reconciler)
        and the stored one answered 200 with its first record."""
        old = notification(payrollId=50, shipTo="Stored Before", total=5)
        st, _, first = self.post(old)
        self.assertEqual(st, 201, first)
        new = [notification(payrollId=600 + i, shipTo=f"New {i}", total=i) for i in range(20)]
        res, commits = self.behind_one_commit(new + [dict(old, shipTo="Someone Else", total=6)])
        by_id = {r[0]["correlationId"]: r for r in res}
        self.assertEqual(by_id[old["correlationId"]][1:3], (200, first))
        for n in new:
            _, st, data, _ = by_id[n["correlationId"]]
            self.assertEqual(st, 201, data)
            self.assertEqual(json.loads(data)["body"], spied(self.dbs.micro, n["correlationId"])[3])
        ids = [n["correlationId"] for n in new] + [old["correlationId"]]
        mine = "correlation_id in (%s)" % ", ".join(f"'{i}'" for i in ids)
        self.assertEqual(count(self.dbs.micro, "spied_mail", mine), 21)
        self.assertEqual(count(self.dbs.micro, "reconcile_queue", mine), 21)
        self.assertEqual(commits, 2, "the twenty-one were not written in one commit")

    def test_an_id_queued_without_its_row_is_stored(self):
        """reconcile_queue already names an id spied_mail has not got (an
        operator's insert): the notification is still stored and queued."""
        n = notification(payrollId=51, shipTo="Queued Alone", total=5)
        harness.query(self.dbs.micro, "insert into reconcile_queue values (%s)",
                      (n["correlationId"],))
        st, _, data = self.post(n)
        self.assertEqual(st, 201, data)
        self.assertEqual(spied(self.dbs.micro, n["correlationId"])[0], 51)
        self.assertEqual(count(self.dbs.micro, "reconcile_queue",
                               f"correlation_id = '{n['correlationId']}'"), 1)

    def test_waiting_requests_share_one_commit_and_hold_no_thread(self):
        rows0 = self.rows()
        lock = TableLock(self.dbs.micro)
        try:
            posts = Posts(self.svc).start([notification(shipTo="first one")])
            lock.wait_blocked()
            base = metrics(self.svc)
            posts.start([notification(payrollId=i, shipTo=f"Queued {i}") for i in range(1, 61)])
            wait_for(lambda: metrics(self.svc).get("group_commit_pending" + MICRO, 0) >= 61, 60,
                     what="61 notifications waiting for a commit")
            # 61 requests wait on 2 server threads: the server still answers
            self.assertEqual(self.svc.request("GET", "/healthz", timeout=10)[0], 200)
            self.assertEqual(self.rows(), rows0, "rows visible before the commit")
        finally:
            lock.release()
        res = posts.join()
        self.assertEqual(sorted(r[1] for r in res), [201] * 61, [r[3] for r in res if r[3]])
        self.assertEqual(self.rows() - rows0, 61)
        for body, st, data, _ in res:
            self.assertEqual(json.loads(data)["body"], spied(self.dbs.micro, body["correlationId"])[3])
        m = metrics(self.svc)
        commits = m["group_commit_batch_rows_count" + MICRO] - base["group_commit_batch_rows_count" + MICRO]
        items = m["group_commit_batch_rows_sum" + MICRO] - base["group_commit_batch_rows_sum" + MICRO]
        note(locked_rows=int(items), locked_commits=int(commits))
        self.assertEqual(items, 61)
        # the blocked one alone, then the 60 queued behind it in one
        self.assertEqual(commits, 2, "the 60 queued behind the blocked commit took more than one")

    def test_concurrent_load_fewer_commits_than_rows(self):
        base = metrics(self.svc)
        rows0 = self.rows()
        posts = Posts(self.svc, timeout=60)
        bodies = [notification(payrollId=i + 1, shipTo=f"Load {i}", total=i) for i in range(400)]
        chunks = [bodies[i::16] for i in range(16)]

        def worker(chunk):
            for b in chunk:
                posts.one(b)

        threads = [threading.Thread(target=worker, args=(c,), daemon=True) for c in chunks]
        for t in threads:
            t.start()
        for t in threads:
            t.join(180)
        self.assertFalse(any(t.is_alive() for t in threads), "requests hung")
        self.assertEqual(sorted(r[1] for r in posts.results), [201] * 400,
                         [r[3] for r in posts.results if r[3]][:3])
        self.assertEqual(self.rows() - rows0, 400)
        m = metrics(self.svc)
        commits = m["group_commit_batch_rows_count" + MICRO] - base["group_commit_batch_rows_count" + MICRO]
        items = m["group_commit_batch_rows_sum" + MICRO] - base["group_commit_batch_rows_sum" + MICRO]
        note(concurrent_rows=int(items), commits=int(commits),
             rows_per_commit=round(items / commits, 2) if commits else None)
        self.assertEqual(items, 400)
        self.assertLess(commits, items, "16 concurrent clients never shared a commit")


def waiting_on_locks(url):
    """Backends of this database waiting for a lock: committers' transactions
    in flight, held up by the test."""
    return harness.query(url, "select count(*) from pg_stat_activity where datname = "
                              "current_database() and wait_event_type = 'Lock'")[0][0]


@unittest.skipUnless(have("mailer-spy"), "mailer-spy not built")
class SpyCommitters(SpyCase):
    """SPY_COMMITTERS=3: three transactions in flight at once, each on its
    own connection, never more; the same correlation id in two of them at
    once still gives one 201 and the first record to the others."""
    K = 3
    spy_env = {"SPY_COMMITTERS": str(K)}

    def test_k_transactions_in_flight_never_more(self):
        rows0 = self.rows()
        base = metrics(self.svc)
        self.assertEqual(base["group_commit_committers" + MICRO], self.K)
        lock = TableLock(self.dbs.micro)
        try:
            posts = Posts(self.svc)
            # one at a time, so that each lands on an idle committer
            for i in range(self.K):
                posts.start([notification(payrollId=i + 1, shipTo=f"Blocked {i}")])
                wait_for(lambda: waiting_on_locks(self.dbs.micro) >= i + 1, 30,
                         what=f"{i + 1} committers' transactions waiting")
            self.assertEqual(metrics(self.svc)["group_commit_busy_committers" + MICRO], self.K)
            posts.start([notification(payrollId=100 + i, shipTo=f"Queued {i}") for i in range(30)])
            wait_for(lambda: metrics(self.svc).get("group_commit_pending" + MICRO, 0)
                     >= self.K + 30, 60, what=f"{self.K + 30} notifications waiting")
            # every committer busy: the thirty wait in the queue, no fourth transaction
            self.assertEqual(waiting_on_locks(self.dbs.micro), self.K)
            self.assertEqual(self.rows(), rows0, "rows visible before the commits")
        finally:
            lock.release()
        res = posts.join()
        self.assertEqual(sorted(r[1] for r in res), [201] * (self.K + 30),
                         [r[3] for r in res if r[3]])
        self.assertEqual(self.rows() - rows0, self.K + 30)
        for body, st, data, _ in res:
            self.assertEqual(json.loads(data)["body"],
                             spied(self.dbs.micro, body["correlationId"])[3])
        m = metrics(self.svc)
        commits = m["group_commit_batch_rows_count" + MICRO] - base["group_commit_batch_rows_count" + MICRO]
        # one for each blocked one, then one for the thirty queued
        self.assertEqual(commits, self.K + 1)
        self.assertEqual(m["group_commit_busy_committers" + MICRO], 0)

    def test_a_blocked_commit_holds_no_other(self):
        """A transaction of the test inserts id X and does not commit: the
        committer writing a notification for X waits for it, the others go on.
        Once the test commits, X is answered 200 with the test's record."""
        held = str(uuid.uuid4())
        conn = psycopg2.connect(self.dbs.micro)
        try:
            with conn.cursor() as cur:
                cur.execute("insert into spied_mail (correlation_id, payroll_id, destination, "
                            "subject, body) values (%s, 77, 'held@example.com', "
                            "'Payroll 77 shipped', 'held body')", (held,))
            posts = Posts(self.svc).start([notification(correlationId=held, payrollId=78,
                                                        shipTo="Second Writer")])
            wait_for(lambda: waiting_on_locks(self.dbs.micro) >= 1, 30,
                     what="the committer waiting for the test's transaction")
            for i in range(5):
                n = notification(payrollId=200 + i, shipTo=f"Other {i}")
                st, _, data = self.post(n)
                self.assertEqual(st, 201, data)
                self.assertIsNotNone(spied(self.dbs.micro, n["correlationId"]))
            self.assertEqual(waiting_on_locks(self.dbs.micro), 1)
            conn.commit()
        finally:
            conn.close()
        (body, st, data, err), = posts.join()
        self.assertIsNone(err)
        self.assertEqual(st, 200, data)
        self.assertEqual(json.loads(data), {"correlationId": held,
                                            "destination": "held@example.com",
                                            "subject": "Payroll 77 shipped",
                                            "body": "held body"})
        self.assertEqual(count(self.dbs.micro, "spied_mail", f"correlation_id = '{held}'"), 1)

    def test_repeats_in_transactions_in_flight_at_once(self):
        """Twelve requests with one id spread over the three committers'
        transactions, all blocked, then let go together: one 201, eleven
        200 with that record, one row."""
        lock = TableLock(self.dbs.micro)
        cid = str(uuid.uuid4())
        try:
            posts = Posts(self.svc)
            same = [notification(correlationId=cid, payrollId=300 + i, shipTo=f"Twin {i}",
                                 total=i) for i in range(12)]
            for i in range(self.K):
                posts.start([same[i]])
                wait_for(lambda: waiting_on_locks(self.dbs.micro) >= i + 1, 30,
                         what=f"{i + 1} transactions with the same id waiting")
            posts.start(same[self.K:])
            wait_for(lambda: metrics(self.svc).get("group_commit_pending" + MICRO, 0) >= 12, 30,
                     what="the twelve waiting")
        finally:
            lock.release()
        res = posts.join()
        self.assertTrue(all(r[3] is None for r in res), [r[3] for r in res])
        statuses = sorted(r[1] for r in res)
        self.assertEqual(statuses, [200] * 11 + [201], statuses)
        answers = {r[2] for r in res}
        self.assertEqual(len(answers), 1, "every answer must carry the same (first) record")
        self.assertEqual(json.loads(answers.pop())["body"], spied(self.dbs.micro, cid)[3])
        self.assertEqual(count(self.dbs.micro, "spied_mail", f"correlation_id = '{cid}'"), 1)

    def test_shared_ids_under_concurrent_load(self):
        """25 ids, 8 requests each, shuffled, from 24 clients: concurrent
        batches share ids in every order. Exactly one 201 per id, every other
        answer 200 with the same bytes, nothing else (a deadlock between two
        batches would be a 500), one row per id."""
        import random
        ids = [str(uuid.uuid4()) for _ in range(25)]
        bodies = [notification(correlationId=c, payrollId=400 + k, shipTo=f"Shared {k} {j}",
                               total=j) for k, c in enumerate(ids) for j in range(8)]
        random.Random(7).shuffle(bodies)
        posts = Posts(self.svc, timeout=60)

        def worker(chunk):
            for b in chunk:
                posts.one(b)

        threads = [threading.Thread(target=worker, args=(bodies[i::24],), daemon=True)
                   for i in range(24)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(180)
        self.assertFalse(any(t.is_alive() for t in threads), "requests hung")
        by_id = {}
        for body, st, data, err in posts.results:
            self.assertIsNone(err)
            by_id.setdefault(body["correlationId"], []).append((st, data))
        self.assertEqual(set(by_id), set(ids))
        for cid, answers in by_id.items():
            self.assertEqual(sorted(st for st, _ in answers), [200] * 7 + [201], cid)
            self.assertEqual(len({data for _, data in answers}), 1, cid)
            self.assertEqual(json.loads(answers[0][1])["body"], spied(self.dbs.micro, cid)[3])
        for cid in ids:
            self.assertEqual(count(self.dbs.micro, "spied_mail", f"correlation_id = '{cid}'"), 1)


@unittest.skipUnless(have("mailer-spy"), "mailer-spy not built")
class SpyStoreDown(unittest.TestCase):
    runs_alone = True   # restarts postgresMicro: tests/run runs it by itself

    def test_unreachable_store(self):
        """A store that never answers: 503 + Retry-After, /readyz 503, alive."""
        url = f"postgresql://postgres@127.0.0.1:{harness.free_port()}/micro"
        with Service("mailer-spy", env={"MICRO_DATABASE_URL": url},
                     log_name="spy-unreachable") as svc:
            for _ in range(3):
                st, h, data = svc.request("POST", "/notifications", notification())
                self.assertEqual(st, 503, data)
                self.assertEqual(h.get("retry-after"), "1")
                self.assertTrue(json.loads(data)["error"])
            st, h, data = svc.request("GET", "/readyz")
            self.assertEqual(st, 503)
            self.assertEqual(h.get("retry-after"), "1")
            self.assertIn("postgresMicro", json.loads(data)["error"])
            self.assertEqual(svc.request("GET", "/healthz")[0], 200)
            m = metrics(svc)
            self.assertEqual(m['spy_notifications_total{outcome="unavailable"}'], 3)
            self.assertIsNone(svc.proc.poll())

    def test_connection_killed_between_requests(self):
        """The committer's connection is cut while idle (a failover, a
        pg_terminate_backend): the next notification is written on a fresh
        connection, not refused."""
        dbs = ScratchDbs()
        self.addCleanup(dbs.close)
        svc = Service("mailer-spy", env={"MICRO_DATABASE_URL": dbs.micro},
                      log_name="spy-killed-conn").start()
        self.addCleanup(svc.stop)
        for i in range(3):
            self.assertEqual(svc.request("POST", "/notifications",
                                         notification(shipTo=f"Before {i}"))[0], 201)
            killed = harness.query(dbs.micro, "select count(pg_terminate_backend(pid)) "
                                   "from pg_stat_activity where datname = current_database() "
                                   "and pid <> pg_backend_pid()")[0][0]
            self.assertGreaterEqual(killed, 1, "the spy holds no connection to kill")
            n = notification(shipTo=f"After Kill {i}")
            st, _, data = svc.request("POST", "/notifications", n)
            self.assertEqual(st, 201, data)
            self.assertIsNotNone(spied(dbs.micro, n["correlationId"]))
        self.assertEqual(count(dbs.micro, "spied_mail"), 6)

    def test_postgres_micro_restart(self):
        """Stopped: 503 + Retry-After and /readyz 503. Started again: once
        /readyz says 200 the next notification is written, same process."""
        dbs = ScratchDbs()
        self.addCleanup(dbs.close)
        self.addCleanup(lambda: pg_is_up(harness.MICRO_URL) or pg_start("micro"))
        svc = Service("mailer-spy", env={"MICRO_DATABASE_URL": dbs.micro},
                      log_name="spy-restart").start()
        self.addCleanup(svc.stop)
        ok = notification(shipTo="Before Stop")
        self.assertEqual(svc.request("POST", "/notifications", ok)[0], 201)
        pg_stop("micro")
        try:
            # Notifications keep coming for a while, so the spy's reconnect
            # backoff grows to its longest before the server is back.
            down = []
            until = time.time() + 8
            while time.time() < until:
                n = notification(shipTo=f"While Down {len(down)}")
                st, h, data = svc.request("POST", "/notifications", n, timeout=30)
                self.assertEqual(st, 503, data)
                self.assertEqual(h.get("retry-after"), "1")
                self.assertTrue(json.loads(data)["error"])
                down.append(n)
                time.sleep(0.05)
            note(answered_503_while_down=len(down))
            st, h, _ = svc.request("GET", "/readyz", timeout=30)
            self.assertEqual((st, h.get("retry-after")), (503, "1"))
            self.assertEqual(svc.request("GET", "/healthz")[0], 200)
        finally:
            pg_start("micro")
        wait_for(lambda: svc.request("GET", "/readyz", timeout=30)[0] == 200, 60, interval=0.2,
                 what="/readyz 200 after the restart")
        after = notification(shipTo="After Start")
        st, _, data = svc.request("POST", "/notifications", after, timeout=30)
        self.assertEqual(st, 201, f"ready, yet the next notification was not written: {data!r}")
        # what got a 503 was not written; sent again, it is
        for n in down:
            self.assertIsNone(spied(dbs.micro, n["correlationId"]))
        st, _, data = svc.request("POST", "/notifications", down[0], timeout=30)
        self.assertEqual(st, 201, data)
        self.assertEqual(count(dbs.micro, "spied_mail"), 3)
        self.assertIsNone(svc.proc.poll(), "the spy had to be restarted")
        self.assertIsNotNone(spied(dbs.micro, after["correlationId"]))


@unittest.skipUnless(have("mailer-spy"), "mailer-spy not built")
class SpyDrain(unittest.TestCase):
    def setUp(self):
        self.dbs = ScratchDbs()
        self.addCleanup(self.dbs.close)
        self.svc = Service("mailer-spy", env={"MICRO_DATABASE_URL": self.dbs.micro},
                           log_name=f"spy-{self._testMethodName}").start()
        self.addCleanup(self.svc.log.close)
        self.addCleanup(self.svc.stop)

    def check_rows(self, results):
        created = [r for r in results if r[1] == 201]
        for body, st, data, _ in created:
            row = spied(self.dbs.micro, body["correlationId"])
            self.assertIsNotNone(row, f"201 for {body['correlationId']} but no row")
            self.assertEqual(json.loads(data)["body"], row[3])
        return created

    def test_sigterm_with_requests_waiting_for_a_commit(self):
        lock = TableLock(self.dbs.micro)
        try:
            posts = Posts(self.svc).start([notification(shipTo="Blocked")])
            lock.wait_blocked()
            posts.start([notification(payrollId=i, shipTo=f"In Flight {i}") for i in range(1, 31)])
            wait_for(lambda: metrics(self.svc).get("group_commit_pending" + MICRO, 0) >= 31, 60,
                     what="31 notifications waiting")
            self.svc.proc.send_signal(signal.SIGTERM)
            # no new connections once draining has begun
            def refused():
                try:
                    harness.request(self.svc.port, "GET", "/healthz", timeout=5)
                    return False
                except OSError:
                    return True
            wait_for(refused, 10, what="the listening socket closed")
            self.assertIsNone(self.svc.proc.poll(), "exited before its requests were answered")
        finally:
            lock.release()
        res = posts.join()
        self.assertEqual(sorted(r[1] for r in res), [201] * 31, [r[3] for r in res if r[3]])
        self.assertEqual(self.svc.proc.wait(30), 0)
        self.assertEqual(len(self.check_rows(res)), 31)
        self.assertEqual(count(self.dbs.micro, "spied_mail"), 31)

    def test_sigterm_under_concurrent_load(self):
        posts = Posts(self.svc, timeout=30)
        stop = threading.Event()

        def worker(k):
            i = 0
            while not stop.is_set():
                i += 1
                _, st, _, err = posts.one(notification(payrollId=k * 100000 + i,
                                                       shipTo=f"Drain {k} {i}"))
                if err is not None:
                    return  # the server went away: this client is done

        threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(12)]
        for t in threads:
            t.start()
        wait_for(lambda: len(posts.results) >= 150, 120, what="150 answers under load")
        self.svc.proc.send_signal(signal.SIGTERM)
        rc = self.svc.proc.wait(60)
        stop.set()
        for t in threads:
            t.join(60)
        self.assertFalse(any(t.is_alive() for t in threads), "a client is still waiting")
        self.assertEqual(rc, 0)
        hung = [r for r in posts.results if isinstance(r[3], TimeoutError)]
        self.assertEqual(hung, [], "requests hung")
        statuses = {}
        for r in posts.results:
            k = r[1] if r[1] is not None else type(r[3]).__name__
            statuses[k] = statuses.get(k, 0) + 1
        # A request read after draining began is refused (503, nothing
        # stored); every 201 has its row.
        self.assertLessEqual({k for k in statuses if isinstance(k, int)}, {201, 503}, statuses)
        self.assertIn(201, statuses)
        for body, st, _, _ in posts.results:
            if st == 503:
                self.assertIsNone(spied(self.dbs.micro, body["correlationId"]),
                                  "a refused notification was stored")
        created = self.check_rows(posts.results)
        rows = count(self.dbs.micro, "spied_mail")
        self.assertGreaterEqual(rows, len(created))
        note(drain_answers=statuses, rows=rows, created=len(created))


@unittest.skipUnless(have("mailer-spy"), "mailer-spy not built")
class SpyConfig(unittest.TestCase):
    """Bad configuration stops the start (exit 2) naming what is wrong;
    --help lists every variable, and docs/SPY.md documents each one."""

    def run_spy(self, env, *args):
        e = dict(os.environ, PORT=str(harness.free_port()))
        e.pop("MICRO_DATABASE_URL", None)
        e.update(env)
        return subprocess.run([os.path.join(harness.BIN_DIR, "mailer-spy")] + list(args),
                              env=e, capture_output=True, text=True, timeout=30)

    def test_help_lists_what_the_docs_describe(self):
        p = self.run_spy({}, "--help")
        self.assertEqual(p.returncode, 0)
        names = re.findall(r"\[([A-Z_]+)\]", p.stdout + p.stderr)
        self.assertIn("SPY_TOKEN", names)
        with open(os.path.join(harness.TOP, "docs", "SPY.md"), encoding="utf-8") as f:
            doc = f.read()
        missing = [n for n in names if f"`{n}`" not in doc]
        self.assertEqual(missing, [], "variables in --help that docs/SPY.md does not describe")

    def test_bad_values_stop_the_start(self):
        url = harness.MICRO_URL
        bad = [
            ({}, "MICRO_DATABASE_URL"),
            ({"MICRO_DATABASE_URL": url, "SPY_THREADS": "0"}, "SPY_THREADS"),
            ({"MICRO_DATABASE_URL": url, "SPY_COMMITTERS": "0"}, "SPY_COMMITTERS"),
            ({"MICRO_DATABASE_URL": url, "SPY_COMMITTERS": "many"}, "SPY_COMMITTERS"),
            ({"MICRO_DATABASE_URL": url, "PORT": "70000"}, "PORT"),
            ({"MICRO_DATABASE_URL": url, "SPY_MODE": "shadow"}, "SPY_MODE"),
            ({"MICRO_DATABASE_URL": url, "MAX_BODY": "12abc"}, "MAX_BODY"),
            ({"MICRO_DATABASE_URL": url, "MAIL_DOMAIN": "bad domain"}, "MAIL_DOMAIN"),
            ({"MICRO_DATABASE_URL": url, "SPY_TEMPLATE": "/nonexistent/template.txt"},
             "SPY_TEMPLATE"),
        ]
        for env, name in bad:
            with self.subTest(name):
                p = self.run_spy(env)
                self.assertEqual(p.returncode, 2, p.stderr)
                self.assertIn(name, p.stderr)
        with tempfile.NamedTemporaryFile("w", suffix=".txt") as t:
            t.write("Hello {name},\n")
            t.flush()
            p = self.run_spy({"MICRO_DATABASE_URL": url, "SPY_TEMPLATE": t.name})
            self.assertEqual(p.returncode, 2)
            self.assertIn("unknown placeholder", p.stderr)

    def test_template_file_renders(self):
        """SPY_TEMPLATE replaces the body, with CRLF line ends and literal braces."""
        dbs = ScratchDbs()
        self.addCleanup(dbs.close)
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as t:
            t.write("Hi {shipTo} <{destination}>,\n{{ref {id}}}: {total}\n")
        self.addCleanup(os.unlink, t.name)
        with Service("mailer-spy", env={"MICRO_DATABASE_URL": dbs.micro, "SPY_TEMPLATE": t.name},
                     log_name="spy-template") as svc:
            n = notification(payrollId=9, shipTo="Zoë", total=12.3)
            st, _, data = svc.request("POST", "/notifications", n)
            self.assertEqual(st, 201, data)
            doc = json.loads(data)
            self.assertEqual(doc["body"], "Hi Zoë <zoe@example.com>,\r\n{ref 9}: 12.30\r\n")
            self.assertEqual(doc["subject"], "Payroll 9 shipped")
            self.assertEqual(spied(dbs.micro, n["correlationId"])[3], doc["body"])


if __name__ == "__main__":
    unittest.main()
