"""Helpers for the reconciler's integration tests: rows written straight
into both databases (no mailer involved), running the real binary, and
reading back the state that matters (what is consumed, which mismatches)."""
import json
import os
import shutil
import subprocess

import harness
from harness import BIN_DIR, MICRO_URL, MONO_URL

RECONCILER = os.path.join(BIN_DIR, "reconciler")
# The same program with its crash hook (RECONCILER_CRASH_AT) compiled in:
# reconciler/build.mk; the installed one has none.
HOOKED_RECONCILER = os.path.join(os.environ.get("BUILD_DIR", os.path.dirname(BIN_DIR)),
                                 "test-bin", "reconciler")
LOCK_CLASS = 0x52454331


def reset():
    """Empties the tables the reconciler reads and writes; returns a payroll id."""
    harness.execute(MONO_URL, "truncate sent_mail, reconciliation_mismatch, reconciliation_run")
    # Through the identity, never "overriding system value": an id chosen
    # here would leave the sequence behind and make the next POST /payroll
    # in this database fail on a duplicate key.
    pid = harness.query(MONO_URL, "insert into payroll (ship_to, total) values ('t', 1)"
                                  " returning id")[0][0]
    harness.execute(MICRO_URL, "truncate spied_mail")
    return pid


def insert(url, table, rows, pid, age=3600):
    """rows: (correlation_id, destination, subject, body); created age seconds ago."""
    for cid, d, s, b in rows:
        harness.execute(url, f"insert into {table} (correlation_id, payroll_id, destination,"
                             " subject, body, created_at) values (%s, %s, %s, %s, %s,"
                             " now() - make_interval(secs => %s))",
                        (str(cid), pid, d, s, b, age))


def bulk(url, table, pid, n, prefix="p", start=1, body_sql=None, where=None, age=3600):
    """n generated rows server-side: uuid md5(prefix||i), content derived from i.
    body_sql may vary the body by i; where may skip some i."""
    body = body_sql or "'Hello ' || i || E',\\r\\n\\r\\nPayroll ' || i || ' shipped.\\r\\n'"
    cond = f"where {where}" if where else ""
    body = body.replace("%", "%%")
    cond = cond.replace("%", "%%")
    harness.execute(url, f"insert into {table} (correlation_id, payroll_id, destination, subject,"
                         f" body, created_at) select md5(%s || i)::uuid, %s, 'u' || i || '@example.com',"
                         f" 'Payroll ' || i || ' shipped', {body}, now() - make_interval(secs => %s)"
                         f" from generate_series(%s, %s) i {cond}",
                    (prefix, pid, age, start, start + n - 1))


def run(*args, env=None, timeout=300, hooks=False):
    """Runs the reconciler (hooks: the test build, with RECONCILER_CRASH_AT)."""
    e = dict(os.environ)
    e.update({"MONO_DATABASE_URL": MONO_URL, "MICRO_DATABASE_URL": MICRO_URL})
    e.update(env or {})
    p = subprocess.run([HOOKED_RECONCILER if hooks else RECONCILER] + list(args), env=e,
                       capture_output=True, timeout=timeout)
    # Decoded without newline translation: CSV and bodies keep their CRLF.
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def sessions():
    """The reconciler's sessions on both servers, and what each waits on."""
    sql = ("select application_name, state, wait_event_type, wait_event,"
           " left(query, 120) from pg_stat_activity where application_name = 'reconciler'")
    return "\n".join(f"{name}: {row}" for name, url in (("mono", MONO_URL), ("micro", MICRO_URL))
                     for row in q(url, sql))


def communicate(p, timeout):
    """p.communicate(timeout); a process still running then is a hang, not
    a slow run: its threads' stacks (gdb, when installed), its database
    sessions and what it wrote so far go into the failure, then it is
    killed."""
    try:
        return p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stacks = sessions() + "\n"
        if not shutil.which("gdb"):
            stacks += "(gdb not installed)"
        else:
            stacks += subprocess.run(
                ["gdb", "-p", str(p.pid), "-batch", "-ex", "thread apply all bt"],
                capture_output=True, text=True, timeout=120).stdout
        p.kill()
        out, err = p.communicate()
        raise AssertionError(f"{p.args} still running after {timeout} s; its threads:\n"
                             f"{stacks}\nits stderr:\n{err}") from None


def report_json(run_id=None):
    rc, out, err = run("report", *([str(run_id)] if run_id else []), "--format", "json")
    assert rc == 0, err
    return json.loads(out)


def q(url, sql, args=None):
    """One statement on harness's pooled session (args None: no % formatting)."""
    return harness.query(url, sql, args)


def consumed(url, table):
    return {r[0] for r in q(url, f"select correlation_id::text from {table}"
                                 " where consumed_at is not null")}


def state():
    """What a rerun must reproduce: consumed ids on both sides and the
    mismatches (without ids or run ids)."""
    mm = q(MONO_URL, "select correlation_id::text, kind, array_to_string(fields, ','),"
                     " mono_destination, mono_subject, mono_body, micro_destination,"
                     " micro_subject, micro_body, resolved_at is not null, resolution"
                     " from reconciliation_mismatch")
    return (consumed(MONO_URL, "sent_mail"), consumed(MICRO_URL, "spied_mail"),
            sorted(mm, key=lambda r: (r[0], r[1], r[9])))
