"""A real nginx (/usr/sbin/nginx) for the canary tests, with its own prefix,
pid file and logs under a temporary folder and only loopback ports, loading
the weight files that nginx/generate renders for those ports; plus the
small loopback backends the split tests start with.
"""
import http.server
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time

from harness import TOP, StubHTTPServer, free_port, request

NGINX = "/usr/sbin/nginx"
CANARY = os.path.join(TOP, "scripts", "canary")


class Nginx:
    """nginx in the foreground (a child of the test) with a private prefix."""

    def __init__(self, old_backend, new_backend, initial="nginx_0_100.conf"):
        self.dir = tempfile.mkdtemp(prefix="canary-nginx-")
        self.port = free_port()
        self.conf_dir = os.path.join(self.dir, "generated")
        self.active = os.path.join(self.dir, "active", "canary.conf")
        self.access_log = os.path.join(self.dir, "logs", "canary.log")
        self.error_log = os.path.join(self.dir, "logs", "error.log")
        self.main_conf = os.path.join(self.dir, "nginx.conf")
        for d in ("active", "logs", "tmp"):
            os.makedirs(os.path.join(self.dir, d))
        os.chmod(self.dir, 0o755)
        self.render_env = {
            "CANARY_LISTEN": f"127.0.0.1:{self.port}",
            "CANARY_OLD_BACKEND": old_backend,
            "CANARY_NEW_BACKEND": new_backend,
            "CANARY_OLD_HOP": f"127.0.0.1:{free_port()}",
            "CANARY_NEW_HOP": f"127.0.0.1:{free_port()}",
            "CANARY_ACCESS_LOG": self.access_log,
        }
        subprocess.run([os.path.join(TOP, "nginx", "generate"), self.conf_dir],
                       env=dict(os.environ, **self.render_env), check=True)
        tmp = os.path.join(self.dir, "tmp")
        with open(self.main_conf, "w") as f:
            f.write(f"""worker_processes 2;
pid {self.dir}/nginx.pid;
error_log {self.error_log} info;
events {{ worker_connections 1024; }}
http {{
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    include {self.active};
}}
""")
        shutil.copy(os.path.join(self.conf_dir, initial), self.active)
        self.nginx_cmd = f"{NGINX} -p {self.dir} -c {self.main_conf}"
        self.proc = None

    def canary_env(self, **extra):
        env = dict(os.environ)
        env.update({
            "CANARY_DIR": self.conf_dir,
            "CANARY_ACTIVE": self.active,
            "CANARY_NGINX": self.nginx_cmd,
            "CANARY_ACCESS_LOG": self.access_log,
            "CANARY_URL": f"http://127.0.0.1:{self.port}",
        })
        env.update({k: str(v) for k, v in extra.items()})
        return env

    def canary(self, *args, **extra):
        """Runs scripts/canary against this nginx; returns the CompletedProcess."""
        return subprocess.run([CANARY] + list(args), env=self.canary_env(**extra),
                              capture_output=True, text=True, timeout=60)

    def test_config(self):
        return subprocess.run(self.nginx_cmd.split() + ["-t", "-q"],
                              capture_output=True, text=True)

    def start(self):
        self.proc = subprocess.Popen(self.nginx_cmd.split() + ["-g", "daemon off;"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 10
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("nginx exited: " + self.proc.stderr.read().decode())
            try:
                request(self.port, "GET", "/_canary", timeout=1)
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"nginx did not answer; see {self.error_log}")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.proc.stderr.close()

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def access_lines(self):
        """Parsed lines of the per-path access log: (msec, path, status, uri)."""
        if not os.path.exists(self.access_log):
            return []
        out = []
        with open(self.access_log) as f:
            for line in f:
                p = line.split()
                out.append((float(p[0]), p[1], int(p[2]), p[4].strip('"')))
        return out


class TinyBackend:
    """An HTTP server on loopback that answers every request 201 with its name."""

    def __init__(self, name, status=None):
        self.name = name
        self.status = status  # answer this instead of 201/200 (a broken path)
        self.count = 0
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self):
                n = int(self.headers.get("Content-Length") or 0)
                if n:
                    self.rfile.read(n)
                if self.command == "POST":
                    with outer.lock:
                        outer.count += 1
                body = json.dumps({"backend": outer.name}).encode()
                self.send_response(outer.status or (201 if self.command == "POST" else 200))
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *a):
                pass

        self.server = StubHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def with_queue(files):
    """files with sql/queue.sql right after mono.sql or micro.sql when a
    list leaves it out: the reconciler's queue is part of both stores."""
    out = []
    for f in files:
        out.append(f)
        if f in ("mono.sql", "micro.sql") and "queue.sql" not in files:
            out.append("queue.sql")
    return out


def scratch_db(base_url, name, schema_files):
    """A fresh database `name` on base_url's cluster with the given sql/
    files loaded; returns its URL. Tests that count rows in the reconciler's
    history use one so that other tests' rows do not change the count."""
    import psycopg2
    admin = base_url.rsplit("/", 1)[0] + "/postgres"
    conn = psycopg2.connect(admin)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(f'drop database if exists "{name}" with (force)')
            cur.execute(f'create database "{name}"')
    finally:
        conn.close()
    url = base_url.rsplit("/", 1)[0] + "/" + name
    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for f in with_queue(schema_files):
                with open(os.path.join(TOP, "sql", f)) as fh:
                    cur.execute(fh.read())
    finally:
        conn.close()
    return url


def to_addr(msg):
    """The one recipient of a stored message, lower-cased, without brackets."""
    addrs = msg["To"].addresses
    return addrs[0].addr_spec.lower() if addrs else str(msg["To"]).strip("<> ").lower()
