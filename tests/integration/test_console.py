"""Clusters and the console (issue 16), against the dev environment's two
real PostgreSQL clusters with rows written straight in:

- Clusters: one template change in many payrolls is one cluster, different
  changes are different clusters; every report opens with them; `mismatches
  --cluster`, `ack --cluster` (one transaction, rows consumed), `rule
  --cluster` (a rule that really ignores the cluster in the next run and
  nothing else); counts follow late resolutions; a run killed before
  clustering is caught up by the next.
- ConsoleHTTP: `reconciler serve` over real HTTP on loopback: the JSON API
  (shapes, keyset pages), bad input (unknown cluster, bad cursor, oversized
  note, not JSON, wrong token) answered with the error JSON and changing
  nothing, the token (bearer for the API, login form and cookie for
  pages, every address only with a token), CSRF on the ack form,
  escaping (a body and a note holding <script>), /metrics.
- Browser: headless Chromium (selenium) opens the overview, follows a
  cluster, acknowledges it and sees its open count drop; screenshots
  under build/. Skipped (not passed) when chromium or its driver is not
  installed.
"""
import csv
import http.client
import io
import json
import os
import re
import shutil
import socket
import tempfile
import unittest
import urllib.parse
import uuid

from harness import LOG_DIR, MICRO_URL, MONO_URL, TOP, Service, free_port, wait_for
from reconciler_util import bulk, insert, q, reset, run


def body(name, pid, total, variant="legacy"):
    greet = "Hi" if variant == "hi" else "Hello"
    amount = ("$" if variant == "dollar" else "") + f"{total:.2f}"
    if variant == "onedec":
        amount = f"{total:.1f}"
    return f"{greet} {name},\r\n\r\nPayroll {pid} shipped to {name} of {amount}.\r\n"


PEOPLE = [("Juablaz", 320), ("Ann", 15.5), ("Juan Blaz", 1999.99), ("Zoë", 7),
          ("bob@corp.example.org", 1234567.5)]


def dest(name):
    return name if "@" in name else name.lower().replace(" ", ".") + "@example.com"


class Seeder:
    def seed(self, variants, start=0, micro_missing=False):
        """One pair per (person, variant); returns {variant: [cid, ...]}."""
        out = {}
        for i, (name, total) in enumerate(PEOPLE):
            for v in variants:
                pid = start + i * 10 + len(out.get(v, []))
                cid = str(uuid.uuid4())
                subj = f"Payroll {pid} shipped"
                insert(MONO_URL, "sent_mail", [(cid, dest(name), subj, body(name, pid, total))],
                       self.pid)
                if v != "missing":
                    insert(MICRO_URL, "spied_mail",
                           [(cid, dest(name), subj, body(name, pid, total, v))], self.pid)
                out.setdefault(v, []).append(cid)
        return out


def clusters_of(rep):
    """{cluster id: set of correlation ids} from a JSON report."""
    out = {}
    for m in rep["mismatches"]:
        out.setdefault(m["cluster_id"], set()).add(m["correlation_id"])
    return out


