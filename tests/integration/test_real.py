"""mailer-real, end to end: the payroll API and what reaches the mailbox.

Covers: the seed's curl command verbatim (201, Location, total 320.00, the
canonical mail byte for byte with CRLF and charset on a real SMTP server);
José Núñez arriving intact (8BITMIME); header-injection attempts refused
with nothing stored or sent; Idempotency-Key replay (same answer, one row,
one mail) and conflict (422), also with twelve clients racing on one key
(they may share a group commit: one payroll, one mail, one first answer);
validation errors; GET by id and keyset pages.
Real PostgreSQL (postgresMono of the dev env), real SMTP (aiosmtpd).
"""
import concurrent.futures
import json
import re
import socket
import subprocess
import time
import unittest

import harness
from harness import Service, query, wait_for, MONO_URL
from real_support import CaptureSMTP, split_message, reset_outbox, mono_env


def port_free(port):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


class RealApiTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        reset_outbox()
        cls.smtp = CaptureSMTP().start()
        # The seed's command names port 8080: use it when it is free here.
        port = 8080 if port_free(8080) else None
        cls.svc = Service("mailer-real", env=mono_env(cls.smtp.port), port=port,
                          log_name="mailer-real-api").start()

    @classmethod
    def tearDownClass(cls):
        cls.svc.stop()
        cls.smtp.stop()

    def post(self, body, headers=None):
        st, h, data = self.svc.request("POST", "/payroll", body, headers)
        return st, h, data

    def wait_mail(self, cid, n=1):
        return wait_for(lambda: len(self.smtp.by_message_id(cid)) >= n and
                        self.smtp.by_message_id(cid), what=f"mail {cid}")

    def test_seed_curl_and_canonical_mail(self):
        cmd = ["curl", "-v", "-H", "Content-Type: application/json", "-d",
               '{"shipTo":"Juablaz","total":320}',
               f"localhost:{self.svc.port}/payroll"]
        p = subprocess.run(cmd, capture_output=True, timeout=20)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(b"< HTTP/1.1 201", p.stderr)
        loc = re.search(rb"< Location: (/payroll/\d+)", p.stderr)
        self.assertIsNotNone(loc)
        self.assertIn(b'"total":320.00', p.stdout)
        doc = json.loads(p.stdout)
        self.assertEqual(loc.group(1).decode(), f"/payroll/{doc['id']}")
        self.assertEqual(doc["shipTo"], "Juablaz")
        n = doc["notification"]
        self.assertEqual(n["destination"], "juablaz@example.com")
        self.assertEqual(n["status"], "pending")
        self.assertRegex(n["correlationId"], r"^[0-9a-f-]{36}$")

        msgs = self.wait_mail(n["correlationId"])
        self.assertEqual(len(msgs), 1)
        m = msgs[0]
        self.assertEqual(m["rcpt_tos"], ["juablaz@example.com"])
        self.assertEqual(m["mail_from"], "payroll@example.com")
        headers, body = split_message(m["raw"])
        self.assertEqual(headers["subject"], f"Payroll {doc['id']} shipped")
        self.assertEqual(headers["to"], "<juablaz@example.com>")
        self.assertEqual(headers["message-id"], f"<{n['correlationId']}@example.com>")
        self.assertEqual(headers["content-type"], "text/plain; charset=utf-8")
        self.assertEqual(body, f"Hello Juablaz,\r\n\r\nPayroll {doc['id']} shipped "
                               f"to Juablaz of 320.00.\r\n".encode())
        # every line of the whole message ends CRLF
        self.assertNotRegex(m["raw"], rb"[^\r]\n")

        rows = query(MONO_URL, "select destination, subject, body, status from sent_mail "
                               "where correlation_id = %s", (n["correlationId"],))
        self.assertEqual(rows[0][:3], ("juablaz@example.com", f"Payroll {doc['id']} shipped",
                                       f"Hello Juablaz,\r\n\r\nPayroll {doc['id']} shipped "
                                       f"to Juablaz of 320.00.\r\n"))
        wait_for(lambda: query(MONO_URL, "select status from sent_mail where correlation_id = %s",
                               (n["correlationId"],))[0][0] == "sent", what="status sent")
        st, _, data = self.svc.request("GET", loc.group(1).decode())
        self.assertEqual(st, 200)
        got = json.loads(data)
        self.assertEqual(got["notification"]["status"], "sent")
        self.assertEqual(got["notification"]["attempts"], 1)

    def test_non_ascii_name_arrives_intact(self):
        st, _, data = self.post({"shipTo": "José Núñez", "total": 1500.75})
        self.assertEqual(st, 201, data)
        doc = json.loads(data)
        self.assertIn(b'"total":1500.75', data)
        self.assertEqual(doc["shipTo"], "José Núñez")
        self.assertEqual(doc["notification"]["destination"], "jose.nunez@example.com")
        m = self.wait_mail(doc["notification"]["correlationId"])[0]
        self.assertIn("BODY=8BITMIME", m["mail_options"])
        headers, body = split_message(m["raw"])
        self.assertEqual(headers["content-transfer-encoding"], "8bit")
        self.assertEqual(body.decode("utf-8"),
                         f"Hello José Núñez,\r\n\r\nPayroll {doc['id']} shipped to "
                         f"José Núñez of 1500.75.\r\n")

    def test_header_injection_refused(self):
        before = len(self.smtp.snapshot())
        count = query(MONO_URL, "select count(*) from payroll")[0][0]
        attempts = [
            "Juablaz\r\nBcc: evil@example.net",
            "Juablaz\nBcc: evil@example.net",
            "a\r\n.\r\nMAIL FROM:<x@example.net>",
            ".",
            "victim@example.com>\r\nRCPT TO:<evil@example.net",
            "victim@example.com> NOTIFY=NEVER",
            "evil@example.net,victim@example.com",
        ]
        for ship in attempts:
            st, _, data = self.post({"shipTo": ship, "total": 1})
            self.assertEqual(st, 400, (ship, data))
            self.assertEqual(json.loads(data)["field"], "shipTo")
        self.assertEqual(query(MONO_URL, "select count(*) from payroll")[0][0], count)
        time.sleep(0.3)
        self.assertEqual(len(self.smtp.snapshot()), before)
        for m in self.smtp.snapshot():
            self.assertEqual(len(m["rcpt_tos"]), 1)

    def test_idempotency_key(self):
        key = f"k-{time.time_ns()}"
        body = {"shipTo": "Idem Potent", "total": 12.5}
        st1, h1, d1 = self.post(body, {"Idempotency-Key": key})
        st2, h2, d2 = self.post(body, {"Idempotency-Key": key})
        self.assertEqual((st1, st2), (201, 201))
        self.assertEqual(d1, d2)
        self.assertEqual(h1["location"], h2["location"])
        self.assertEqual(h2.get("idempotent-replayed"), "true")
        cid = json.loads(d1)["notification"]["correlationId"]
        self.wait_mail(cid)
        # the replay after delivery still gives the first answer
        st3, _, d3 = self.post(body, {"Idempotency-Key": key})
        self.assertEqual((st3, d3), (201, d1))
        self.assertEqual(query(MONO_URL, "select count(*) from payroll where idempotency_key = %s",
                               (key,))[0][0], 1)
        self.assertEqual(query(MONO_URL, "select count(*) from sent_mail m join payroll p "
                                         "on p.id = m.payroll_id where p.idempotency_key = %s",
                               (key,))[0][0], 1)
        time.sleep(0.5)
        self.assertEqual(len(self.smtp.by_message_id(cid)), 1)

        st4, _, d4 = self.post({"shipTo": "Idem Potent", "total": 13}, {"Idempotency-Key": key})
        self.assertEqual(st4, 422)
        self.assertEqual(json.loads(d4)["field"], "Idempotency-Key")
        self.assertEqual(query(MONO_URL, "select count(*) from payroll where idempotency_key = %s",
                               (key,))[0][0], 1)

    def test_idempotency_key_raced(self):
        key = f"race-{time.time_ns()}"
        body = {"shipTo": "Race Winner", "total": 77.7}

        def send(b):
            return self.post(b, {"Idempotency-Key": key})
        with concurrent.futures.ThreadPoolExecutor(12) as ex:
            got = list(ex.map(send, [body] * 12 + [{"shipTo": "Race Loser", "total": 1}] * 4))
        same, other = got[:12], got[12:]
        self.assertEqual({st for st, _, _ in same}, {201}, same)
        self.assertEqual(len({d for _, _, d in same}), 1, "replays answered differently")
        self.assertEqual(sum(1 for _, h, _ in same if "idempotent-replayed" not in h), 1,
                         "not exactly one first answer")
        # the other body waits for a free thread, so comes after a winner
        self.assertEqual({st for st, _, _ in other}, {422}, other)
        cid = json.loads(same[0][2])["notification"]["correlationId"]
        self.assertEqual(query(MONO_URL, "select count(*) from payroll where idempotency_key = %s",
                               (key,))[0][0], 1)
        self.assertEqual(query(MONO_URL, "select count(*) from sent_mail m join payroll p "
                                         "on p.id = m.payroll_id where p.idempotency_key = %s",
                               (key,))[0][0], 1)
        self.wait_mail(cid)
        time.sleep(0.5)
        self.assertEqual(len(self.smtp.by_message_id(cid)), 1)

    def test_validation(self):
        cases = [
            (b"{", None),
            ({"shipTo": "A", "total": 1.234}, "total"),
            ({"shipTo": "A", "total": -1}, "total"),
            ({"shipTo": "A", "total": 1000000000.01}, "total"),
            ({"shipTo": "A", "total": "3"}, "total"),
            ({"shipTo": "A"}, "total"),
            ({"shipTo": "A", "total": 1, "extra": 1}, "extra"),
            ({"shipTo": "", "total": 1}, "shipTo"),
            ({"shipTo": "Иван", "total": 1}, "shipTo"),
        ]
        for body, field in cases:
            h = {"Content-Type": "application/json"} if isinstance(body, bytes) else None
            st, _, data = self.post(body, h)
            self.assertEqual(st, 400, (body, data))
            doc = json.loads(data)
            self.assertIn("error", doc)
            if field:
                self.assertEqual(doc["field"], field, body)
        st, _, _ = self.svc.request("POST", "/payroll", "shipTo=A", {"Content-Type": "text/plain"})
        self.assertEqual(st, 415)
        st, h, _ = self.svc.request("DELETE", "/payroll")
        self.assertEqual(st, 405)
        self.assertIn("POST", h["allow"])
        st, _, _ = self.post({"shipTo": "A", "total": 1}, {"Idempotency-Key": "bad key"})
        self.assertEqual(st, 400)
        self.assertEqual(self.svc.request("GET", "/payroll/999999999")[0], 404)
        self.assertEqual(self.svc.request("GET", "/payroll/abc")[0], 404)
        st, _, data = self.svc.request("GET", "/payroll?limit=0")
        self.assertEqual((st, json.loads(data)["field"]), (400, "limit"))
        st, _, data = self.svc.request("GET", "/payroll?after=-3")
        self.assertEqual((st, json.loads(data)["field"]), (400, "after"))

    def test_keyset_pages(self):
        ids = []
        for i in range(3):
            st, _, data = self.post({"shipTo": f"Page {chr(65 + i)}", "total": i})
            self.assertEqual(st, 201)
            ids.append(json.loads(data)["id"])
        st, _, data = self.svc.request("GET", f"/payroll?limit=2&after={ids[0] - 1}")
        self.assertEqual(st, 200)
        page = json.loads(data)
        self.assertIn(b'"total":0.00', data)
        self.assertEqual([p["id"] for p in page["items"]], ids[:2])
        self.assertEqual(page["next"], str(ids[1]))
        st, _, data = self.svc.request("GET", f"/payroll?limit=2&after={page['next']}")
        page2 = json.loads(data)
        self.assertEqual(page2["items"][0]["id"], ids[2])
        self.assertIn(b'"total":2.00', data)

    def test_health_and_metrics(self):
        self.assertEqual(self.svc.request("GET", "/healthz")[0], 200)
        self.assertEqual(self.svc.request("GET", "/readyz")[0], 200)
        st, h, data = self.svc.request("GET", "/metrics")
        self.assertEqual(st, 200)
        self.assertTrue(h["x-served-by"].startswith("mailer-real/"))
        self.assertIn(b"mail_delivery_total", data)


if __name__ == "__main__":
    unittest.main()
