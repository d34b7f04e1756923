"""Hostile requests against both services.

mailer-real (NOTIFIER=parallel) and mailer-spy (with SPY_TOKEN) run on
scratch databases with an SMTP server of their own. Every hostile request
below must get a clear 4xx (a few protocol-level ones may get the 5xx that
names them, e.g. 505), change nothing (payroll, sent_mail and spied_mail row
counts unchanged, no mail sent) and leave the service serving: a good
request succeeds right after each one.

Covered: malformed and deeply nested JSON, huge and non-finite numbers,
header injection (CR/LF, U+2028, several recipients, encoded words) through
every field that reaches a mail header, SQL metacharacters in fields, query
strings and paths, CR/LF in values that reach the logs, oversized headers,
URLs and bodies, wrong or missing bearer tokens, path traversal, request
smuggling (Content-Length vs Transfer-Encoding), a slowloris trickle and
2000 idle connections at once; money whose text has more than two
decimals although a double reads it as fewer (issue 14; test_security.py
has the rest of that issue's attacks).
"""
import json
import os
import resource
import socket
import time
import unittest
import uuid

import harness
from fault_tools import Ledger, Stack, count, have, raw_http

TOKEN = "s3cret-token-0123456789abcdef"
FAKE = "2026-01-01T00:00:00Z INFO FAKE-LOG-LINE"


def req(method, path, body=b"", headers=None, ctype="application/json", length=True):
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
    elif isinstance(body, str):
        body = body.encode()
    h = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    if ctype:
        h.append(f"Content-Type: {ctype}")
    if length and body is not None:
        h.append(f"Content-Length: {len(body)}")
    for k, v in (headers or {}).items():
        h.append(f"{k}: {v}")
    return ("\r\n".join(h) + "\r\n\r\n").encode("latin-1") + (body or b"")


def payroll(**kw):
    d = {"shipTo": "Juablaz", "total": 320}
    d.update(kw)
    return d


def note(ship_to="Juablaz", **kw):
    d = {"correlationId": str(uuid.uuid4()), "payrollId": 7, "shipTo": ship_to, "total": 320.00}
    d.update(kw)
    return d


AUTH = {"Authorization": f"Bearer {TOKEN}"}
C4 = range(400, 500)


def raw_json(prefix, value_json, suffix="}"):
    """A body with a literal JSON text spliced in (numbers json.dumps can't write)."""
    return (prefix + value_json + suffix).encode()


