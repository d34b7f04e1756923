#!/usr/bin/python3
"""A real SMTP server on loopback that misbehaves on request.

The fault tests point mailer-real (or a live mailer-spy) at it to see what
a sender does when the far end is slow, drops the connection in the middle
of DATA, or refuses a recipient. Every message it accepts (answered 250
after the final dot) is stored in a Maildir, with the envelope in X-MailFrom
and X-RcptTo headers, so a test reads back exactly what was delivered. A
message whose connection it drops is never stored: an honest server that
never said 250 has not taken the message.

Run as a program (the tests do, so that "down" means the port is closed):

  faulty_smtp.py --port N --maildir DIR [--delay S] [--drop-in-data N]
                 [--drop-point start|end] [--reject-rcpt REGEX]
                 [--tempfail-rcpt REGEX]

  --delay S          wait S seconds before every reply (banner included)
  --drop-in-data N   close the connection during the first N DATA phases
  --drop-point       where: 'start' after the first body line, 'end' after
                     the final dot but before the 250 (default end)
  --reject-rcpt RE   answer 550 to RCPT TO addresses matching RE
  --tempfail-rcpt RE answer 451 to RCPT TO addresses matching RE

It prints one line per event to stderr. FaultySmtp is the wrapper the tests
use: start(), stop() (port closed), kill(), messages().
"""
import argparse
import asyncio
import email
import email.policy
import mailbox
import os
import re
import signal
import socket
import subprocess
import sys
import time

MAX_LINE = 8192
MAX_MESSAGE = 10 * 1024 * 1024


class State:
    def __init__(self, args):
        self.args = args
        self.box = mailbox.Maildir(args.maildir, create=True)
        self.drops_left = args.drop_in_data
        self.reject = re.compile(args.reject_rcpt) if args.reject_rcpt else None
        self.tempfail = re.compile(args.tempfail_rcpt) if args.tempfail_rcpt else None
        self.stored = 0


def log(*a):
    print("faulty_smtp:", *a, file=sys.stderr, flush=True)


async def session(state, reader, writer):
    args = state.args

    async def reply(text):
        if args.delay:
            await asyncio.sleep(args.delay)
        writer.write(text.encode() + b"\r\n")
        await writer.drain()

    async def line():
        data = await reader.readuntil(b"\n")
        if len(data) > MAX_LINE:
            raise ValueError("line too long")
        return data

    mail_from, rcpts = None, []
    try:
        await reply("220 faulty-smtp ESMTP")
        while True:
            raw = await line()
            cmd = raw.decode("latin-1").rstrip("\r\n")
            verb = cmd.split(" ", 1)[0].upper()
            if verb == "EHLO":
                await reply("250-faulty-smtp\r\n250-8BITMIME\r\n250 SIZE %d" % MAX_MESSAGE)
            elif verb == "HELO":
                await reply("250 faulty-smtp")
            elif verb == "MAIL":
                m = re.match(r"(?i)MAIL FROM:\s*<([^>]*)>", cmd)
                if not m:
                    await reply("501 5.5.4 syntax: MAIL FROM:<address>")
                    continue
                mail_from, rcpts = m.group(1), []
                await reply("250 2.1.0 ok")
            elif verb == "RCPT":
                m = re.match(r"(?i)RCPT TO:\s*<([^>]*)>", cmd)
                if mail_from is None:
                    await reply("503 5.5.1 MAIL first")
                elif not m:
                    await reply("501 5.5.4 syntax: RCPT TO:<address>")
                elif state.reject and state.reject.search(m.group(1)):
                    log("reject", m.group(1))
                    await reply("550 5.1.1 <%s>: mailbox unavailable" % m.group(1))
                elif state.tempfail and state.tempfail.search(m.group(1)):
                    log("tempfail", m.group(1))
                    await reply("451 4.3.0 <%s>: try again later" % m.group(1))
                else:
                    rcpts.append(m.group(1))
                    await reply("250 2.1.5 ok")
            elif verb == "DATA":
                if not rcpts:
                    await reply("554 5.5.1 no valid recipients")
                    continue
                await reply("354 end data with <CR><LF>.<CR><LF>")
                body, size, first = [], 0, True
                while True:
                    l = await line()
                    if first and state.drops_left > 0 and args.drop_point == "start":
                        state.drops_left -= 1
                        log("drop at start of DATA")
                        writer.transport.abort()
                        return
                    first = False
                    if l in (b".\r\n", b".\n"):
                        break
                    if l.startswith(b"."):
                        l = l[1:]
                    size += len(l)
                    if size > MAX_MESSAGE:
                        await reply("552 5.3.4 message too big")
                        return
                    body.append(l)
                if state.drops_left > 0:
                    state.drops_left -= 1
                    log("drop at end of DATA, message not stored")
                    writer.transport.abort()
                    return
                msg = (b"X-MailFrom: " + mail_from.encode() + b"\r\n" +
                       b"X-RcptTo: " + ", ".join(rcpts).encode() + b"\r\n" +
                       b"".join(body))
                state.box.add(msg)
                state.stored += 1
                log("stored", state.stored, "for", ",".join(rcpts))
                mail_from, rcpts = None, []
                await reply("250 2.0.0 ok: queued")
            elif verb == "RSET":
                mail_from, rcpts = None, []
                await reply("250 2.0.0 ok")
            elif verb == "NOOP":
                await reply("250 2.0.0 ok")
            elif verb == "QUIT":
                await reply("221 2.0.0 bye")
                return
            else:
                await reply("502 5.5.2 command not recognised")
    except (asyncio.IncompleteReadError, ConnectionError, ValueError,
            asyncio.LimitOverrunError):
        return
    finally:
        try:
            writer.close()
        except Exception:
            pass


