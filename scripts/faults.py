#!/usr/bin/env python3
"""The fault suite (README: Performance, "Faults").

    faults.py CUSTOS_BINARY [SCENARIO ...]

Scenarios (all by default), each against real components and under load
from four writers; each prints one line `faults: NAME: {figures}` and the
suite exits non-zero, saying why, when anything it checks does not hold:

  sqlite-kill9   SIGKILL of a server on SQLite under load, then a restart:
                 every acknowledged event is there, the chain verifies,
                 and the dashboards' counts (held in memory up to a second
                 when it was killed) equal the ledger's entries.
  pg-restart     PostgreSQL stopped for 5 s under load (two replicas):
                 requests during the outage get 503 (no other 5xx, none
                 left hanging), both replicas accept again by themselves,
                 every acknowledged event is there, the chain verifies.
  pg-hung        PostgreSQL frozen (SIGSTOP) for 10 s: ingest is answered
                 503 within the commit timeout, a read within the read
                 timeout, /readyz says unready; after
                 SIGCONT writing resumes; nothing acknowledged is lost.
  disk-full      SQLite on a 64 MiB tmpfs: below the watermark events get
                 503 and reads go on; then, the watermark off, the disk
                 filled to the last byte: writes fail whole (503), nothing
                 is corrupted; space given back: writing resumes by itself;
                 `custos verify` and SQLite's integrity check pass.
                 Needs root (mount); skipped, and said so, otherwise.
  clock-jumps    Two replicas on PostgreSQL, one under libfaketime: its
                 clock stepped back an hour (it records at the newest
                 entry's time; the compliance clock check fails), then an
                 hour ahead (it refuses to commit, 503 saying why, and
                 /readyz says unready; the other replica records at the
                 right time), then set right (it records again): seqs and
                 commit times never go backwards, none lies in the future,
                 the chain verifies. Skipped, and said so, without
                 libfaketime.
  tail-across-replicas
                 Two replicas on PostgreSQL: a live tail on one shows each
                 event sent to the other (LISTEN/NOTIFY), with the delay.
  api-conformance
                 schemathesis against /api/openapi.json with an API key:
                 no 5xx, every answer as the document describes it (status,
                 content type, headers, body schema), invalid input refused,
                 authentication enforced. Its report (JUnit, NDJSON and the
                 output) is kept in ~/.cache/custos/artefacts/schemathesis
                 ($CUSTOS_ARTEFACTS). Skipped, and said so, without it.
"""

import base64
import collections
import http.cookiejar as cookiejar
import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMIT_TIMEOUT = 3  # ledger.commit_timeout_secs for these servers
# An ingest request is answered a second after the commit timeout at the
# latest; 3 s more for a noisy machine (a hung request would take 13 s, the
# writers' own timeout).
ANSWER_BOUND = COMMIT_TIMEOUT + 1 + 3
READ_TIMEOUT = 3  # server.read_timeout_secs for these servers
FAKETIME = [
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
]


class Failed(Exception):
    pass


