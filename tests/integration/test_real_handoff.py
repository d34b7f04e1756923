"""NOTIFIER=remote: the hand-off to mailer-spy is the mail, so none is lost.

In the canary's new path mailer-real records its render as `delegated` and
the live spy sends. A payroll whose hand-off the spy never acknowledged
(spy down, queue dropped, mailer-real SIGKILLed before the POST went out)
is handed over again from sent_mail (handed_off_at still null) until the
spy acknowledges it; an acknowledged one is never handed over again.
"""
import json
import time
import unittest

import harness
from harness import Service, query, wait_for, MONO_URL, MICRO_URL
from real_support import metric, mono_env, reset_outbox, spy_available

FAST = {"HANDOFF_AFTER_MS": "500", "DELIVERY_POLL_MS": "100",
        "DELIVERY_RETRY_BASE_MS": "100", "DELIVERY_RETRY_MAX_MS": "400",
        "SPY_TIMEOUT_MS": "1000"}


def post(svc, ship, total=320):
    st, _, data = svc.request("POST", "/payroll", {"shipTo": ship, "total": total})
    assert st == 201, (st, data)
    doc = json.loads(data)
    assert doc["notification"]["status"] == "delegated", doc
    return doc["notification"]["correlationId"]


def unacknowledged(cids):
    return query(MONO_URL, "select count(*) from sent_mail where correlation_id = any(%s::uuid[]) "
                           "and handed_off_at is null", (cids,))[0][0]


def spied(cids):
    return query(MICRO_URL, "select count(*) from spied_mail where correlation_id = any(%s::uuid[])",
                 (cids,))[0][0]


@unittest.skipUnless(spy_available(), "mailer-spy is not built yet")
class RemoteHandoff(unittest.TestCase):
    def setUp(self):
        reset_outbox()

    def env(self, spy_port):
        # SMTP is never used in remote mode; the port only has to be valid
        return mono_env(harness.free_port(), NOTIFIER="remote",
                        SPY_URL=f"http://127.0.0.1:{spy_port}", **FAST)

    def test_spy_down_and_real_killed_then_every_payroll_reaches_the_spy(self):
        spy_port = harness.free_port()
        real = Service("mailer-real", env=self.env(spy_port), log_name="real-handoff-1").start()
        try:
            cids = [post(real, f"Handoff {i}", 100 + i) for i in range(20)]
            # nobody acknowledged: all still owed to the spy, and tried again
            wait_for(lambda: metric(real.port, "handoff_resent_total", "") >= 20,
                     timeout=30, what="unacknowledged hand-offs tried again")
            self.assertEqual(unacknowledged(cids), 20)
        finally:
            real.kill()
        self.assertEqual(spied(cids), 0)

        spy = Service("mailer-spy", env={"MICRO_DATABASE_URL": MICRO_URL}, port=spy_port,
                      log_name="real-handoff-spy").start()
        try:
            with Service("mailer-real", env=self.env(spy_port), log_name="real-handoff-2") as real2:
                wait_for(lambda: unacknowledged(cids) == 0, timeout=60,
                         what="every delegated payroll acknowledged by the spy")
                self.assertEqual(spied(cids), 20)
                wait_for(lambda: metric(real2.port, "handoff_acknowledged_total", "") >= 20,
                         what="acknowledgements counted")
                # what the spy recorded is what mailer-real recorded
                mono = dict(query(MONO_URL, "select correlation_id::text, subject from sent_mail "
                                            "where correlation_id = any(%s::uuid[])", (cids,)))
                micro = dict(query(MICRO_URL, "select correlation_id::text, subject from spied_mail "
                                              "where correlation_id = any(%s::uuid[])", (cids,)))
                self.assertEqual(mono, micro)
        finally:
            spy.stop()

    def test_acknowledged_hand_offs_are_not_repeated(self):
        spy = Service("mailer-spy", env={"MICRO_DATABASE_URL": MICRO_URL},
                      log_name="real-handoff-spy2").start()
        try:
            with Service("mailer-real", env=self.env(spy.port), log_name="real-handoff-3") as real:
                cids = [post(real, f"Once {i}") for i in range(10)]
                wait_for(lambda: unacknowledged(cids) == 0, timeout=30,
                         what="acknowledged")
                ok = metric(real.port, "parallel_run_dispatch_total", 'outcome="ok"')
                # several sweep periods and HANDOFF_AFTER_MS pass: nothing is due
                wait_for(lambda: metric(real.port, "handoff_unacknowledged", "") == 0,
                         what="gauge at zero")
                time.sleep(2)
                self.assertEqual(metric(real.port, "handoff_resent_total", ""), 0)
                self.assertEqual(metric(real.port, "parallel_run_dispatch_total",
                                        'outcome="ok"'), ok)
                self.assertEqual(ok, 10)
        finally:
            spy.stop()


if __name__ == "__main__":
    unittest.main()
