"""An SMTP server on a raw socket whose replies carry hostile text.

Speaks just enough SMTP (EHLO with PIPELINING and 8BITMIME, MAIL, RCPT,
DATA, RSET, NOOP, QUIT) for a libesmtp client, and answers RCPT TO (and the
end of DATA) with the bytes of REPLIES chosen by the recipient's local
part: Latin-1, invalid UTF-8, a multi-byte character cut at the end, a
NUL, a 10 KiB line, a multi-line reply. Every reply, the greeting and EHLO
included, goes out in small pieces (TCP_NODELAY), so a client must put a
reply back together across packets. What it accepts is kept in memory:
delivered() counts messages by Message-Id.
"""
import re
import socket
import threading
import time

LONG = ("Zürich ".encode() * 2000)[:10 * 1024]

# local part -> RCPT TO reply (bytes, without the final CRLF)
REPLIES = {
    "latin1": b"550 5.1.1 Bo\xeete pleine, r\xe9essayez plus tard",
    "badutf8": b"550 5.1.1 \xff\xfe\xc3\x28\xa0\xa1\xed\xa0\x80\xf8\x88\x80\x80\x80 invalid",
    "cutchar": b"550 5.1.1 cut at the end \xe2\x82",
    "nul": b"550 5.1.1 before\x00after the NUL",
    "long": b"550 5.1.1 " + LONG,
    "multiline": b"550-5.1.1 first line caf\xe9\r\n550-5.1.1 " + "é".encode() * 200 +
                 b"\r\n550 5.1.1 last\x00line",
    "longtemp": b"451 4.3.0 " + "€".encode() * 120 + b"\xe2\x82",
}
# local part -> reply to the end of DATA (the mail is accepted)
DATA_REPLIES = {
    "acceptlatin1": b"250 2.0.0 queued as caf\xe9 \x00\xff" + "ü".encode() * 300,
}


class HostileSmtp:
    def __init__(self, piece=7):
        self.piece = piece
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.by_id = {}          # Message-Id -> deliveries
        self.rcpt_seen = {}      # recipient -> RCPT TO commands
        self.sessions = 0
        self._stop = False

    def start(self):
        self.sock.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self):
        self._stop = True
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def delivered(self, message_id_part):
        with self.lock:
            return sum(n for k, n in self.by_id.items() if message_id_part in k)

    def _accept(self):
        while not self._stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._session, args=(c,), daemon=True).start()

    def _send(self, c, data):
        # in pieces, each its own packet: a reply split across reads
        data += b"\r\n"
        for i in range(0, len(data), self.piece):
            c.sendall(data[i:i + self.piece])
            time.sleep(0.0005)

    def _session(self, c):
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c.settimeout(30)
        f = c.makefile("rb")
        with self.lock:
            self.sessions += 1
        rcpts, accepted = [], []
        try:
            self._send(c, b"220 hostile.example ESMTP caf\xe9")
            while True:
                line = f.readline(65536)
                if not line:
                    return
                cmd = line.rstrip(b"\r\n")
                verb = cmd.split(b" ", 1)[0].upper()
                if verb in (b"EHLO", b"HELO"):
                    self._send(c, b"250-hostile.example \xe9\xff\r\n250-PIPELINING\r\n250 8BITMIME")
                elif verb == b"MAIL":
                    rcpts, accepted = [], []
                    self._send(c, b"250 2.1.0 ok")
                elif verb == b"RCPT":
                    m = re.match(rb"(?i)RCPT TO:\s*<([^>]*)>", cmd)
                    addr = m.group(1).decode("latin-1") if m else ""
                    local = addr.split("@")[0]
                    with self.lock:
                        self.rcpt_seen[addr] = self.rcpt_seen.get(addr, 0) + 1
                    rcpts.append(addr)
                    if local in REPLIES:
                        self._send(c, REPLIES[local])
                    else:
                        accepted.append(addr)
                        self._send(c, b"250 2.1.5 ok")
                elif verb == b"DATA":
                    if not accepted:
                        self._send(c, b"554 5.5.1 no valid recipients")
                        continue
                    self._send(c, b"354 go ahead")
                    body = []
                    while True:
                        l = f.readline(1 << 20)
                        if not l:
                            return
                        if l in (b".\r\n", b".\n"):
                            break
                        body.append(l)
                    raw = b"".join(body)
                    mid = re.search(rb"(?im)^Message-Id:\s*<([^>]*)>", raw)
                    key = mid.group(1).decode("latin-1") if mid else ""
                    with self.lock:
                        self.by_id[key] = self.by_id.get(key, 0) + 1
                    local = accepted[0].split("@")[0]
                    self._send(c, DATA_REPLIES.get(local, b"250 2.0.0 ok"))
                    rcpts, accepted = [], []
                elif verb in (b"RSET", b"NOOP"):
                    rcpts, accepted = [], []
                    self._send(c, b"250 2.0.0 ok")
                elif verb == b"QUIT":
                    self._send(c, b"221 2.0.0 bye")
                    return
                else:
                    self._send(c, b"502 5.5.2 what")
        except OSError:
            return
        finally:
            try:
                c.close()
            except OSError:
                pass
