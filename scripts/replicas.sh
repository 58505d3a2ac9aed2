#!/usr/bin/env bash
# Several Custos replicas on one PostgreSQL, and kill -9 under load
# (README: Scale-out).
#
#   replicas.sh CUSTOS_BINARY [RUNS]
#
# A throw-away PostgreSQL, three `custos serve` replicas on it (one KEK,
# their own data directories and ports), an API key, then ingest from four
# writers spread over the replicas. RUNS times (default 1), while the load
# goes on, the replica holding the `alert-evaluator` lease, then the ones
# holding `notifier` and `forward:udp` (a UDP syslog destination: the
# leases held all the time), is killed with
# SIGKILL; the time until a surviving replica holds each lease the killed
# one held (its `/readyz` lists it) is that lease's failover time; the
# killed replica is started again. Then every
# event a replica acknowledged is read back, the replicas stop and `custos
# verify --with-kek` checks the chain. Prints one line of figures; exits
# non-zero, saying why, when any step does not hold.
set -euo pipefail
umask 077

custos=${1:?usage: replicas.sh CUSTOS_BINARY [RUNS]}
runs=${2:-1}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
# The postgres user reaches its directory below; nothing else is readable.
chmod 711 "$work"
driver=""
cleanup() {
  [ -n "$driver" ] && kill -9 "$driver" 2>/dev/null || true
  for f in "$work"/pid*; do [ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null || true; done
  "$root/scripts/pg-throwaway.sh" stop "$work/pg" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "replicas: $*" >&2; for f in "$work"/r*.log; do echo "--- $f" >&2; tail -5 "$f" >&2 || true; done; exit 1; }

url=$("$root/scripts/pg-throwaway.sh" start "$work/pg")
export CUSTOS_KEK="SGVyZSBpcyBhIDMyLWJ5dGUgdGVzdCBrZXkgISEhISE="
export CUSTOS_DATABASE__URL="$url" CUSTOS_LOG__FILTER=warn
export CUSTOS_ADMIN_USERNAME=admin
CUSTOS_ADMIN_PASSWORD="replicas $(python3 -c 'import secrets; print(secrets.token_urlsafe(18))')"
export CUSTOS_ADMIN_PASSWORD
export CUSTOS_BACKUP__INTERVAL_HOURS=0
# A forwarding destination takes effect without a second person's approval
# here, so that its lease is there to fail over.
export CUSTOS_POLICIES__FORWARDING__APPROVALS=0
CUSTOS_DATA_DIR="$work/r0" "$custos" migrate >/dev/null || fail "migrations failed"

# Starting replica N (on its port, with its data directory); the Python
# driver starts a killed one again the same way.
# Three distinct free ports, held open together while they are chosen.
read -r -a ports < <(python3 -c '
import socket
ss = [socket.socket() for _ in range(3)]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))')
{
  echo 'set -euo pipefail'
  for v in CUSTOS_KEK CUSTOS_DATABASE__URL CUSTOS_LOG__FILTER CUSTOS_ADMIN_USERNAME CUSTOS_ADMIN_PASSWORD CUSTOS_BACKUP__INTERVAL_HOURS CUSTOS_POLICIES__FORWARDING__APPROVALS; do
    printf 'export %s=%q\n' "$v" "${!v}"
  done
  printf 'ports=(%s)\ncustos=%q\nwork=%q\n' "${ports[*]}" "$custos" "$work"
  cat <<'SH'
CUSTOS_DATA_DIR="$work/r$1" CUSTOS_SERVER__BIND="127.0.0.1:${ports[$1]}" nohup "$custos" serve >>"$work/r$1.log" 2>&1 &
echo $! >"$work/pid$1"
for _ in $(seq 1 120); do curl -m 2 -fsS "http://127.0.0.1:${ports[$1]}/readyz" >/dev/null 2>&1 && exit 0; sleep 0.25; done
echo "replica $1 did not become ready" >&2
exit 1
SH
} >"$work/start.sh"
chmod 600 "$work/start.sh" # it holds the KEK and the admin's password
for i in 0 1 2; do bash "$work/start.sh" "$i" || fail "replica $i did not start"; done

# The load and the kills, in Python (threads, one HTTP client each).
cat >"$work/drive.py" <<'PY'
import json, os, signal, subprocess, sys, threading, time, uuid, urllib.request, urllib.parse, http.cookiejar, statistics

ports = [int(p) for p in sys.argv[1].split(",")]
runs = int(sys.argv[2])
work = sys.argv[3]
base = lambda i: f"http://127.0.0.1:{ports[i]}"

def pid_of(i):
    return int(open(f"{work}/pid{i}").read())

# An API key, made by the admin through the server function.
jar = http.cookiejar.CookieJar()
op = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **k): return None
op.add_handler(NoRedirect())
form = urllib.parse.urlencode({"username": "admin", "password": os.environ["CUSTOS_ADMIN_PASSWORD"], "next": "/"}).encode()
try:
    op.open(urllib.request.Request(base(0) + "/auth/login", data=form), timeout=10)
except urllib.error.HTTPError as e:
    if e.code != 303: raise
req = urllib.request.Request(base(0) + "/rpc/create_api_key",
    data=urllib.parse.urlencode({"name": "replicas load", "scopes": "ingest,read"}).encode(),
    headers={"Origin": base(0), "Accept": "application/json"})
token = json.load(op.open(req, timeout=10))["token"]
auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
# One SIEM destination (syslog over UDP to a local port nobody reads: every
# send succeeds), whose lease `forward:udp` fails over like the others.
doc = {"destinations": [{"id": "udp", "name": "UDP", "type": "syslog", "format": "json", "host": "127.0.0.1",
                         "port": 9, "transport": "udp", "batch_interval_ms": 0, "checkpoints": False}]}