def check(ok, why):
    if not ok:
        raise Failed(why)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def http(method, url, body=None, headers=None, timeout=30, opener=None):
    """(status, parsed body or None, seconds); status 0 when unanswered."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    started = time.monotonic()
    try:
        r = (opener.open if opener else urllib.request.urlopen)(req, timeout=timeout)
        raw = r.read()
        status = r.status
    except urllib.error.HTTPError as e:
        raw, status = e.read(), e.code
    except Exception:
        return 0, None, time.monotonic() - started
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = None
    return status, parsed, time.monotonic() - started


class Env:
    """One scenario's work directory, processes and environment."""

    def __init__(self, binary, name):
        self.binary = binary
        self.work = tempfile.mkdtemp(prefix=f"custos-faults-{name}-")
        os.chmod(self.work, 0o711)  # the postgres user reaches its directory
        self.procs = {}
        self.pg = None
        self.mounts = []
        # Nothing of the caller's own Custos settings (a database URL would
        # send the SQLite scenarios to PostgreSQL).
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CUSTOS_")}
        self.loads = []
        self.env.update({
            "CUSTOS_KEK": base64.b64encode(secrets.token_bytes(32)).decode(),
            "CUSTOS_LOG__FILTER": "warn",
            "CUSTOS_ADMIN_USERNAME": "admin",
            "CUSTOS_ADMIN_PASSWORD": "faults " + secrets.token_urlsafe(18),
            "CUSTOS_BACKUP__INTERVAL_HOURS": "0",
            "CUSTOS_LEDGER__COMMIT_TIMEOUT_SECS": str(COMMIT_TIMEOUT),
            "CUSTOS_SERVER__READ_TIMEOUT_SECS": str(READ_TIMEOUT),
        })

    def postgres(self):
        d = os.path.join(self.work, "pg")
        url = subprocess.run([f"{ROOT}/scripts/pg-throwaway.sh", "start", d], check=True,
                             capture_output=True, text=True).stdout.strip()
        self.pg = d
        self.env["CUSTOS_DATABASE__URL"] = url
        # Migrated once, before any replica starts.
        subprocess.run([self.binary, "migrate"], env=dict(self.env, CUSTOS_DATA_DIR=f"{self.work}/r0"), check=True,
                       capture_output=True)
        return url

    def pg_pids(self):
        """The postmaster and its children."""
        pid = int(open(os.path.join(self.pg, "data", "postmaster.pid")).readline())
        kids = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
        return [pid] + [int(k) for k in kids]

    def start(self, i, data_dir=None, extra=None, preload=None):
        """Starts replica `i` (again, on the same port and directory)."""
        old = self.procs.get(i)
        port = old["port"] if old else free_port()
        data = data_dir or (old["data"] if old else os.path.join(self.work, f"r{i}"))
        env = dict(self.env, CUSTOS_DATA_DIR=data, CUSTOS_SERVER__BIND=f"127.0.0.1:{port}")
        env.update(extra or (old["extra"] if old else {}))
        if preload:
            env["LD_PRELOAD"] = preload
        log = open(os.path.join(self.work, f"r{i}.log"), "ab")
        p = subprocess.Popen([self.binary, "serve"], env=env, stdout=log, stderr=log)
        self.procs[i] = {"proc": p, "port": port, "data": data, "extra": extra or (old["extra"] if old else {}),
                         "preload": preload}
        started = time.monotonic()
        while time.monotonic() - started < 60:
            if p.poll() is not None:
                raise Failed(f"replica {i} exited at start-up: {self.tail(i)}")
            if http("GET", self.base(i) + "/readyz", timeout=2)[0] == 200:
                return time.monotonic() - started
            time.sleep(0.2)
        raise Failed(f"replica {i} did not become ready in 60 s: {self.tail(i)}")

    def base(self, i):
        return f"http://127.0.0.1:{self.procs[i]['port']}"

    def tail(self, i):
        try:
            return open(os.path.join(self.work, f"r{i}.log"), errors="replace").read()[-1500:]
        except OSError:
            return ""

    def kill9(self, i):
        p = self.procs[i]["proc"]
        p.send_signal(signal.SIGKILL)
        p.wait()

    def stop(self, i):
        p = self.procs[i]["proc"]
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=40)
            except subprocess.TimeoutExpired:
                raise Failed(f"replica {i} did not stop within 40 s of SIGTERM")

    def cli(self, *args, data_dir=None):
        env = dict(self.env, CUSTOS_DATA_DIR=data_dir or os.path.join(self.work, "r0"))
        return subprocess.run([self.binary, *args], env=env, capture_output=True, text=True, timeout=600)

    def verify(self, data_dir=None):
        """`custos verify --with-kek` over the whole ledger: its entry count."""
        args = ["verify", "--with-kek"]
        if self.pg:
            args += ["--database", self.env["CUSTOS_DATABASE__URL"]]
        r = self.cli(*args, data_dir=data_dir)
        check(r.returncode == 0 and "ledger is INTACT" in r.stdout, f"the chain does not verify: {r.stdout}{r.stderr}")
        for line in r.stdout.splitlines():
            if " entries, " in line:
                return int(line.split(": ", 1)[1].split(" entries")[0])
        return None

    def close(self):
        for load in self.loads:
            load.stopping.set()
        if self.pg:
            try:
                for pid in self.pg_pids():
                    os.kill(pid, signal.SIGCONT)
            except (OSError, ValueError):
                pass
        for i in list(self.procs):
            p = self.procs[i]["proc"]
            if p.poll() is None:
                p.kill()
                p.wait()
        if os.environ.get("FAULTS_KEEP"):
            # For a post-mortem: the work directory, and PostgreSQL running.
            print(f"faults: kept {self.work} and {self.env.get('CUSTOS_DATABASE__URL', 'no PostgreSQL')} "
                  "(FAULTS_KEEP)", file=sys.stderr)
            return
        if self.pg:
            subprocess.run([f"{ROOT}/scripts/pg-throwaway.sh", "stop", self.pg], capture_output=True)
        for m in self.mounts:
            subprocess.run(["umount", "-l", m], capture_output=True)
        shutil.rmtree(self.work, ignore_errors=True)


def sign_in(env, i):
    """An opener signed in as the first administrator."""
    jar = cookiejar.CookieJar()
    op = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a, **k):
            return None

    op.add_handler(NoRedirect())
    op.jar = jar
    form = urllib.parse.urlencode({"username": "admin", "password": env.env["CUSTOS_ADMIN_PASSWORD"],
                                   "next": "/"}).encode()
    try:
        op.open(urllib.request.Request(env.base(i) + "/auth/login", data=form), timeout=15)
    except urllib.error.HTTPError as e:
        check(e.code == 303, f"sign-in answered {e.code}")
    return op