class Clusters(Seeder, unittest.TestCase):
    def setUp(self):
        self.pid = reset()

    def test_one_cluster_per_change_and_reports_open_with_them(self):
        s = self.seed(["hi", "dollar", "onedec", "legacy", "missing"])
        rc, out, err = run("run", "--grace", "0", "--format", "json")
        self.assertEqual(rc, 1, err)
        rep = json.loads(out)
        groups = clusters_of(rep)
        # Each change is exactly one cluster, whoever the payroll is for.
        self.assertEqual(sorted(map(sorted, groups.values())),
                         sorted(sorted(s[v]) for v in ("hi", "dollar", "onedec", "missing")))
        by_id = {c["id"]: c for c in rep["clusters"]}
        self.assertEqual(set(by_id), set(groups))
        for cid, members in groups.items():
            c = by_id[cid]
            self.assertEqual((c["count"], c["open"], c["inRun"]), (5, 5, 5))
            self.assertIn(c["example"], members)
            self.assertTrue(c["firstSeen"] <= c["lastSeen"])
            self.assertEqual(set(c), {"id", "kind", "fields", "count", "open", "example",
                                      "firstSeen", "lastSeen", "signature", "inRun"})
        kinds = sorted((c["kind"], c["fields"]) for c in rep["clusters"])
        self.assertEqual(kinds, [("content", ["body"])] * 3 + [("missing_in_micro", [])])

        # text and html open with the clusters, csv names each record's.
        rc, text, err = run("report", "--format", "text")
        self.assertEqual(rc, 0, err)
        head = text.split("\nmismatch ")[0]
        for cid in groups:
            self.assertIn(f"cluster {cid} ", head)
        rc, html, err = run("report", "--format", "html")
        self.assertLess(html.index("<h2>Clusters</h2>"), html.index("<section"))
        rc, out, err = run("report", "--format", "csv")
        rows = list(csv.DictReader(io.StringIO(out, newline="")))
        self.assertEqual(len(rows), 20)
        self.assertEqual({r["correlation_id"]: int(r["cluster_id"]) for r in rows},
                         {m: c for c, ms in groups.items() for m in ms})

    def test_dry_run_report_opens_with_its_clusters(self):
        s = self.seed(["hi", "dollar"])
        rc, out, err = run("run", "--dry-run", "--grace", "0", "--format", "json")
        self.assertEqual(rc, 1, err)
        rep = json.loads(out)
        self.assertEqual(sorted((c["id"], c["count"], c["inRun"]) for c in rep["clusters"]),
                         [(None, 5, 5), (None, 5, 5)])
        examples = {c["example"] for c in rep["clusters"]}
        self.assertEqual(len(examples & set(s["hi"])), 1)
        self.assertEqual(len(examples & set(s["dollar"])), 1)
        self.assertEqual(q(MONO_URL, "select count(*) from reconciliation_cluster")[0][0], 0)

    def test_mismatches_of_a_cluster(self):
        s = self.seed(["hi", "dollar"])
        rc, out, err = run("run", "--grace", "0", "--format", "json")
        groups = clusters_of(json.loads(out))
        hi = next(c for c, ms in groups.items() if ms == set(s["hi"]))
        rc, out, err = run("mismatches", "--cluster", str(hi), "--format", "json")
        self.assertEqual(rc, 0, err)
        rep = json.loads(out)
        self.assertEqual({m["correlation_id"] for m in rep["mismatches"]}, set(s["hi"]))
        self.assertEqual([c["id"] for c in rep["clusters"]], [hi])
        rc, out, err = run("mismatches", "--cluster", "999999")
        self.assertEqual(rc, 2)
        self.assertIn("cluster 999999 does not exist", err)
        for bad in ("0", "x", "-1"):
            rc, out, err = run("mismatches", "--cluster", bad)
            self.assertEqual(rc, 2, bad)

    def test_ack_cluster_one_transaction_consumes_rows(self):
        s = self.seed(["hi", "dollar"])
        rc, out, err = run("run", "--grace", "0", "--format", "json")
        groups = clusters_of(json.loads(out))
        hi = next(c for c, ms in groups.items() if ms == set(s["hi"]))
        before = q(MONO_URL, "select id, resolved_at from reconciliation_mismatch order by id")

        # Refused, changing nothing: no note, empty note, unknown cluster,
        # and an id together with --cluster.
        for args in (["ack", "--cluster", str(hi)], ["ack", "--cluster", str(hi), "--note", ""],
                     ["ack", "--cluster", "999999", "--note", "x"],
                     ["ack", "1", "--cluster", str(hi), "--note", "x"]):
            rc, out, err = run(*args)
            self.assertEqual(rc, 2, args)
        self.assertEqual(q(MONO_URL, "select id, resolved_at from reconciliation_mismatch"
                                     " order by id"), before)

        rc, out, err = run("ack", "--cluster", str(hi), "--note", "greeting: template v2")
        self.assertEqual(rc, 0, err)
        self.assertIn("5 mismatches acknowledged", out)
        rows = q(MONO_URL, "select correlation_id::text, resolution, note, resolved_at"
                           " from reconciliation_mismatch where cluster_id = %s", (hi,))
        self.assertEqual({r[0] for r in rows}, set(s["hi"]))
        self.assertTrue(all(r[1:3] == ("ack", "greeting: template v2") for r in rows))
        # One transaction: one now() for every member.
        self.assertEqual(len({r[3] for r in rows}), 1)
        for url, table in ((MONO_URL, "sent_mail"), (MICRO_URL, "spied_mail")):
            got = {r[0] for r in q(url, f"select correlation_id::text from {table}"
                                        " where consumed_at is not null")}
            self.assertEqual(got, set(s["hi"]), table)
        # The other cluster is untouched; counts follow.
        rc, out, err = run("clusters", "--all", "--format", "json")
        counts = {c["id"]: (c["count"], c["open"]) for c in json.loads(out)["clusters"]}
        self.assertEqual(counts[hi], (5, 0))
        self.assertEqual(sorted(counts.values()), [(5, 0), (5, 5)])
        rc, out, err = run("clusters", "--format", "json")
        self.assertNotIn(hi, [c["id"] for c in json.loads(out)["clusters"]])
        # Again: nothing open is left.
        rc, out, err = run("ack", "--cluster", str(hi), "--note", "again")
        self.assertEqual(rc, 2)
        self.assertIn("no open mismatch", err)
        # A later run does not report them again.
        rc, out, err = run("run", "--grace", "0", "--format", "json")
        self.assertEqual(rc, 0, err)

    def test_rule_ignores_its_cluster_in_the_next_run_only(self):
        s = self.seed(["hi", "dollar"])
        rc, out, err = run("run", "--grace", "0", "--format", "json")
        groups = clusters_of(json.loads(out))
        hi = next(c for c, ms in groups.items() if ms == set(s["hi"]))
        rc, rule, err = run("rule", "--cluster", str(hi))
        self.assertEqual(rc, 0, err)
        self.assertIn(f"[cluster-{hi}-body-1]", rule)
        self.assertNotIn("WARNING", rule)
        # Printed, never applied: nothing changed.
        self.assertEqual(q(MONO_URL, "select count(*) from reconciliation_mismatch"
                                     " where resolved_at is null")[0][0], 10)
        with tempfile.NamedTemporaryFile("w", suffix=".rules", delete=False) as f:
            f.write(rule)
        try:
            new = self.seed(["hi", "dollar"], start=1000)
            rc, out, err = run("run", "--grace", "0", "--rules", f.name, "--format", "json")
            self.assertEqual(rc, 1, err)
            rep = json.loads(out)
            self.assertEqual(rep["run"]["counts"]["ignored"], 5)
            self.assertEqual({m["correlation_id"] for m in rep["mismatches"]},
                             set(new["dollar"]))
        finally:
            os.unlink(f.name)
        # A missing mail has no rule.
        rc, out, err = run("run", "--grace", "0")
        self.seed(["missing"], start=2000)
        rc, out, err = run("run", "--grace", "0", "--format", "json")
        missing = json.loads(out)["mismatches"][0]["cluster_id"]
        rc, out, err = run("rule", "--cluster", str(missing))
        self.assertEqual(rc, 2)
        self.assertIn("missing", err)
        rc, out, err = run("rule", "--cluster", "999999")
        self.assertEqual(rc, 2)

    def test_late_partner_lowers_open_count(self):
        s = self.seed(["missing"])
        rc, out, err = run("run", "--grace", "0", "--format", "json")
        cl = json.loads(out)["clusters"][0]
        self.assertEqual((cl["count"], cl["open"]), (5, 5))
        late = s["missing"][0]
        row = q(MONO_URL, "select destination, subject, body from sent_mail"
                          " where correlation_id = %s", (late,))[0]
        insert(MICRO_URL, "spied_mail", [(late,) + tuple(row)], self.pid)
        rc, out, err = run("run", "--grace", "0", "--format", "json")
        self.assertEqual(json.loads(out)["run"]["counts"]["late"], 1)
        rc, out, err = run("clusters", "--format", "json")
        c = next(c for c in json.loads(out)["clusters"] if c["id"] == cl["id"])
        self.assertEqual((c["count"], c["open"]), (5, 4))

    def test_mismatches_left_without_cluster_are_caught_up(self):
        """A run killed between its marks and its clustering step leaves
        mismatches without a cluster: the next run clusters them."""
        s = self.seed(["hi", "dollar"])
        run("run", "--grace", "0")
        q(MONO_URL, "update reconciliation_mismatch set cluster_id = null")
        q(MONO_URL, "delete from reconciliation_cluster")
        rc, out, err = run("run", "--grace", "0", "--format", "json")
        self.assertEqual(rc, 0, err)
        rc, out, err = run("mismatches", "--format", "json")
        rep = json.loads(out)
        self.assertEqual(sorted(map(sorted, clusters_of(rep).values())),
                         sorted([sorted(s["hi"]), sorted(s["dollar"])]))
        self.assertEqual(sorted((c["count"], c["open"]) for c in rep["clusters"]),
                         [(5, 5), (5, 5)])