async def serve(args):
    state = State(args)
    server = await asyncio.start_server(
        lambda r, w: session(state, r, w), "127.0.0.1", args.port,
        limit=MAX_LINE * 2, reuse_address=True)
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, lambda: stop.done() or stop.set_result(None))
    log("listening on", args.port)
    async with server:
        await stop


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--maildir", required=True)
    ap.add_argument("--delay", type=float, default=0.0)
    ap.add_argument("--drop-in-data", type=int, default=0)
    ap.add_argument("--drop-point", choices=("start", "end"), default="end")
    ap.add_argument("--reject-rcpt")
    ap.add_argument("--tempfail-rcpt")
    asyncio.run(serve(ap.parse_args()))


class FaultySmtp:
    """The server as a child process of a test, on a fixed port and Maildir
    so that it can be stopped (port closed) and started again."""

    def __init__(self, port, maildir, log_path, **opts):
        self.port, self.maildir, self.log_path = port, maildir, log_path
        self.opts = opts
        self.proc = None

    def start(self, **opts):
        if opts:
            self.opts = opts
        argv = [sys.executable if os.path.exists(sys.executable) else "/usr/bin/python3",
                os.path.abspath(__file__), "--port", str(self.port),
                "--maildir", self.maildir]
        for k, v in self.opts.items():
            if v is not None:
                argv += ["--" + k.replace("_", "-"), str(v)]
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=self.log)
        deadline = time.time() + 15
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"faulty_smtp exited; see {self.log_path}")
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"faulty_smtp not listening; see {self.log_path}")

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.log.close()
        self.proc = None

    def kill(self):
        self.stop(signal.SIGKILL)

    def messages(self):
        out = []
        for sub in ("new", "cur"):
            d = os.path.join(self.maildir, sub)
            if not os.path.isdir(d):
                continue
            for n in sorted(os.listdir(d)):
                with open(os.path.join(d, n), "rb") as f:
                    raw = f.read()
                m = email.message_from_bytes(raw, policy=email.policy.default)
                m.raw_bytes = raw
                out.append(m)
        return out


if __name__ == "__main__":
    main()