req = urllib.request.Request(base(0) + "/api/policies/forwarding/proposals",
    data=json.dumps({"content": doc, "based_on": 0, "reason": "replicas: a destination to fail over"}).encode(),
    headers={"Origin": base(0), "Accept": "application/json", "Content-Type": "application/json"})
took = op.open(req, timeout=10)
if took.status != 200: sys.exit(f"the forwarding destination did not take effect: {took.status} {took.read()[:300]}")

acked, refused, stop = [], [0], threading.Event()
lock = threading.Lock()

def writer(n):
    i = n % len(ports)
    while not stop.is_set():
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        batch = [{"id": str(uuid.uuid4()), "occurred_at": now, "category": "data_access", "action": "replicas.load",
                  "outcome": "success", "actor": {"id": f"w{n}", "kind": "user"}, "source": {"application": "load"}}
                 for _ in range(20)]
        try:
            r = urllib.request.urlopen(urllib.request.Request(base(i) + "/api/audit/events",
                data=json.dumps(batch).encode(), headers=auth), timeout=10)
            if r.status in (200, 201):
                with lock: acked.extend(e["id"] for e in batch)
        except Exception:
            # A killed replica, or one shutting down: nothing acknowledged.
            with lock: refused[0] += 1
            i = (i + 1) % len(ports)
        time.sleep(0.02)

def held(i):
    """The leases replica i lists in /readyz (its destinations' leases are
    listed as "forward (N destination(s))": here the one, forward:udp)."""
    try:
        leases = json.load(urllib.request.urlopen(base(i) + "/readyz", timeout=2)).get("leases", [])
    except Exception:
        return set()
    return {"forward:udp" if lease.startswith("forward (") else lease for lease in leases}

def holder(lease, alive):
    for i in alive:
        if lease in held(i):
            return i
    return None

threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
for t in threads: t.start()
# The leases held all the time (the others are taken for a pass and
# released after it): each run kills the holder of each in turn and times
# the takeover of every lease the killed replica held.
LEASES = ["alert-evaluator", "notifier", "forward:udp"]
failovers = {lease: [] for lease in LEASES}
try:
    for run in range(runs):
        for target in LEASES:
            time.sleep(3)
            deadline = time.time() + 30
            while (h := holder(target, range(len(ports)))) is None:
                if time.time() > deadline:
                    sys.exit(f"nobody holds {target}; the replicas hold {[sorted(held(i)) for i in range(len(ports))]}")
                time.sleep(0.2)
            lost = held(h) & set(LEASES)
            os.kill(pid_of(h), signal.SIGKILL)
            killed_at = time.time()
            alive = [i for i in range(len(ports)) if i != h]
            while lost:
                for lease in sorted(lost):
                    if holder(lease, alive) is not None:
                        failovers[lease].append((time.time() - killed_at) * 1000)
                        lost.discard(lease)
                if time.time() - killed_at > 60: sys.exit(f"no surviving replica took {sorted(lost)} within 60 s")
                time.sleep(0.1)
            # The killed replica comes back.
            subprocess.run(["bash", f"{work}/start.sh", str(h)], check=True, timeout=90)
finally:
    stop.set()
    for t in threads: t.join()

# Every acknowledged event is there (read back a page of 1,000 at a time).
stored, cursor = set(), None
for _ in range(100_000):
    q = "action=replicas.load&limit=1000" + (f"&cursor={urllib.parse.quote(cursor)}" if cursor else "")
    page = json.load(urllib.request.urlopen(urllib.request.Request(base(1) + "/api/audit?" + q, headers=auth), timeout=60))
    stored.update(e["id"] for e in page["items"])
    cursor = page.get("next_cursor")
    if not cursor:
        break
missing = len(set(acked) - stored)
print(json.dumps({"acked": len(acked), "missing": missing, "refused_requests": refused[0],
    "failover": {lease: {"runs": len(f), "median_ms": round(statistics.median(f)), "max_ms": round(max(f)),
                         "all_ms": [round(x) for x in f]} for lease, f in failovers.items() if f}}))
PY

python3 "$work/drive.py" "$(IFS=,; echo "${ports[*]}")" "$runs" "$work" >"$work/out" &
driver=$!
wait "$driver" || fail "the load or a failover failed: $(cat "$work/out")"
driver=""
out=$(cat "$work/out")
for i in 0 1 2; do kill -TERM "$(cat "$work/pid$i")" 2>/dev/null || true; done
for i in 0 1 2; do
  for _ in $(seq 1 150); do kill -0 "$(cat "$work/pid$i")" 2>/dev/null || break; sleep 0.2; done
  kill -0 "$(cat "$work/pid$i")" 2>/dev/null && fail "replica $i did not stop within 30 s of SIGTERM"
done
acked=$(echo "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["acked"])')
missing=$(echo "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["missing"])')
[ "$missing" = 0 ] || fail "$missing of $acked acknowledged events are missing: $out"
[ "$acked" -gt 0 ] || fail "no event was acknowledged: $out"
verdict=$(CUSTOS_DATA_DIR="$work/r0" "$custos" verify --database "$url" --with-kek) || fail "the chain does not verify: $verdict"
echo "$verdict" | grep -q "ledger is INTACT" || fail "no INTACT verdict: $verdict"
entries=$(echo "$verdict" | sed -n 's/.*: \([0-9]*\) entries, .*/\1/p' | head -1)
echo "replicas: 3 replicas on one PostgreSQL, $runs run(s) of kill -9 of each lease's holder under load: $out; ${entries} entries, chain intact with their MACs"