def console(token=None):
    port = free_port()
    env = {"MONO_DATABASE_URL": MONO_URL, "MICRO_DATABASE_URL": MICRO_URL,
           "RECONCILER_WEB_PORT": str(port)}
    if token:
        env["RECONCILER_WEB_TOKEN"] = token
    return Service("reconciler", env=env, args=["serve"], port=port,
                   log_name="reconciler-serve")


def mismatch_state():
    return q(MONO_URL, "select id, resolved_at, resolution, note, cluster_id"
                       " from reconciliation_mismatch order by id")


class ConsoleHTTP(Seeder, unittest.TestCase):
    def setUp(self):
        self.pid = reset()
        self.s = self.seed(["hi", "dollar"])
        rc, out, err = run("run", "--grace", "0", "--format", "json")
        self.assertEqual(rc, 1, err)
        groups = clusters_of(json.loads(out))
        self.hi = next(c for c, ms in groups.items() if ms == set(self.s["hi"]))
        self.dollar = next(c for c, ms in groups.items() if ms == set(self.s["dollar"]))
        self.srv = console().start()

    def tearDown(self):
        self.srv.stop()

    def get_json(self, path, status=200, headers=None):
        st, h, body = self.srv.request("GET", path, headers=headers)
        self.assertEqual(st, status, body)
        self.assertTrue(h["content-type"].startswith("application/json"))
        return json.loads(body)

    def test_api_clusters_runs_mismatches(self):
        doc = self.get_json("/api/clusters")
        got = {c["id"]: c for c in doc["clusters"]}
        self.assertEqual(set(got), {self.hi, self.dollar})
        c = got[self.hi]
        self.assertEqual({k: c[k] for k in ("kind", "fields", "count", "open")},
                         {"kind": "content", "fields": ["body"], "count": 5, "open": 5})
        self.assertIn(c["example"], self.s["hi"])
        self.assertRegex(c["firstSeen"], r"^\d{4}-\d\d-\d\dT[\d:.]+Z$")
        runs = self.get_json("/api/runs")["runs"]
        self.assertEqual(len(runs), 1)
        self.assertEqual((runs[0]["mismatched"], runs[0]["exit"], runs[0]["status"]),
                         (10, 1, "done"))
        doc = self.get_json(f"/api/mismatches?cluster={self.hi}&open=1")
        self.assertEqual({m["correlationId"] for m in doc["mismatches"]}, set(self.s["hi"]))
        self.assertIsNone(doc["next"])
        self.assertTrue(all(m["cluster"] == self.hi for m in doc["mismatches"]))

    def test_keyset_pages_cover_every_member_once(self):
        reset()
        bulk(MONO_URL, "sent_mail", self.pid, 120)
        bulk(MICRO_URL, "spied_mail", self.pid, 120,
             body_sql="'Hi ' || i || E',\\r\\n\\r\\nPayroll ' || i || ' shipped.\\r\\n'")
        rc, out, err = run("run", "--grace", "0", "--format", "json")
        self.assertEqual(rc, 1, err)
        cl = json.loads(out)["clusters"]
        self.assertEqual([c["count"] for c in cl], [120])
        seen, after, pages = [], None, 0
        while True:
            path = f"/api/mismatches?cluster={cl[0]['id']}&open=1"
            doc = self.get_json(path + (f"&after={after}" if after else ""))
            seen += [m["id"] for m in doc["mismatches"]]
            pages += 1
            after = doc["next"]
            if after is None:
                break
        self.assertEqual(len(seen), 120)
        self.assertEqual(len(set(seen)), 120)
        self.assertEqual(seen, sorted(seen))
        self.assertGreater(pages, 2)

    def test_bad_input_gets_error_json_and_changes_nothing(self):
        before = mismatch_state()
        long_note = "x" * 1001
        cases = [
            ("GET", "/api/mismatches?cluster=999999", None, None, 404, "cluster"),
            ("GET", "/api/mismatches?cluster=abc", None, None, 400, "cluster"),
            ("GET", "/api/mismatches?after=zzz", None, None, 400, "after"),
            ("GET", "/api/mismatches?after=-5", None, None, 400, "after"),
            ("GET", "/api/mismatches?open=yes", None, None, 400, "open"),
            ("GET", "/api/runs?after=1e3", None, None, 400, "after"),
            ("POST", "/api/clusters/999999/ack", {"note": "x"}, None, 404, "id"),
            ("POST", f"/api/clusters/{self.hi}/ack", {"note": long_note}, None, 400, "note"),
            ("POST", f"/api/clusters/{self.hi}/ack", {"note": ""}, None, 400, "note"),
            ("POST", f"/api/clusters/{self.hi}/ack", {"note": 5}, None, 400, "note"),
            ("POST", f"/api/clusters/{self.hi}/ack", {"note": "x", "by": "me"}, None, 400,
             "note"),
            ("POST", f"/api/clusters/{self.hi}/ack", "{\"note\": ",
             {"Content-Type": "application/json"}, 400, None),
            ("POST", f"/api/clusters/{self.hi}/ack", "note=x",
             {"Content-Type": "application/x-www-form-urlencoded"}, 415, None),
            ("POST", f"/api/clusters/{self.hi}/nack", {"note": "x"}, None, 404, None),
            ("DELETE", "/api/clusters", None, None, 405, None),
        ]
        for method, path, body, headers, status, field in cases:
            st, h, data = self.srv.request(method, path, body, headers=headers)
            self.assertEqual(st, status, (method, path, data))
            doc = json.loads(data)
            self.assertIsInstance(doc["error"], str)
            self.assertEqual(doc["field"], field, (method, path, doc))
        # Bigger than the body limit: refused whole.
        st, h, data = self.srv.request("POST", f"/api/clusters/{self.hi}/ack",
                                       {"note": "y" * 70000})
        self.assertEqual(st, 413)
        self.assertEqual(mismatch_state(), before)

    def test_ack_api_acknowledges_every_open_member_once(self):
        st, h, data = self.srv.request("POST", f"/api/clusters/{self.hi}/ack",
                                       {"note": "greeting changed on purpose"})
        self.assertEqual(st, 200, data)
        self.assertEqual(json.loads(data), {"cluster": self.hi, "acknowledged": 5})
        got = {c["id"]: c["open"] for c in self.get_json("/api/clusters?all=1")["clusters"]}
        self.assertEqual(got, {self.hi: 0, self.dollar: 5})
        self.assertEqual({r[0] for r in q(MICRO_URL, "select correlation_id::text from"
                                                     " spied_mail where consumed_at is not null")},
                         set(self.s["hi"]))
        before = mismatch_state()
        st, h, data = self.srv.request("POST", f"/api/clusters/{self.hi}/ack", {"note": "x"})
        self.assertEqual(st, 409)
        self.assertEqual(json.loads(data)["field"], "id")
        self.assertEqual(mismatch_state(), before)

    def test_loopback_only_without_token(self):
        s = socket.socket()
        s.settimeout(2)
        try:
            with self.assertRaises(OSError):
                s.connect(("127.0.0.2", self.srv.port))
        finally:
            s.close()

    def test_csrf_on_the_ack_form(self):
        st, h, page = self.srv.request("GET", f"/clusters/{self.hi}")
        self.assertEqual(st, 200)
        page = page.decode()
        token = re.search(r'name="csrf" value="([0-9a-f]+)"', page).group(1)
        before = mismatch_state()
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        for body in ("note=n", "note=n&csrf=", "note=n&csrf=" + "0" * len(token),
                     "note=n&csrf=" + token[:-1]):
            st, h, data = self.srv.request("POST", f"/clusters/{self.hi}/ack", body, form)
            self.assertEqual(st, 403, body)
        self.assertEqual(mismatch_state(), before)
        body = urllib.parse.urlencode({"note": "ok <b>by</b> me", "csrf": token})
        st, h, data = self.srv.request("POST", f"/clusters/{self.hi}/ack", body, form)
        self.assertEqual(st, 303, data)
        self.assertEqual(h["location"], f"/clusters/{self.hi}")
        st, h, page = self.srv.request("GET", f"/clusters/{self.hi}?all=1")
        page = page.decode()
        self.assertIn('<span id="open">0</span>', page)
        self.assertIn("ok &lt;b&gt;by&lt;/b&gt; me", page)

    def test_escaping_of_bodies_and_notes(self):
        reset()
        evil = "<script>alert('x')</script>"
        cid = str(uuid.uuid4())
        insert(MONO_URL, "sent_mail", [(cid, "ann@example.com", "Payroll 1 shipped",
                                        "Hello Ann,\r\n" + evil + "\r\n")], self.pid)
        insert(MICRO_URL, "spied_mail", [(cid, "ann@example.com", "Payroll 1 shipped",
                                          "Hi Ann,\r\n" + evil + "\r\n")], self.pid)
        rc, out, err = run("run", "--grace", "0", "--format", "json")
        cl = json.loads(out)["clusters"][0]["id"]
        st, h, data = self.srv.request("POST", f"/api/clusters/{cl}/ack",
                                       {"note": "</textarea><script>x()</script>"})
        self.assertEqual(st, 200, data)
        for path in ("/", f"/clusters/{cl}?all=1", "/runs/latest"):
            st, h, page = self.srv.request("GET", path)
            self.assertEqual(st, 200, path)
            page = page.decode()
            self.assertNotIn("<script", page.lower(), path)
            self.assertIn("default-src 'none'", h["content-security-policy"])
        st, h, page = self.srv.request("GET", f"/clusters/{cl}?all=1")
        self.assertIn("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;", page.decode())
        self.assertIn("&lt;/textarea&gt;&lt;script&gt;x()", page.decode())

    def test_pages_and_metrics(self):
        st, h, page = self.srv.request("GET", "/")
        page = page.decode()
        self.assertEqual(st, 200)
        self.assertIn("<svg", page)
        for c in (self.hi, self.dollar):
            self.assertIn(f'href="/clusters/{c}"', page)
        self.assertIn("exit <span class=\"bad\">1</span>", page)
        st, h, page = self.srv.request("GET", "/runs/latest")
        self.assertEqual(st, 200)
        self.assertIn("<h2>Clusters</h2>", page.decode())
        for path in ("/runs/999999", "/runs/x", "/clusters/999999", "/clusters/0",
                     "/nowhere"):
            st, h, data = self.srv.request("GET", path)
            self.assertEqual(st, 404, path)
        st, h, data = self.srv.request("GET", "/metrics")
        text = data.decode()
        metrics = {m.group(1): float(m.group(2)) for m in
                   re.finditer(r"^(reconciler_\S+) (\S+)$", text, re.M)}
        self.assertEqual(metrics['reconciler_open_mismatches{kind="content"}'], 10)
        self.assertEqual(metrics['reconciler_open_mismatches{kind="missing_in_mono"}'], 0)
        self.assertEqual(metrics["reconciler_last_run_exit_code"], 1)
        self.assertRegex(text, r"reconciler_last_run_end_timestamp_seconds \d")
        self.assertRegex(text, r"reconciler_last_run_duration_seconds \d")