def cases():
    """(name, service, request bytes, acceptable statuses)."""
    R, S = "real", "spy"
    deep_arr = "[" * 20000 + "]" * 20000
    deep_obj = '{"a":' * 10000 + "1" + "}" * 10000
    out = [
        # --- malformed JSON and structure
        ("truncated JSON", R, req("POST", "/payroll", '{"shipTo":'), {400}),
        ("empty body", R, req("POST", "/payroll", b""), {400}),
        ("top-level array", R, req("POST", "/payroll", [payroll()]), {400}),
        ("deep array nesting (20000)", R, req("POST", "/payroll", deep_arr), {400}),
        ("deep object nesting (10000)", R, req("POST", "/payroll", deep_obj), {400}),
        ("deep nesting in shipTo", R, req("POST", "/payroll", raw_json('{"total":1,"shipTo":', deep_arr)), {400}),
        ("unknown field", R, req("POST", "/payroll", payroll(admin=True)), {400}),
        ("duplicate key", R, req("POST", "/payroll", '{"shipTo":"a","shipTo":"b","total":1}'), {400}),
        ("invalid UTF-8", R, req("POST", "/payroll", b'{"shipTo":"a\xff\xfe","total":1}'), {400}),
        ("overlong UTF-8 slash", R, req("POST", "/payroll", b'{"shipTo":"a\xc0\xafb","total":1}'), {400}),
        ("NUL in shipTo", R, req("POST", "/payroll", '{"shipTo":"ab\\u0000cd","total":1}'), {400}),
        ("shipTo 60000 chars", R, req("POST", "/payroll", payroll(shipTo="a" * 60000)), {400}),
        ("shipTo empty", R, req("POST", "/payroll", payroll(shipTo="")), {400}),
        ("shipTo blank", R, req("POST", "/payroll", payroll(shipTo="   ")), {400}),
        ("shipTo a number", R, req("POST", "/payroll", payroll(shipTo=12)), {400}),
        # --- numbers
        ("total 1e400", R, req("POST", "/payroll", raw_json('{"shipTo":"a","total":', "1e400")), {400}),
        ("total -1e400", R, req("POST", "/payroll", raw_json('{"shipTo":"a","total":', "-1e400")), {400}),
        ("total 30-digit integer", R, req("POST", "/payroll", raw_json('{"shipTo":"a","total":', "123456789012345678901234567890")), {400}),
        ("total above 1e9", R, req("POST", "/payroll", payroll(total=1000000000.01)), {400}),
        ("total 2^63", R, req("POST", "/payroll", raw_json('{"shipTo":"a","total":', "9223372036854775808")), {400}),
        ("total three decimals", R, req("POST", "/payroll", payroll(total=0.001)), {400}),
        ("total negative", R, req("POST", "/payroll", payroll(total=-0.01)), {400}),
        ("total NaN", R, req("POST", "/payroll", raw_json('{"shipTo":"a","total":', "NaN")), {400}),
        ("total Infinity", R, req("POST", "/payroll", raw_json('{"shipTo":"a","total":', "Infinity")), {400}),
        ("total a string", R, req("POST", "/payroll", payroll(total="320")), {400}),
        ("total null", R, req("POST", "/payroll", payroll(total=None)), {400}),
        ("total true", R, req("POST", "/payroll", payroll(total=True)), {400}),
        # issue 14: money from the number's text, not through a double
        ("total 320.0000000000000001", R, req("POST", "/payroll", raw_json('{"shipTo":"a","total":', "320.0000000000000001")), {400}),
        ("total 0.30000000000000001", R, req("POST", "/payroll", raw_json('{"shipTo":"a","total":', "0.30000000000000001")), {400}),
        ("total 999999999.999999999", R, req("POST", "/payroll", raw_json('{"shipTo":"a","total":', "999999999.999999999")), {400}),
        ("total 1e-3", R, req("POST", "/payroll", raw_json('{"shipTo":"a","total":', "1e-3")), {400}),
        ("total 1000000000.000000001", R, req("POST", "/payroll", raw_json('{"shipTo":"a","total":', "1000000000.000000001")), {400}),
        ("total escaped key 0.30000000000000001", R, req("POST", "/payroll", raw_json('{"shipTo":"a","tot\\u0061l":', "0.30000000000000001")), {400}),
        ("total -0", R, req("POST", "/payroll", raw_json('{"shipTo":"a","total":', "-0")), {400}),
        # --- header injection: destination (To:, RCPT TO)
        ("shipTo CRLF Bcc", R, req("POST", "/payroll", payroll(shipTo="Juablaz\r\nBcc: victim@evil.test")), {400}),
        ("shipTo address CRLF Bcc", R, req("POST", "/payroll", payroll(shipTo="a@example.com\r\nBcc: victim@evil.test")), {400}),
        ("shipTo LF only", R, req("POST", "/payroll", payroll(shipTo="a@example.com\nBcc: victim@evil.test")), {400}),
        ("shipTo CR only", R, req("POST", "/payroll", payroll(shipTo="a@example.com\rBcc: victim@evil.test")), {400}),
        ("shipTo SMTP command", R, req("POST", "/payroll", payroll(shipTo="a@example.com>\r\nRCPT TO:<victim@evil.test")), {400}),
        ("shipTo U+2028", R, req("POST", "/payroll", payroll(shipTo="a\u2028Bcc: victim@evil.test")), {400}),
        ("shipTo two recipients", R, req("POST", "/payroll", payroll(shipTo="a@example.com, victim@evil.test")), {400}),
        ("shipTo angle address", R, req("POST", "/payroll", payroll(shipTo="Eve <victim@evil.test>")), {400}),
        ("shipTo encoded word", R, req("POST", "/payroll", payroll(shipTo="=?utf-8?q?a=0D=0ABcc:_victim@evil.test?=")), {400}),
        ("shipTo two @", R, req("POST", "/payroll", payroll(shipTo="a@b@evil.test")), {400}),
        ("shipTo domain literal", R, req("POST", "/payroll", payroll(shipTo="a@[127.0.0.1]")), {400}),
        ("shipTo quoted local part", R, req("POST", "/payroll", payroll(shipTo='"a\\"b"@example.com')), {400}),
        # --- SQL metacharacters
        ("SQL in shipTo", R, req("POST", "/payroll", payroll(shipTo="Robert'); DROP TABLE payroll;--")), {400}),
        ("SQL in shipTo 2", R, req("POST", "/payroll", payroll(shipTo='x"; DELETE FROM sent_mail; --')), {400}),
        ("SQL in limit", R, req("GET", "/payroll?limit=1;DROP%20TABLE%20payroll", None, ctype=None), {400}),
        ("SQL in after", R, req("GET", "/payroll?after=1%27%20OR%20%271%27=%271", None, ctype=None), {400}),
        ("SQL in id", R, req("GET", "/payroll/1%27%20OR%20%271%27=%271", None, ctype=None), {400, 404}),
        ("limit negative", R, req("GET", "/payroll?limit=-1", None, ctype=None), {400}),
        ("limit huge", R, req("GET", "/payroll?limit=99999999999999999999999", None, ctype=None), {400}),
        ("id huge", R, req("GET", "/payroll/99999999999999999999999", None, ctype=None), {400, 404}),
        # --- CR/LF into logs
        ("log injection in shipTo", R, req("POST", "/payroll", payroll(shipTo="x\n" + FAKE)), {400}),
        ("log injection in path", R, req("GET", "/payroll/x%0d%0a" + FAKE.replace(" ", "%20"), None, ctype=None), {400, 404}),
        ("log injection in key", R, req("POST", "/payroll/%0a" + FAKE.replace(" ", "%20"), payroll()), {400, 404, 405}),
        ("log injection in X-Request-Id, folded", R,
         req("POST", "/payroll", b"{", headers={"X-Request-Id": "abc\r\n " + FAKE}), {400}),
        ("X-Request-Id of 8 KB", R, req("POST", "/payroll", b"{", headers={"X-Request-Id": "r" * 8192}), {400}),
        ("X-Request-Id with a NUL", R, req("POST", "/payroll", b"{", headers={"X-Request-Id": "a\x00b"}), set(C4)),
        # --- media type and sizes
        ("text/plain body", R, req("POST", "/payroll", payroll(), ctype="text/plain"), {415}),
        ("no content type", R, req("POST", "/payroll", payroll(), ctype=None), {415}),
        ("body over 64 KiB", R, req("POST", "/payroll", payroll(shipTo="a" * 70000)), {413}),
        ("Content-Length 100 MB", R, req("POST", "/payroll", b"", headers={"Content-Length": "100000000"}, length=False), {413}),
        ("header of 100 KB", R, req("POST", "/payroll", payroll(), headers={"X-Big": "a" * 100000}), set(C4)),
        ("10000 headers", R, req("POST", "/payroll", payroll(), headers={f"X-H{i}": "v" for i in range(10000)}), set(C4)),
        ("URL of 100 KB", R, req("GET", "/payroll/" + "a" * 100000, None, ctype=None), set(C4)),
        ("Idempotency-Key of 10 KB", R, req("POST", "/payroll", payroll(), headers={"Idempotency-Key": "k" * 10000}), {400}),
        ("Idempotency-Key control chars", R, req("POST", "/payroll", payroll(), headers={"Idempotency-Key": "k\x01\x02"}), {400}),
        # --- paths and methods
        ("path traversal", R, req("GET", "/../../../../etc/passwd", None, ctype=None), {400, 404}),
        ("encoded traversal", R, req("GET", "/payroll/..%2f..%2f..%2fetc%2fpasswd", None, ctype=None), {400, 404}),
        ("dot-dot encoded", R, req("GET", "/%2e%2e/%2e%2e/etc/passwd", None, ctype=None), {400, 404}),
        ("double dot slash", R, req("GET", "/payroll/....//....//etc/passwd", None, ctype=None), {400, 404}),
        ("NUL in path", R, req("GET", "/payroll/%00", None, ctype=None), {400, 404}),
        ("absolute URI", R, req("GET", "http://evil.test/etc/passwd", None, ctype=None), {400, 404}),
        ("DELETE", R, req("DELETE", "/payroll", None, ctype=None), {405}),
        ("unknown method", R, req("FOO", "/payroll", None, ctype=None), {400, 405, 501}),
        # --- request smuggling
        ("CL and TE chunked", R,
         b"POST /payroll HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
         b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
         + req("POST", "/payroll", payroll(shipTo="smuggled")), {400}),
        ("TE chunked carrying a payroll, CL 0", R,
         b"POST /payroll HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
         b"Content-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n"
         + b"%x\r\n%s\r\n0\r\n\r\n" % (len(json.dumps(payroll(shipTo="smuggled"))), json.dumps(payroll(shipTo="smuggled")).encode()),
         {400}),
        ("two different Content-Length", R,
         b"POST /payroll HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
         b"Content-Length: 6\r\nContent-Length: 40\r\n\r\n" + json.dumps(payroll()).encode(), {400}),
        ("Content-Length +40", R,
         b"POST /payroll HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
         b"Content-Length: +40\r\n\r\n" + json.dumps(payroll()).encode(), {400}),
        ("Content-Length -1", R,
         b"POST /payroll HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
         b"Content-Length: -1\r\n\r\n" + json.dumps(payroll()).encode(), {400}),
        ("TE xchunked", R,
         b"POST /payroll HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
         b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", {400, 501}),
        ("TE chunked, identity", R,
         b"POST /payroll HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
         b"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n", {400, 501}),
        ("chunk size overflow", R,
         b"POST /payroll HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
         b"Transfer-Encoding: chunked\r\n\r\nfffffffffffffffffffff\r\nabc\r\n0\r\n\r\n", set(C4)),
        ("space before colon", R,
         b"POST /payroll HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
         b"Content-Length : 40\r\n\r\n" + json.dumps(payroll()).encode(), {400, 411}),
        ("HTTP/2 preface", R, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", set(C4) | {505}),
        ("HTTP/9.9", R, b"GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n", set(C4) | {505}),
        ("no Host in HTTP/1.1", R, b"GET /payroll/1 HTTP/1.1\r\nConnection: close\r\n\r\n", {400}),
        # --- mailer-spy: the bearer token
        ("no token", S, req("POST", "/notifications", note()), {401}),
        ("wrong token", S, req("POST", "/notifications", note(), headers={"Authorization": "Bearer wrong"}), {401}),
        ("token prefix", S, req("POST", "/notifications", note(), headers={"Authorization": "Bearer " + TOKEN[:-1]}), {401}),
        ("token plus a byte", S, req("POST", "/notifications", note(), headers={"Authorization": "Bearer " + TOKEN + "x"}), {401}),
        ("empty bearer", S, req("POST", "/notifications", note(), headers={"Authorization": "Bearer "}), {401}),
        ("basic scheme", S, req("POST", "/notifications", note(), headers={"Authorization": "Basic " + TOKEN}), {401}),
        ("token in query", S, req("POST", "/notifications?token=" + TOKEN, note()), {401}),
        # --- mailer-spy: fields that reach headers, SQL, numbers
        ("spy correlationId not a uuid", S, req("POST", "/notifications", note(correlationId="abc"), headers=AUTH), {400}),
        ("spy correlationId SQL", S, req("POST", "/notifications", note(correlationId="'; DROP TABLE spied_mail; --"), headers=AUTH), {400}),
        ("spy correlationId CRLF", S, req("POST", "/notifications", note(correlationId=str(uuid.uuid4()) + "\r\nBcc: victim@evil.test"), headers=AUTH), {400}),
        ("spy payrollId CRLF", S, req("POST", "/notifications", note(payrollId="3\r\nBcc: victim@evil.test"), headers=AUTH), {400}),
        ("spy payrollId negative", S, req("POST", "/notifications", note(payrollId=-1), headers=AUTH), {400}),
        ("spy payrollId 1e30", S, req("POST", "/notifications", raw_json('{"correlationId":"%s","shipTo":"a","total":1,"payrollId":' % uuid.uuid4(), "1e30"), headers=AUTH), {400}),
        ("spy payrollId fraction", S, req("POST", "/notifications", note(payrollId=1.5), headers=AUTH), {400}),
        ("spy shipTo CRLF Bcc", S, req("POST", "/notifications", note("a@example.com\r\nBcc: victim@evil.test"), headers=AUTH), {400}),
        ("spy shipTo two recipients", S, req("POST", "/notifications", note("a@example.com, victim@evil.test"), headers=AUTH), {400}),
        ("spy shipTo SQL", S, req("POST", "/notifications", note("Robert'); DROP TABLE spied_mail;--"), headers=AUTH), {400}),
        ("spy total 1e400", S, req("POST", "/notifications", raw_json('{"correlationId":"%s","payrollId":1,"shipTo":"a","total":' % uuid.uuid4(), "1e400"), headers=AUTH), {400}),
        ("spy total three decimals", S, req("POST", "/notifications", note(total=1.001), headers=AUTH), {400}),
        ("spy total 320.0000000000000001", S, req("POST", "/notifications", raw_json('{"correlationId":"%s","payrollId":1,"shipTo":"a","total":' % uuid.uuid4(), "320.0000000000000001"), headers=AUTH), {400}),
        ("spy total 0.30000000000000001", S, req("POST", "/notifications", raw_json('{"correlationId":"%s","payrollId":1,"shipTo":"a","total":' % uuid.uuid4(), "0.30000000000000001"), headers=AUTH), {400}),
        ("spy total 999999999.999999999", S, req("POST", "/notifications", raw_json('{"correlationId":"%s","payrollId":1,"shipTo":"a","total":' % uuid.uuid4(), "999999999.999999999"), headers=AUTH), {400}),
        ("spy deep nesting", S, req("POST", "/notifications", deep_arr, headers=AUTH), {400}),
        ("spy log injection", S, req("POST", "/notifications", note("x\n" + FAKE), headers=AUTH), {400}),
        ("spy log injection in X-Request-Id, folded", S,
         req("POST", "/notifications", b"{", headers=dict(AUTH, **{"X-Request-Id": "abc\r\n " + FAKE})), {400}),
        ("spy X-Request-Id of 8 KB", S, req("POST", "/notifications", b"{", headers=dict(AUTH, **{"X-Request-Id": "r" * 8192})), {400}),
        ("spy unknown field", S, req("POST", "/notifications", note(bcc="victim@evil.test"), headers=AUTH), {400}),
        ("spy missing field", S, req("POST", "/notifications", {"correlationId": str(uuid.uuid4())}, headers=AUTH), {400}),
        ("spy body over 64 KiB", S, req("POST", "/notifications", note("a" * 70000), headers=AUTH), {413}),
        ("spy text/plain", S, req("POST", "/notifications", note(), headers=AUTH, ctype="text/plain"), {415}),
        ("spy header of 100 KB", S, req("POST", "/notifications", note(), headers=dict(AUTH, **{"X-Big": "a" * 100000})), set(C4)),
        ("spy CL and TE", S,
         b"POST /notifications HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
         b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"
         b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", {400}),
        ("spy path traversal", S, req("GET", "/notifications/../../etc/passwd", None, ctype=None), {400, 401, 404}),
        ("spy GET notifications", S, req("GET", "/notifications", None, ctype=None, headers=AUTH), {405}),
    ]
    return out


@unittest.skipUnless(have("mailer-real"), "mailer-real not built")
class Hostile(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.st = Stack("hostile", spy_env={"SPY_TOKEN": TOKEN})
        try:
            cls.st.start()
        except Exception:
            cls.st.close()
            raise
        cls.sent = 0
        cls.good = 0

    @classmethod
    def tearDownClass(cls):
        cls.st.close()

    def counts(self):
        return (count(self.st.dbs.mono, "payroll"), count(self.st.dbs.mono, "sent_mail"),
                count(self.st.dbs.micro, "spied_mail"))

    def good_request(self, service):
        """A good request succeeds; returns the row counts once it settled."""
        before = self.counts()
        spied = 1 if self.st.spy else 0
        if service == "spy" and not self.st.spy:
            return before
        if service == "real":
            s, _, b = self.st.real.request("POST", "/payroll", {"shipTo": "Good Client", "total": 1.5})
            self.assertEqual(s, 201, b)
            harness.wait_for(lambda: self.counts() == (before[0] + 1, before[1] + 1, before[2] + spied),
                             20, what="the good payroll's rows (payroll, sent_mail, spied_mail)")
        else:
            s, _, b = self.st.spy.request("POST", "/notifications", note("good@example.com"),
                                          headers=AUTH)
            self.assertEqual(s, 201, b)
            self.assertEqual(self.counts(), (before[0], before[1], before[2] + 1))
        type(self).good += 1
        return self.counts()

    def test_hostile_requests(self):
        results = []
        self.good_request("real")
        for name, service, data, ok in cases():
            if service == "spy" and not self.st.spy:
                continue
            port = self.st.real.port if service == "real" else self.st.spy.port
            with self.subTest(case=name, service=service):
                base = self.counts()
                r = raw_http(port, data)
                type(self).sent += 1
                results.append((name, service, r.status))
                self.assertIn(r.status, ok, f"{name}: got {r.status}: {r.raw[:300]!r}")
                if r.status is not None and r.status in range(400, 500) and r.status != 401 \
                        and "content-type" in r.headers and "json" in r.headers["content-type"]:
                    j = r.json()
                    self.assertIsInstance(j, dict, f"{name}: error body is not JSON: {r.body[:200]!r}")
                    self.assertTrue(j.get("error"), f"{name}: error body has no message: {j}")
                self.assertNotIn(b"root:x:0:0", r.raw)
                self.assertNotIn("FAKE-LOG-LINE", r.headers.get("x-request-id", ""),
                                 f"{name}: a hostile request id echoed back")
                time.sleep(0.05)
                self.assertEqual(self.counts(), base, f"{name} changed row counts")
                self.good_request(service)
        self.assertGreaterEqual(len(results), 60)
        msgs = self.st.smtp.messages() if self.st.real.proc else []
        harness.wait_for(lambda: count(self.st.dbs.mono, "sent_mail", "status = 'pending'") == 0,
                         60, what="outbox drained")
        msgs = self.st.smtp.messages()
        for m in msgs:
            text = m.raw_bytes.decode("latin-1").lower()
            self.assertNotIn("evil.test", text, "a hostile address reached a message")
            self.assertNotIn("\nbcc:", text)
        for svc in filter(None, (self.st.real, self.st.spy)):
            for line in svc.log_text().splitlines():
                self.assertFalse(line.startswith(FAKE), f"{svc.name} log has an injected line: {line!r}")
        d = os.environ.get("TEST_LOG_DIR", harness.LOG_DIR)
        with open(os.path.join(d, "hostile.tsv"), "w") as f:
            f.write("service\tstatus\tcase\n")
            for name, service, status in results:
                f.write(f"{service}\t{status}\t{name}\n")
        led = Ledger(self, "hostile requests", self.st.dbs.mono)
        led.note(requests=len(results), real=sum(1 for r in results if r[1] == "real"),
                 spy=sum(1 for r in results if r[1] == "spy"),
                 all_rejected=sum(1 for r in results if r[2] and r[2] >= 400),
                 good_after=self.good, rows_changed_by_hostile=0, mails=len(msgs))
        led.record()

    def test_slowloris(self):
        """50 connections trickling their headers a byte at a time do not
        keep good clients of either service out."""
        socks = []
        try:
            for svc in filter(None, (self.st.real, self.st.spy)):
                for _ in range(25):
                    s = socket.create_connection(("127.0.0.1", svc.port), timeout=5)
                    s.sendall(b"POST /payroll HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                    socks.append(s)
            for i in range(6):
                for s in socks:
                    try:
                        s.sendall(b"a")
                    except OSError:
                        pass
                if i % 2 == 0:
                    self.good_request("real")
                    self.good_request("spy")
                time.sleep(0.3)
        finally:
            for s in socks:
                s.close()
        type(self).sent += len(socks)
        self.good_request("real")
        led = Ledger(self, "slowloris: 50 connections trickling headers", self.st.dbs.mono)
        led.note(connections=len(socks), good_requests_during="all 201")
        led.record()

    def test_two_thousand_connections(self):
        """2000 idle connections open at once (1000 on each service, from
        127.0.0.3: 127.0.0.1 has the dispatcher's connections too, and one
        address holds at most HTTP_PER_IP_LIMIT): good requests still
        succeed on both, while they are open and after."""
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < 2500 and hard >= 2500:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
        socks = []
        try:
            for svc in filter(None, (self.st.real, self.st.spy)):
                for _ in range(1000 if self.st.spy else 2000):
                    socks.append(socket.create_connection(("127.0.0.1", svc.port), timeout=5,
                                                          source_address=("127.0.0.3", 0)))
            self.good_request("real")
            self.good_request("spy")
            # half of them send a hostile request and go away
            for s in socks[::2]:
                s.sendall(b"POST /payroll HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n{\"a\":")
            self.good_request("real")
        finally:
            for s in socks:
                s.close()
        type(self).sent += len(socks)
        self.good_request("real")
        self.good_request("spy")
        led = Ledger(self, "2000 connections at once", self.st.dbs.mono)
        led.note(connections=len(socks), good_requests_during="all 201")
        led.record()


if __name__ == "__main__":
    unittest.main()