def api_key(env, i):
    op = sign_in(env, i)
    req = urllib.request.Request(
        env.base(i) + "/rpc/create_api_key",
        data=urllib.parse.urlencode({"name": "faults", "scopes": "ingest,read"}).encode(),
        headers={"Origin": env.base(i), "Accept": "application/json"})
    token = json.load(op.open(req, timeout=15))["token"]
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


def event(action, n, pad=0, shift=0):
    e = {"id": str(uuid.uuid4()), "occurred_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + shift)),
         "category": "data_access", "action": action, "outcome": "success",
         "actor": {"id": f"w{n}", "kind": "user"}, "source": {"application": "faults"}}
    if pad:
        e["details"] = {"pad": secrets.token_hex(pad // 2)}
    return e


class Load:
    """Four writers posting batches of 20 events, spread over `bases`; every
    answer is classified, acknowledged ids kept."""

    def __init__(self, env, bases, auth, action, pad=0, batch=20, timeout=COMMIT_TIMEOUT + 10):
        env.loads.append(self)
        self.bases, self.auth, self.action, self.pad, self.batch = bases, auth, action, pad, batch
        self.timeout = timeout
        self.acked, self.statuses, self.slowest = [], collections.Counter(), 0.0
        self.others = []  # (status, body) of answers that are neither 2xx nor 503
        self.first_ok_after = {}  # mark -> monotonic time of the first 2xx after it
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self.writer, args=(n,), daemon=True) for n in range(4)]
        for t in self.threads:
            t.start()

    def writer(self, n):
        i = n
        while not self.stopping.is_set():
            base = self.bases[i % len(self.bases)]
            batch = [event(self.action, n, self.pad) for _ in range(self.batch)]
            status, body, secs = http("POST", base + "/api/audit/events", batch, self.auth, timeout=self.timeout)
            with self.lock:
                self.statuses[status] += 1
                self.slowest = max(self.slowest, secs)
                if status in (200, 201):
                    self.acked.extend(e["id"] for e in batch)
                    now = time.monotonic()
                    for mark, at in list(self.first_ok_after.items()):
                        if at is None:
                            self.first_ok_after[mark] = (now, base)
                elif status != 503:
                    self.others.append((status, body))
            if status != 201:
                i += 1  # another replica next time
                time.sleep(0.05)
            time.sleep(0.01)

    def mark(self, name):
        with self.lock:
            self.first_ok_after[name] = None

    def reset(self):
        with self.lock:
            self.statuses, self.slowest, self.others = collections.Counter(), 0.0, []

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join()


def stored_ids(base, auth, action):
    ids, cursor = set(), None
    while True:
        q = f"action={action}&limit=1000" + (f"&cursor={urllib.parse.quote(cursor)}" if cursor else "")
        status, page, _ = http("GET", base + "/api/audit?" + q, headers=auth, timeout=120)
        check(status == 200, f"reading events back answered {status}: {page}")
        ids.update(e["id"] for e in page["items"])
        cursor = page.get("next_cursor")
        if not cursor:
            return ids


def all_acked_present(load, base, auth):
    missing = set(load.acked) - stored_ids(base, auth, load.action)
    check(load.acked, "no event was acknowledged")
    check(not missing, f"{len(missing)} of {len(load.acked)} acknowledged events are missing")
    return len(load.acked)


def micros(rfc3339):
    """An RFC 3339 time from the API as microseconds since the epoch."""
    import datetime
    return int(datetime.datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp() * 1_000_000)


def report(name, **figures):
    print(f"faults: {name}: {json.dumps(figures)}", flush=True)


# ---------------------------------------------------------------- scenarios


def sqlite_kill9(env):
    env.start(0)
    auth = api_key(env, 0)
    load = Load(env, [env.base(0)], auth, "faults.kill9")
    time.sleep(4)
    env.kill9(0)
    killed = time.monotonic()
    db = os.path.join(env.work, "r0", "custos.db")
    # The dashboards' counts the killed server held in memory (written about
    # once a second, in chunks): the restart counts them from the ledger,
    # but for the keys a write stopped between two chunks had written.
    uncounted = sqlite3.connect(db).execute(
        "SELECT COALESCE(SUM(through_seq - from_seq + 1), 0) FROM ledger_rollup_pending").fetchone()[0]
    time.sleep(0.5)
    restart_s = env.start(0)
    down_s = time.monotonic() - killed
    load.stop()
    acked = all_acked_present(load, env.base(0), auth)
    env.stop(0)
    entries = env.verify()
    conn = sqlite3.connect(db)
    counted = conn.execute("SELECT COALESCE(SUM(count), 0) FROM audit_rollups WHERE dimension = 'total'").fetchone()[0]
    stored = conn.execute("SELECT COUNT(*) FROM ledger_entries").fetchone()[0]
    pending = conn.execute("SELECT COUNT(*) FROM ledger_rollup_pending").fetchone()[0]
    progress = conn.execute("SELECT COUNT(*) FROM ledger_rollup_progress").fetchone()[0]
    check(counted == stored and pending == 0 and progress == 0,
          f"the dashboards count {counted} events where the ledger holds {stored} ({pending} ranges left uncounted, "
          f"{progress} writes left unfinished)")
    # Every dimension that counts each event once (written in key order,
    # 'total' last: a write stopped between chunks had written the others).
    for dim in ("action", "category", "outcome", "severity"):
        n = conn.execute("SELECT COALESCE(SUM(count), 0) FROM audit_rollups WHERE dimension = ?", (dim,)).fetchone()[0]
        check(n == stored, f"the dashboards' {dim} counts add up to {n} where the ledger holds {stored} events")
    report("sqlite-kill9", acked=acked, missing=0, restart_to_ready_s=round(restart_s, 2),
           down_s=round(down_s, 1), entries=entries, chain="intact",
           uncounted_at_kill=uncounted, counted_after_restart=counted)