class ConsoleToken(Seeder, unittest.TestCase):
    TOKEN = "s3cret-console-token"

    def setUp(self):
        self.pid = reset()
        self.seed(["hi"])
        run("run", "--grace", "0")
        self.srv = console(self.TOKEN).start()

    def tearDown(self):
        self.srv.stop()

    def test_api_needs_the_bearer_token(self):
        for headers in ({}, {"Authorization": "Bearer wrong"},
                        {"Authorization": "Bearer " + self.TOKEN + "x"},
                        {"Authorization": "Basic " + self.TOKEN}):
            st, h, data = self.srv.request("GET", "/api/clusters", headers=headers)
            self.assertEqual(st, 401, headers)
            self.assertIn("Bearer", h["www-authenticate"])
            self.assertIn("error", json.loads(data))
        before = mismatch_state()
        cl = q(MONO_URL, "select id from reconciliation_cluster")[0][0]
        st, h, data = self.srv.request("POST", f"/api/clusters/{cl}/ack", {"note": "x"},
                                       {"Authorization": "Bearer nope"})
        self.assertEqual(st, 401)
        self.assertEqual(mismatch_state(), before)
        st, h, data = self.srv.request("GET", "/api/clusters",
                                       headers={"Authorization": "Bearer " + self.TOKEN})
        self.assertEqual(st, 200)
        self.assertEqual(len(json.loads(data)["clusters"]), 1)
        # Health and metrics stay open for probes and Prometheus.
        self.assertEqual(self.srv.request("GET", "/healthz")[0], 200)
        self.assertEqual(self.srv.request("GET", "/metrics")[0], 200)

    def test_pages_need_a_login_cookie(self):
        st, h, data = self.srv.request("GET", "/")
        self.assertEqual((st, h["location"]), (303, "/login"))
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        st, h, data = self.srv.request("POST", "/login", "token=wrong", form)
        self.assertEqual(st, 401)
        self.assertNotIn("set-cookie", h)
        st, h, data = self.srv.request("POST", "/login",
                                       urllib.parse.urlencode({"token": self.TOKEN}), form)
        self.assertEqual(st, 303)
        cookie = h["set-cookie"]
        self.assertIn("HttpOnly", cookie)
        self.assertIn("SameSite=Strict", cookie)
        session = cookie.split(";")[0]
        st, h, page = self.srv.request("GET", "/", headers={"Cookie": session})
        self.assertEqual(st, 200)
        self.assertIn("<svg", page.decode())
        st, h, page = self.srv.request("GET", "/", headers={"Cookie": session + "0"})
        self.assertEqual(st, 303)

    def test_listens_on_every_address_with_a_token(self):
        c = http.client.HTTPConnection("127.0.0.2", self.srv.port, timeout=5)
        try:
            c.request("GET", "/healthz")
            self.assertEqual(c.getresponse().status, 200)
        finally:
            c.close()


