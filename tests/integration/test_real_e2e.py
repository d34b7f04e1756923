"""The Parallel Run end to end: mailer-real (NOTIFIER=parallel) in front of
the real mailer-spy, then the real reconciler, on scratch databases.

Covers: the seed's curl command (verbatim but for the port) and a load of
payrolls from several clients at once (plain names, José Núñez, e-mail
addresses, Idempotency-Key replays) all answered 201; every mail reaches
the SMTP server once, byte for byte the body the spy recorded under the
same correlation id; the online experiment counts a match for every
payroll and nothing else; the reconciler then finds every pair equal
(exit 0, zero mismatches, every row on both sides consumed), and a second
run finds nothing left to do.
"""
import concurrent.futures
import json
import os
import re
import subprocess
import unittest

import harness
from fault_tools import ScratchDbs, have
from harness import Service, query, wait_for
from real_support import CaptureSMTP, metric

EXP = 'experiment="mail-render",result="%s"'
NAMES = ["Juablaz", "José Núñez", "ana.lopez@Example.COM", "Mary Ann O'Neil",
         "Zoë Ærø", "x_y-z"]


@unittest.skipUnless(have("mailer-real", "mailer-spy", "reconciler"),
                     "mailer-real, mailer-spy and reconciler not all built yet")
class ParallelRunEndToEnd(unittest.TestCase):
    def setUp(self):
        self.dbs = ScratchDbs()
        self.addCleanup(self.dbs.close)
        self.smtp = CaptureSMTP().start()
        self.addCleanup(self.smtp.stop)
        self.spy = Service("mailer-spy", env={"MICRO_DATABASE_URL": self.dbs.micro,
                                              "SPY_TOKEN": "e2e-token", "LOG_LEVEL": "info"},
                           log_name="real-e2e-spy").start()
        self.addCleanup(self.spy.stop)
        env = {"MONO_DATABASE_URL": self.dbs.mono, "SMTP_HOST": "127.0.0.1",
               "SMTP_PORT": str(self.smtp.port), "NOTIFIER": "parallel",
               "SPY_URL": f"http://127.0.0.1:{self.spy.port}", "SPY_TOKEN": "e2e-token",
               "PARALLEL_RUN_PERCENT": "100", "DELIVERY_POLL_MS": "200",
               "LOG_LEVEL": "info"}
        self.real = Service("mailer-real", env=env, log_name="real-e2e").start()
        self.addCleanup(self.real.stop)

    def reconciler(self, *args):
        e = dict(os.environ, MONO_DATABASE_URL=self.dbs.mono,
                 MICRO_DATABASE_URL=self.dbs.micro, LOG_LEVEL="info")
        return subprocess.run([os.path.join(harness.BIN_DIR, "reconciler")] + list(args),
                              env=e, capture_output=True, text=True, timeout=120)

    def test_parallel_run_reconciles_with_zero_mismatches(self):
        seed = subprocess.run(["curl", "-v", "-H", "Content-Type: application/json", "-d",
                               '{"shipTo":"Juablaz","total":320}',
                               f"localhost:{self.real.port}/payroll"],
                              capture_output=True, timeout=20)
        self.assertIn(b"< HTTP/1.1 201", seed.stderr)
        first = json.loads(seed.stdout)

        def one(i):
            # i = 10k and 10k+1 send the same body under one key
            keyed = i % 10 < 2
            j = i - i % 10 if keyed else i
            ship = NAMES[j % len(NAMES)]
            total = [320, 1500.75, 0.5, 0, 999999999.99, 12.3][j % 6]
            headers = {"Idempotency-Key": f"e2e-{j}"} if keyed else None
            return self.real.request("POST", "/payroll", {"shipTo": ship, "total": total},
                                     headers, timeout=30)

        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            answers = list(ex.map(one, range(200)))
        self.assertEqual({st for st, _, _ in answers}, {201},
                         [d for st, _, d in answers if st != 201][:3])
        docs = {}
        for _, _, data in answers:
            d = json.loads(data)
            docs[d["notification"]["correlationId"]] = d
        docs[first["notification"]["correlationId"]] = first
        # every pair of requests sharing a key got one payroll
        self.assertEqual(len(docs), 1 + 200 - 20)
        n = len(docs)

        def mono_status():
            return dict(query(self.dbs.mono, "select status, count(*) from sent_mail group by 1"))
        wait_for(lambda: mono_status() == {"sent": n}, timeout=90, what="every mail sent")
        wait_for(lambda: metric(self.real.port, "experiment_runs_total", EXP % "matched") == n,
                 timeout=60, what="a match for every payroll")
        for r in ("mismatched", "ignored", "candidate_error"):
            self.assertEqual(metric(self.real.port, "experiment_runs_total", EXP % r), 0, r)
        self.assertEqual(metric(self.real.port, "parallel_run_dispatch_total", 'outcome="ok"'), n)

        micro = {r[0]: r[1:] for r in query(
            self.dbs.micro, "select correlation_id::text, destination, subject, body from spied_mail")}
        mono = {r[0]: r[1:] for r in query(
            self.dbs.mono, "select correlation_id::text, destination, subject, body from sent_mail")}
        self.assertEqual(set(mono), set(docs))
        self.assertEqual(mono, micro)
        # what went over SMTP is what both stores hold
        seen = {}
        for m in self.smtp.snapshot():
            head, _, body = m["raw"].partition(b"\r\n\r\n")
            cid = re.search(rb"Message-Id: <([0-9a-f-]{36})@", head).group(1).decode()
            seen.setdefault(cid, []).append((m["rcpt_tos"], body))
        self.assertEqual(set(seen), set(docs))
        for cid, got in seen.items():
            self.assertEqual(len(got), 1, f"{cid} delivered {len(got)} times")
            dest, _, body = micro[cid]
            self.assertEqual(got[0][0], [dest])
            self.assertEqual(got[0][1].decode("utf-8"), body, cid)

        p = self.reconciler("run", "--grace", "0")
        self.assertEqual(p.returncode, 0, f"reconciler: {p.stdout}\n{p.stderr}")
        run = query(self.dbs.mono, "select status, matched, new_mismatches, content,"
                                   " missing_in_micro, missing_in_mono"
                                   " from reconciliation_run order by id desc limit 1")[0]
        self.assertEqual(run, ("done", n, 0, 0, 0, 0))
        self.assertEqual(query(self.dbs.mono, "select count(*) from reconciliation_mismatch")[0][0], 0)
        self.assertEqual(query(self.dbs.mono, "select count(*) from sent_mail"
                                              " where consumed_at is null")[0][0], 0)
        self.assertEqual(query(self.dbs.micro, "select count(*) from spied_mail"
                                               " where consumed_at is null")[0][0], 0)
        again = self.reconciler("run", "--grace", "0")
        self.assertEqual(again.returncode, 0, again.stderr)
        self.assertEqual(query(self.dbs.mono, "select matched, new_mismatches from reconciliation_run"
                                              " order by id desc limit 1")[0], (0, 0))


if __name__ == "__main__":
    unittest.main()