def pg_restart(env):
    env.postgres()
    env.start(0)
    env.start(1)
    auth = api_key(env, 0)
    load = Load(env, [env.base(0), env.base(1)], auth, "faults.pgrestart")
    time.sleep(3)
    load.reset()
    subprocess.run([f"{ROOT}/scripts/pg-throwaway.sh", "down", env.pg], check=True)
    down_at = time.monotonic()
    time.sleep(5)
    subprocess.run([f"{ROOT}/scripts/pg-throwaway.sh", "up", env.pg], check=True)
    up_at = time.monotonic()
    # Each replica accepts again by itself.
    recovered = {}
    while len(recovered) < 2 and time.monotonic() - up_at < 60:
        for i in (0, 1):
            if i not in recovered:
                s, _, _ = http("POST", env.base(i) + "/api/audit/events", event("faults.pgrestart", 9), auth,
                               timeout=COMMIT_TIMEOUT + 10)
                if s == 201:
                    recovered[i] = time.monotonic() - up_at
        time.sleep(0.2)
    time.sleep(2)
    load.stop()
    check(len(recovered) == 2, f"replicas {sorted(set((0, 1)) - set(recovered))} did not accept again within 60 s")
    check(not load.others, f"answers other than 2xx and 503 during the outage: {load.others[:3]}")
    check(load.statuses[0] == 0, f"{load.statuses[0]} requests were not answered within {load.timeout} s")
    check(load.statuses[503] > 0, f"no request met the outage: {dict(load.statuses)}")
    check(load.slowest <= ANSWER_BOUND, f"an ingest request took {load.slowest:.1f} s (bound {ANSWER_BOUND} s)")
    acked = all_acked_present(load, env.base(1), auth)
    for i in (0, 1):
        env.stop(i)
    entries = env.verify()
    report("pg-restart", outage_s=round(up_at - down_at, 1), answers=dict(sorted(load.statuses.items())),
           slowest_answer_s=round(load.slowest, 2),
           recovered_s={f"r{i}": round(s, 2) for i, s in sorted(recovered.items())},
           acked=acked, missing=0, entries=entries, chain="intact")


def pg_hung(env):
    env.postgres()
    env.start(0)
    auth = api_key(env, 0)
    load = Load(env, [env.base(0)], auth, "faults.pghung")
    time.sleep(3)
    load.reset()
    pids = env.pg_pids()
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    frozen_at = time.monotonic()
    time.sleep(1)
    ready, _, ready_s = http("GET", env.base(0) + "/readyz", timeout=COMMIT_TIMEOUT + 10)
    read, read_body, read_s = http("GET", env.base(0) + "/api/audit?limit=1", headers=auth, timeout=READ_TIMEOUT + 10)
    time.sleep(7)
    with load.lock:
        during = dict(load.statuses)
    for pid in env.pg_pids():
        os.kill(pid, signal.SIGCONT)
    thawed = time.monotonic()
    load.mark("thawed")
    while time.monotonic() - thawed < 60:
        with load.lock:
            first = load.first_ok_after.get("thawed")
        if first:
            break
        time.sleep(0.2)
    time.sleep(2)
    load.stop()
    slowest = load.slowest  # every answer, those in flight at SIGCONT too
    check(first, "writing did not resume within 60 s of SIGCONT")
    check(slowest <= ANSWER_BOUND, f"an ingest request took {slowest:.1f} s with the database frozen "
                                   f"(bound: commit timeout {COMMIT_TIMEOUT} s + 1 s, and slack)")
    check(ready == 503, f"/readyz answered {ready} with the database frozen")
    check(read == 503 and read_s <= READ_TIMEOUT + 3,
          f"a read answered {read} after {read_s:.1f} s with the database frozen (bound {READ_TIMEOUT} s): {read_body}")
    check(during.get(0, 0) == 0, f"{during.get(0)} requests were not answered within {load.timeout} s")
    check(during.get(503, 0) > 0, f"no request was answered 503 while frozen: {during}")
    check(not load.others, f"answers other than 2xx and 503: {load.others[:3]}")
    acked = all_acked_present(load, env.base(0), auth)
    env.stop(0)
    entries = env.verify()
    report("pg-hung", frozen_s=round(thawed - frozen_at, 1), commit_timeout_s=COMMIT_TIMEOUT,
           answers_while_frozen=dict(sorted(during.items())), slowest_answer_s=round(slowest, 2),
           readyz_status=ready, readyz_s=round(ready_s, 2), read_status=read, read_s=round(read_s, 2),
           resumed_s=round(first[0] - thawed, 2),
           acked=acked, missing=0, entries=entries, chain="intact")