def browser_missing():
    """Why the browser test cannot run here, or None."""
    if not shutil.which("chromium"):
        return "chromium is not installed (scripts/install-deps)"
    if not shutil.which("chromedriver"):
        return "chromium-driver is not installed (scripts/install-deps)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "python3-selenium is not installed (scripts/install-deps)"
    return None


SHOTS = os.path.join(TOP, "build", "screenshots")


@unittest.skipIf(browser_missing(), browser_missing() or "")
class Browser(Seeder, unittest.TestCase):
    def setUp(self):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service as ChromeService
        self.pid = reset()
        self.s = self.seed(["hi", "dollar"])
        rc, out, err = run("run", "--grace", "0", "--format", "json")
        self.assertEqual(rc, 1, err)
        groups = clusters_of(json.loads(out))
        self.hi = next(c for c, ms in groups.items() if ms == set(self.s["hi"]))
        self.srv = console().start()
        opts = webdriver.ChromeOptions()
        for a in ("--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking", "--disable-dev-shm-usage",
                  "--window-size=1280,1400"):
            opts.add_argument(a)
        self.driver = webdriver.Chrome(
            service=ChromeService(shutil.which("chromedriver"),
                                  log_output=os.path.join(LOG_DIR, "chromedriver.log")),
            options=opts)
        os.makedirs(SHOTS, exist_ok=True)

    def tearDown(self):
        self.driver.quit()
        self.srv.stop()

    def shot(self, name):
        self.driver.save_screenshot(os.path.join(SHOTS, name + ".png"))

    def test_overview_follow_cluster_ack_open_count_drops(self):
        from selenium.webdriver.common.by import By
        d = self.driver
        base = f"http://127.0.0.1:{self.srv.port}"
        d.get(base + "/")
        self.assertIn("Parallel Run", d.find_element(By.TAG_NAME, "h1").text)
        self.assertEqual(len(d.find_elements(By.TAG_NAME, "svg")), 1)
        row = d.find_element(By.XPATH, f"//a[@href='/clusters/{self.hi}']/ancestor::tr")
        self.assertEqual(row.find_element(By.CLASS_NAME, "open").text, "5")
        self.shot("overview")
        d.find_element(By.LINK_TEXT, f"cluster {self.hi}").click()
        wait_for(lambda: d.current_url.endswith(f"/clusters/{self.hi}"), what="cluster page")
        self.assertEqual(d.find_element(By.ID, "open").text, "5")
        self.assertEqual(len(d.find_elements(By.CSS_SELECTOR, "#members tr")), 6)
        # The example's side-by-side diff marks the changed words.
        marks = [m.text for m in d.find_elements(By.CSS_SELECTOR, "table.diff mark")]
        self.assertTrue(any("Hello" in m or "ello" in m for m in marks), marks)
        self.shot("cluster")
        d.find_element(By.ID, "note").send_keys("greeting changed in template v2")
        d.find_element(By.ID, "ack").click()
        wait_for(lambda: d.find_elements(By.ID, "open") and
                 d.find_element(By.ID, "open").text == "0", what="open count 0")
        self.shot("cluster-acked")
        d.get(base + "/")
        self.assertEqual(d.find_elements(By.XPATH, f"//a[@href='/clusters/{self.hi}']"), [])
        self.shot("overview-after-ack")
        self.assertEqual(q(MONO_URL, "select count(*) from reconciliation_mismatch where"
                                     " cluster_id = %s and resolution = 'ack'", (self.hi,))[0][0],
                         5)


if __name__ == "__main__":
    unittest.main()
