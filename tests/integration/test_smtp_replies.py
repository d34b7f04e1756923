"""Whatever an SMTP server answers, mailer-real records it and moves on.

A hostile server on a raw socket (hostile_smtp.py) answers RCPT TO with
Latin-1, invalid UTF-8, a multi-byte character cut at the end, a NUL, a
10 KiB line, a multi-line reply, a 4xx full of multi-byte characters, and
one accepted mail's end of DATA with Latin-1 and a NUL; every reply comes
in small packets. All the mails are due together, so they travel in one
SMTP session. Then:

- every refused mail ends 'failed' (the 4xx one after DELIVERY_MAX_ATTEMPTS
  attempts), with its attempts counted (a reply that breaks the session,
  like the 10 KiB line, leaves the mails after it to the next session) and last_error valid UTF-8, without
  control characters, at most 255 bytes and naming the code;
- every other mail is 'sent' and was delivered exactly once, also after
  the worker has gone round again (a later payroll delivered): a hostile
  reply to one recipient never makes another mail go twice.
"""
import unittest

from harness import Service, query, execute, wait_for, MONO_URL
from hostile_smtp import DATA_REPLIES, REPLIES, HostileSmtp
from real_support import closed_port, mono_env, reset_outbox
from test_real_smtp import post

GOOD = ["good%d@example.com" % i for i in range(6)]


def rows(cids):
    got = query(MONO_URL, "select correlation_id::text, destination, status, attempts,"
                " coalesce(last_error, ''), octet_length(coalesce(last_error, ''))"
                " from sent_mail where correlation_id = any(%s::uuid[])", (list(cids),))
    return {r[0]: r[1:] for r in got}


class HostileReplies(unittest.TestCase):
    def setUp(self):
        reset_outbox()

    def test_hostile_replies_are_recorded_and_nothing_goes_twice(self):
        hostile = [f"{local}@example.com" for local in REPLIES] + \
                  [f"{local}@example.com" for local in DATA_REPLIES]
        dests = GOOD[:3] + hostile + GOOD[3:]
        # Made while no server listens, then all due at once: one batch.
        with Service("mailer-real", env=mono_env(closed_port(), DELIVERY_RETRY_BASE_MS=600000,
                                                 DELIVERY_RETRY_MAX_MS=600000),
                     log_name="replies-a") as svc:
            cids = {post(svc, d)["notification"]["correlationId"]: d for d in dests}
            wait_for(lambda: all(r[2] >= 1 for r in rows(cids).values()), what="first attempts")
        execute(MONO_URL, "update sent_mail set next_attempt_at = now(), attempts = 0 "
                          "where correlation_id = any(%s::uuid[])", (list(cids),))
        with HostileSmtp() as smtp, \
                Service("mailer-real", env=mono_env(smtp.port, DELIVERY_WORKERS=1, DELIVERY_BATCH=50,
                                                    DELIVERY_MAX_ATTEMPTS=3),
                        log_name="replies-b") as svc:
            wait_for(lambda: all(r[1] != "pending" for r in rows(cids).values()), timeout=60,
                     what="every mail settled")
            # the worker goes round again: a later mail is delivered
            marker = post(svc, "marker@example.com")["notification"]["correlationId"]
            wait_for(lambda: smtp.delivered(marker) >= 1, timeout=30, what="a later mail delivered")
            wait_for(lambda: rows([marker])[marker][1] == "sent", what="the later mail recorded")
            got = rows(cids)
            for cid, (dest, status, attempts, err, nbytes) in got.items():
                local = dest.split("@")[0]
                with self.subTest(dest=dest):
                    self.assertLessEqual(nbytes, 255, f"last_error of {nbytes} bytes")
                    self.assertFalse(any(ord(ch) < 0x20 or ord(ch) == 0x7f for ch in err),
                                     f"control character in last_error {err!r}")
                    err.encode("utf-8")
                    if local in REPLIES:
                        code = REPLIES[local][:3].decode()
                        self.assertEqual(status, "failed", err)
                        self.assertIn(code, err)
                        # a reply that breaks the session (the 10 KiB line)
                        # leaves the mails after it unanswered: tried again
                        if code.startswith("4"):
                            self.assertEqual(attempts, 3, err)
                        else:
                            self.assertTrue(1 <= attempts <= 3, f"{attempts} attempts")
                        self.assertEqual(smtp.delivered(cid), 0)
                    else:
                        self.assertEqual(status, "sent", err)
                        self.assertGreaterEqual(attempts, 1)
                        self.assertEqual(smtp.delivered(cid), 1, f"{dest} delivered "
                                         f"{smtp.delivered(cid)} times")
            # the 550 answers that only the replacement made printable
            latin = [r for r in got.values() if r[0].startswith("latin1@")][0]
            self.assertIn("Bo\ufffdte pleine", latin[3])
            nul = [r for r in got.values() if r[0].startswith("nul@")][0]
            self.assertIn("before", nul[3])


if __name__ == "__main__":
    unittest.main()