def disk_full(env):
    disk = os.path.join(env.work, "disk")
    os.makedirs(disk)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m,mode=0700", "tmpfs", disk],
                      capture_output=True).returncode != 0:
        report("disk-full", skipped="cannot mount a tmpfs here (needs root)")
        return
    env.mounts.append(disk)
    data = os.path.join(disk, "data")
    env.start(0, data_dir=data, extra={"CUSTOS_INGEST__MIN_FREE_DISK_MB": "16"})
    auth = api_key(env, 0)
    # 4 KB events until the watermark refuses them.
    load = Load(env, [env.base(0)], auth, "faults.disk", pad=4096, batch=50)
    started = time.monotonic()
    refused = None
    while time.monotonic() - started < 120:
        with load.lock:
            if load.statuses[503]:
                refused = time.monotonic() - started
                break
        time.sleep(0.2)
    load.stop()
    check(refused is not None, f"no 503 within 120 s: {dict(load.statuses)}")
    check(not load.others, f"answers other than 2xx and 503 as the disk filled: {load.others[:3]}")
    s, body, _ = http("POST", env.base(0) + "/api/audit/events", event("faults.disk", 9), auth)
    check(s == 503 and "min_free_disk_mb" in (body or {}).get("message", ""), f"below the watermark: {s} {body}")
    s, page, _ = http("GET", env.base(0) + "/api/audit?action=faults.disk&limit=5", headers=auth)
    check(s == 200, f"a read below the watermark answered {s}")
    # The watermark off, and the last byte taken: SQLite itself meets the
    # full disk. Whatever is written fails whole; nothing is lost.
    env.stop(0)
    env.start(0, extra={"CUSTOS_INGEST__MIN_FREE_DISK_MB": "0"})
    filler = os.path.join(disk, "filler")
    with open(filler, "wb", buffering=0) as f:
        for chunk in (1 << 20, 4096, 1):
            try:
                while True:
                    f.write(b"\0" * chunk)
            except OSError:
                pass
    full_read, _, _ = http("GET", env.base(0) + "/api/audit?action=faults.disk&limit=5", headers=auth)
    big = [event("faults.disk", 9, pad=8192) for _ in range(50)]  # 400 KB: more than any free page
    full_write, body, _ = http("POST", env.base(0) + "/api/audit/events", big, auth)
    check(full_read in (200, 503) and full_write == 503 and "min_free_disk_mb" not in (body or {}).get("message", ""),
          f"with no byte free and no watermark: read {full_read}, write {full_write} {body}")
    # Space comes back: the filler removed and the disk grown.
    os.remove(filler)
    subprocess.run(["mount", "-o", "remount,size=256m", disk], check=True)
    back = time.monotonic()
    resumed = None
    while time.monotonic() - back < 30:
        s, _, _ = http("POST", env.base(0) + "/api/audit/events", event("faults.disk", 9), auth)
        if s == 201:
            resumed = time.monotonic() - back
            break
        time.sleep(0.2)
    check(resumed is not None, "writing did not resume within 30 s of space coming back")
    acked = all_acked_present(load, env.base(0), auth)
    env.stop(0)
    entries = env.verify(data_dir=data)
    integrity = sqlite3.connect(os.path.join(data, "custos.db")).execute("PRAGMA integrity_check").fetchone()[0]
    check(integrity == "ok", f"SQLite integrity check: {integrity}")
    report("disk-full", tmpfs_mb=64, min_free_disk_mb=16, refused_after_s=round(refused, 1),
           answers=dict(sorted(load.statuses.items())), read_below_watermark=200,
           no_space_left_no_watermark={"read": full_read, "write": full_write}, resumed_s=round(resumed, 2),
           acked=acked, missing=0, entries=entries, chain="intact", sqlite_integrity="ok")


