"""mailer-real delivery over real SMTP servers (aiosmtpd on loopback).

Covers: an SMTP outage (payrolls still 201, rows stay pending with the
error, every one delivered exactly once when a server appears on the
port); a 5xx for one recipient failing that row only, inside a batch sent
over one session; two mailer-real processes on one database delivering
each row once; SMTP_STARTTLS=required (with a trusted certificate it
sends over TLS; against a server without STARTTLS nothing is sent); SMTP
AUTH with the right and the wrong password.
"""
import concurrent.futures
import json
import os
import ssl
import tempfile
import time
import unittest

from harness import Service, query, execute, wait_for, MONO_URL
from real_support import (CaptureSMTP, closed_port, mono_env, reset_outbox,
                          self_signed_cert)


def post(svc, ship, total=1):
    st, _, data = svc.request("POST", "/payroll", {"shipTo": ship, "total": total})
    assert st == 201, (st, data)
    return json.loads(data)


def statuses(cids):
    rows = query(MONO_URL, "select correlation_id::text, status, attempts, last_error "
                           "from sent_mail where correlation_id = any(%s::uuid[])", (list(cids),))
    return {r[0]: r[1:] for r in rows}


class RealSmtpTest(unittest.TestCase):
    def setUp(self):
        reset_outbox()

    def test_outage_then_recovery_loses_nothing(self):
        port = closed_port()
        with Service("mailer-real", env=mono_env(port), log_name="real-outage") as svc:
            docs = [post(svc, f"Outage {chr(65 + i)}") for i in range(5)]
            cids = [d["notification"]["correlationId"] for d in docs]
            wait_for(lambda: all(s[1] >= 1 for s in statuses(cids).values()),
                     what="first failed attempts")
            for st, attempts, err in statuses(cids).values():
                self.assertEqual(st, "pending")
                self.assertTrue(err)
            with CaptureSMTP(port=port) as smtp:
                wait_for(lambda: all(s[0] == "sent" for s in statuses(cids).values()),
                         timeout=20, what="all sent after recovery")
                time.sleep(0.5)
                for cid in cids:
                    self.assertEqual(len(smtp.by_message_id(cid)), 1, cid)

    def test_5xx_for_one_recipient_fails_that_row_only(self):
        port = closed_port()
        # Rows are made while the server is away, then all come due at
        # once, so they travel in one batch over one session.
        with Service("mailer-real", env=mono_env(port, DELIVERY_RETRY_BASE_MS=600000,
                                                 DELIVERY_RETRY_MAX_MS=600000),
                     log_name="real-5xx-a") as svc:
            docs = [post(svc, "Good One"), post(svc, "reject-me@example.com"),
                    post(svc, "Good Two")]
            cids = [d["notification"]["correlationId"] for d in docs]
            wait_for(lambda: all(s[1] >= 1 for s in statuses(cids).values()),
                     what="first attempts")
        execute(MONO_URL, "update sent_mail set next_attempt_at = now() "
                          "where correlation_id = any(%s::uuid[])", (cids,))
        reject = {"reject-me@example.com": "550 5.1.1 no such user here"}
        with CaptureSMTP(port=port, reject=reject) as smtp, \
                Service("mailer-real", env=mono_env(port), log_name="real-5xx-b"):
            wait_for(lambda: all(s[0] != "pending" for s in statuses(cids).values()),
                     what="settled")
            st = statuses(cids)
            self.assertEqual(st[cids[0]][0], "sent")
            self.assertEqual(st[cids[2]][0], "sent")
            self.assertEqual(st[cids[1]][0], "failed")
            self.assertIn("550", st[cids[1]][2])
            got = smtp.snapshot()
            self.assertEqual(sorted(m["rcpt_tos"][0] for m in got),
                             ["good.one@example.com", "good.two@example.com"])
            self.assertEqual(len({m["peer"] for m in got}), 1, "one SMTP session")

    def test_two_processes_deliver_each_row_once(self):
        port = closed_port()
        n = 120
        with Service("mailer-real", env=mono_env(port, DELIVERY_RETRY_BASE_MS=600000,
                                                 DELIVERY_RETRY_MAX_MS=600000),
                     log_name="real-two-a") as svc:
            with concurrent.futures.ThreadPoolExecutor(8) as ex:
                docs = list(ex.map(lambda i: post(svc, f"Twin {i}"), range(n)))
        cids = [d["notification"]["correlationId"] for d in docs]
        execute(MONO_URL, "update sent_mail set next_attempt_at = now() "
                          "where correlation_id = any(%s::uuid[])", (cids,))
        env = mono_env(port, DELIVERY_BATCH=10, DELIVERY_WORKERS=2)
        with CaptureSMTP(port=port) as smtp, \
                Service("mailer-real", env=env, log_name="real-two-b"), \
                Service("mailer-real", env=env, log_name="real-two-c"):
            wait_for(lambda: all(s[0] == "sent" for s in statuses(cids).values()),
                     timeout=30, what="all sent by two processes")
            time.sleep(0.5)
            got = smtp.snapshot()
            ids = [m["raw"].split(b"Message-Id: <", 1)[1].split(b"@", 1)[0].decode()
                   for m in got]
            mine = [i for i in ids if i in set(cids)]
            self.assertEqual(len(mine), n)
            self.assertEqual(len(set(mine)), n)
            self.assertGreater(len({m["peer"] for m in got}), 1)

    def test_starttls_required(self):
        with tempfile.TemporaryDirectory() as d:
            cert, key = self_signed_cert(d)
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(cert, key)
            with CaptureSMTP(tls_context=ctx, require_starttls=True) as smtp:
                env = mono_env(smtp.port, SMTP_HOST="localhost", SMTP_STARTTLS="required",
                               SMTP_CA_FILE=cert)
                with Service("mailer-real", env=env, log_name="real-tls") as svc:
                    # one after the other: a second TLS session in one
                    # process must work (libesmtp 1.1.0 trap)
                    for c in "AB":
                        cid = post(svc, f"Tls {c}")["notification"]["correlationId"]
                        wait_for(lambda: statuses([cid])[cid][0] == "sent",
                                 what="sent over TLS")
                        self.assertTrue(smtp.by_message_id(cid)[0]["tls"])
                # without the CA, the certificate is not trusted: nothing sent
                env = mono_env(smtp.port, SMTP_HOST="localhost", SMTP_STARTTLS="required")
                with Service("mailer-real", env=env, log_name="real-tls-untrusted") as svc:
                    cid = post(svc, "Tls Untrusted")["notification"]["correlationId"]
                    wait_for(lambda: statuses([cid])[cid][1] >= 2, what="attempts")
                    st, _, err = statuses([cid])[cid]
                    self.assertEqual(st, "pending")
                    self.assertIn("certificate", err)
                    self.assertEqual(smtp.by_message_id(cid), [])
        # a server that offers no STARTTLS gets nothing
        with CaptureSMTP() as plain:
            env = mono_env(plain.port, SMTP_STARTTLS="required")
            with Service("mailer-real", env=env, log_name="real-notls") as svc:
                cid = post(svc, "No Tls")["notification"]["correlationId"]
                wait_for(lambda: statuses([cid])[cid][1] >= 2, what="attempts")
                st, attempts, err = statuses([cid])[cid]
                self.assertEqual(st, "pending")
                self.assertIn("STARTTLS", err)
                self.assertEqual(plain.by_message_id(cid), [])

    def test_auth(self):
        with CaptureSMTP(users={"mailer": "s3cret"}) as smtp:
            env = mono_env(smtp.port, SMTP_USER="mailer", SMTP_PASSWORD="s3cret")
            with Service("mailer-real", env=env, log_name="real-auth") as svc:
                cid = post(svc, "Auth Ok")["notification"]["correlationId"]
                wait_for(lambda: statuses([cid])[cid][0] == "sent", what="sent with AUTH")
                self.assertTrue(smtp.by_message_id(cid)[0]["authenticated"])
            env = mono_env(smtp.port, SMTP_USER="mailer", SMTP_PASSWORD="wrong")
            with Service("mailer-real", env=env, log_name="real-auth-bad") as svc:
                cid = post(svc, "Auth Bad")["notification"]["correlationId"]
                wait_for(lambda: statuses([cid])[cid][1] >= 2, what="attempts")
                self.assertEqual(statuses([cid])[cid][0], "pending")
                self.assertEqual(smtp.by_message_id(cid), [])


if __name__ == "__main__":
    unittest.main()