def clock_jumps(env):
    lib = next((p for p in FAKETIME if os.path.exists(p)), None)
    if not lib:
        report("clock-jumps", skipped="libfaketime is not installed (apt-get install faketime)")
        return
    env.postgres()
    offset = os.path.join(env.work, "faketime")
    with open(offset, "w") as f:
        f.write("+0\n")
    faked = {"FAKETIME_TIMESTAMP_FILE": offset, "FAKETIME_CACHE_DURATION": "1",
             "FAKETIME_DONT_FAKE_MONOTONIC": "1", "FAKETIME_DONT_RESET": "1"}
    env.start(0)
    env.start(1, extra=faked, preload=lib)
    auth = api_key(env, 0)

    def clock_check(i):
        # Signed in afresh: a session from before a jump may have expired.
        s, r, _ = http("GET", env.base(i) + "/api/compliance", opener=sign_in(env, i),
                       headers={"Accept": "application/json"})
        check(s == 200, f"compliance on replica {i} answered {s}")
        return next(c for c in r["checks"] if c["id"] == "clock")

    def post(i, n, shift=0):
        # Events from the replica's own machine, whose clock is shifted too
        # (one an hour behind would refuse events from the right time as
        # more than 5 minutes in the future).
        batch = [event("faults.clock", n, shift=shift) for _ in range(5)]
        s, r, _ = http("POST", env.base(i) + "/api/audit/events", batch, auth)
        check(s == 201, f"ingest on replica {i} answered {s}: {r}")
        return r["events"]

    def jump(to):
        with open(offset, "w") as f:
            f.write(to + "\n")
        time.sleep(2.5)  # the cache lasts a second

    load = Load(env, [env.base(0), env.base(1)], auth, "faults.clock")
    time.sleep(2)
    before = clock_check(1)["status"]
    newest_before = max(e["recorded_at"] for e in post(0, 0))
    jump("-3600")
    back = post(1, 1, shift=-3600)
    behind = clock_check(1)
    time.sleep(2)
    jump("+3600")
    # An hour ahead: the replica refuses to commit (its times would hold
    # everyone's back for the hour) and says so; it leaves the rotation.
    refused_status, refused, _ = http("POST", env.base(1) + "/api/audit/events",
                                      [event("faults.clock", 2, shift=3600)], auth)
    check(refused_status == 503 and "ahead of the database server" in (refused or {}).get("message", ""),
          f"an hour ahead, ingest on that replica answered {refused_status}: {refused}")
    ready_ahead, ready_body, _ = http("GET", env.base(1) + "/readyz")
    check(ready_ahead == 503 and "ahead" in (ready_body or {}).get("reason", ""),
          f"an hour ahead, /readyz answered {ready_ahead}: {ready_body}")
    # The other replica goes on at the right time, not held an hour ahead.
    held_on_0 = post(0, 3)
    real_now = int(time.time() * 1e6)
    other = clock_check(0)
    jump("+0")
    resumed = post(1, 4)
    time.sleep(1)
    load.stop()
    check(before == "pass", f"before any jump the clock check said {before}")
    check(behind["status"] == "fail", f"an hour behind, the clock check said {behind}")
    check(max(micros(e["recorded_at"]) for e in held_on_0) <= real_now + 5_000_000,
          "the other replica's commit times were held ahead of the real time")
    check(other["status"] == "pass", f"the other replica's clock check said {other}")
    # Every entry, in seq order: commit times never go backwards.
    rows, cursor = [], None
    while True:
        q = "limit=1000" + (f"&cursor={urllib.parse.quote(cursor)}" if cursor else "")
        s, page, _ = http("GET", env.base(0) + "/api/audit?" + q, headers=auth, timeout=120)
        check(s == 200, f"reading the ledger answered {s}")
        rows += [(e["seq"], e["recorded_at"]) for e in page["items"]]
        cursor = page.get("next_cursor")
        if not cursor:
            break
    rows.sort()
    check([r[0] for r in rows] == list(range(rows[0][0], rows[0][0] + len(rows))), "seqs have gaps or repeats")
    backwards = [(a, b) for a, b in zip(rows, rows[1:]) if b[1] < a[1]]
    check(not backwards, f"{len(backwards)} commit times go backwards (seq, recorded_at): {backwards[:3]}")
    # An hour behind, the replica recorded no earlier than the newest entry
    # before its jump (its own clock said an hour earlier).
    held = sum(1 for e in back if e["recorded_at"] >= newest_before)
    check(held == len(back), f"only {held} of {len(back)} entries were held at the ledger's newest time")
    acked = all_acked_present(load, env.base(0), auth)
    for i in (0, 1):
        env.stop(i)
    entries = env.verify()
    ahead_of_real = max(micros(r[1]) for r in rows) - int(time.time() * 1e6)
    check(ahead_of_real <= 5_000_000, f"an entry was recorded {ahead_of_real / 1e6:.0f} s in the future")
    report("clock-jumps", jumps=["-1h", "+1h", "0"], entries_read=len(rows), backward_steps=0,
           held_while_behind=f"{held}/{len(back)}", ahead_refused=f"{refused_status} (readyz {ready_ahead})",
           resumed_after_sync=len(resumed), recorded_in_future=0,
           clock_check={"before": before, "behind": behind["status"], "other_while_ahead": other["status"]},
           acked=acked, missing=0, entries=entries, chain="intact")


def tail_across_replicas(env):
    """A live tail on replica 0 hears what replica 1 commits (NOTIFY)."""
    env.postgres()
    env.start(0)
    env.start(1)
    auth = api_key(env, 0)
    req = urllib.request.Request(env.base(0) + "/api/audit/tail?action=faults.tail", headers=auth)
    stream = urllib.request.urlopen(req, timeout=30)
    first = stream.readline().decode()
    check(first.startswith("event: ready"), f"the tail began with {first!r}")
    seen, lock = {}, threading.Lock()

    def read():
        try:
            for raw in stream:
                line = raw.decode()
                if line.startswith("data: {") and '"faults.tail"' in line:
                    ev = json.loads(line[6:])
                    with lock:
                        seen.setdefault(ev["id"], time.monotonic())
        except (AttributeError, OSError, ValueError):
            pass  # the stream closed under it (the scenario ended)

    threading.Thread(target=read, daemon=True).start()
    sent, round_trips = {}, []
    for n in range(20):
        e = event("faults.tail", n)
        sent[e["id"]] = time.monotonic()
        s, r, secs = http("POST", env.base(1) + "/api/audit/events", e, auth)
        check(s == 201, f"ingest on replica 1 answered {s}: {r}")
        round_trips.append(secs * 1000)
        time.sleep(0.25)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with lock:
            if len(seen) == len(sent):
                break
        time.sleep(0.1)
    stream.close()
    missing = set(sent) - set(seen)
    check(not missing, f"the tail on replica 0 never showed {len(missing)} of {len(sent)} events sent to replica 1")
    # From sending the event to replica 1 to seeing it on replica 0's tail,
    # next to the ingest request's own round trip.
    lat = sorted((seen[i] - sent[i]) * 1000 for i in sent)
    round_trips.sort()
    for i in (0, 1):
        env.stop(i)
    report("tail-across-replicas", events=len(sent),
           shown_on_other_replica_ms={"median": round(lat[len(lat) // 2], 1), "max": round(lat[-1], 1)},
           ingest_round_trip_ms={"median": round(round_trips[len(round_trips) // 2], 1),
                                 "max": round(round_trips[-1], 1)},
           fallback_poll_s=5)


SCHEMATHESIS = os.path.expanduser("~/.cache/custos/pyvenv/bin/st")
ARTEFACTS = os.environ.get("CUSTOS_ARTEFACTS") or os.path.expanduser("~/.cache/custos/artefacts")
# Every check but positive_data_acceptance ("schema-valid data is accepted"):
# a cursor, an export id or a report file name is a value this server
# issued; no schema can say which strings those are.
CONFORMANCE_CHECKS = ["not_a_server_error", "status_code_conformance", "content_type_conformance",
                      "response_headers_conformance", "response_schema_conformance", "negative_data_rejection",
                      "missing_required_header", "unsupported_method", "allow_header_conformance",
                      "ignored_auth", "use_after_free", "ensure_resource_availability"]


def api_conformance(env):
    """schemathesis against the OpenAPI document with an API key (ingest
    and read; the admin operations answer 403) and, side by side, signed
    in as the administrator (every operation runs to its end;
    FAULTS_CONFORMANCE_ADMIN=0 leaves that pass out)."""
    st = os.environ.get("CUSTOS_SCHEMATHESIS") or SCHEMATHESIS
    if not os.path.exists(st):
        report("api-conformance", skipped=f"schemathesis is not installed at {st} (make test-tools)")
        return
    env.start(0)
    auth = api_key(env, 0)
    # Something to find.
    s, r, _ = http("POST", env.base(0) + "/api/audit/events", [event("faults.conformance", n) for n in range(20)], auth)
    check(s == 201, f"seeding events answered {s}: {r}")
    admin = sign_in(env, 0)
    cookie = "; ".join(f"{c.name}={c.value}" for c in admin.jar)
    check(cookie, "signing in set no session cookie")
    examples = os.environ.get("FAULTS_CONFORMANCE_EXAMPLES", "5")
    figures = {}
    # Two passes, each its own process with one worker (schemathesis's
    # threads share Hypothesis's lambda-source cache, which races:
    # "AST constructor recursion depth mismatch"), run side by side. The
    # administrator's pass leaves out ignored_auth: a cookie given with -H
    # is sent even when schemathesis means to leave the credentials out.
    passes = [("api_key", f"Authorization: {auth['Authorization']}", [])]
    if os.environ.get("FAULTS_CONFORMANCE_ADMIN", "1") != "0":
        passes.append(("admin_session", f"Cookie: {cookie}", ["ignored_auth"]))
    # The credentials stay out of the artefacts and the CI log: the bare
    # key and each cookie value, however a report quotes them.
    credentials = [auth["Authorization"].split(" ", 1)[1]] + [c.value for c in admin.jar if c.value]

    def redact(text):
        for secret in credentials:
            text = text.replace(secret, "<redacted>")
        return text

    runs = []
    try:
        for who, header, skipped in passes:
            out = os.path.join(ARTEFACTS, "schemathesis", who)
            shutil.rmtree(out, ignore_errors=True)
            os.makedirs(out)
            cmd = [st, "run", env.base(0) + "/api/openapi.json", "-H", header,
                   "--checks", ",".join(c for c in CONFORMANCE_CHECKS if c not in skipped),
                   "--max-examples", examples, "--workers", "1",
                   # An endless stream with no parameter: each case would
                   # only wait out the request timeout (its answers, its
                   # refusals and its end are tested in server/tests/api).
                   "--exclude-path", "/api/alerts/live",
                   "--request-timeout", "30", "--report", "junit,ndjson", "--report-dir", out]
            # Straight to a file: a pipe not read while the other pass is
            # waited for would stall this one.
            with open(os.path.join(out, "output.txt"), "w") as log:
                proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=out,
                                        env=dict(os.environ, NO_COLOR="1", SCHEMATHESIS_HOOKS=""))
            runs.append((who, out, proc, time.monotonic()))
        deadline, ended = time.monotonic() + 1500, {}
        while len(ended) < len(runs) and time.monotonic() < deadline:
            for who, _, proc, started in runs:
                if who not in ended and proc.poll() is not None:
                    ended[who] = time.monotonic() - started
            time.sleep(0.5)
        for who, out, proc, started in runs:
            if proc.poll() is None:  # past the deadline: reported as failed below
                proc.kill()
                proc.wait()
            with open(os.path.join(out, "output.txt"), errors="replace") as f:
                summary = [line for line in f if " generated, " in line]
            figures[who] = {"cases": summary[0].strip() if summary else "?",
                            "seconds": round(ended.get(who, time.monotonic() - started))}
    finally:
        # However this ends (a failure, SIGTERM), no pass outlives it and
        # every report left behind is redacted.
        for _, out, proc, _ in runs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for folder, _, names in os.walk(out):
                for name in names:
                    path = os.path.join(folder, name)
                    with open(path, errors="replace") as f:
                        text = f.read()
                    if redact(text) != text:
                        with open(path, "w") as f:
                            f.write(redact(text))
    for who, out, proc, _ in runs:
        with open(os.path.join(out, "output.txt"), errors="replace") as f:
            text = f.read()
        check(proc.returncode == 0, f"schemathesis ({who}) found problems (report in {out}):\n{text[-8000:]}")
    s, _, _ = http("GET", env.base(0) + "/readyz")
    check(s == 200, f"the server is not ready after the runs: {s}")
    # The administrator's session ends with the run (best effort: the
    # throw-away server stops next).
    try:
        admin.open(urllib.request.Request(env.base(0) + "/auth/logout", data=b"",
                                          headers={"Origin": env.base(0)}), timeout=15)
    except urllib.error.HTTPError as e:
        if e.code not in (200, 303):
            print(f"faults: api-conformance: signing out answered {e.code}", file=sys.stderr)
    paths = http("GET", env.base(0) + "/api/openapi.json")[1]["paths"]
    report("api-conformance", operations=sum(len(ops) for ops in paths.values()), max_examples=examples,
           server_errors=0, schema_violations=0, report=os.path.join(ARTEFACTS, "schemathesis"), **figures)


SCENARIOS = {"sqlite-kill9": sqlite_kill9, "pg-restart": pg_restart, "pg-hung": pg_hung,
             "disk-full": disk_full, "clock-jumps": clock_jumps, "tail-across-replicas": tail_across_replicas,
             "api-conformance": api_conformance}


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    binary = os.path.abspath(sys.argv[1])
    names = sys.argv[2:] or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        sys.exit(f"faults: unknown scenario(s) {unknown}; known: {list(SCENARIOS)}")
    def terminated(signum, frame):
        raise Failed(f"stopped by signal {signum}")

    signal.signal(signal.SIGTERM, terminated)
    for name in names:
        env = Env(binary, name)
        started = time.monotonic()
        try:
            SCENARIOS[name](env)
        except Exception as e:  # noqa: BLE001 (every failure says which scenario, with the logs)
            print(f"faults: {name} FAILED: {type(e).__name__ + ': ' if not isinstance(e, Failed) else ''}{e}",
                  file=sys.stderr)
            for i in env.procs:
                print(f"--- replica {i} log (end)\n{env.tail(i)}", file=sys.stderr)
            sys.exit(1)
        finally:
            env.close()
        print(f"faults: {name} took {time.monotonic() - started:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
