#!/usr/bin/env bash
# Proves an image archive built by docker/build-image.sh, without a Docker engine:
#
#   docker/smoke-image.sh target/image/realtime-<arch>.oci.tar
#
# It unpacks the image and runs its ENTRYPOINT + CMD as the image config says (user, env,
# workdir), chrooted into the unpacked root and in a PID namespace of its own (so tini is PID 1),
# with the environment of the self-hosted compose service (docker/docker-compose.yml, with the
# values of Supabase's .env.example), against a throwaway PostgreSQL set up as the self-hosted
# stack sets it up (superuser supabase_admin, password auth over TCP, wal_level=logical, the
# `supabase_realtime` publication and roles of realtime-testkit's bootstrap, the `_realtime`
# schema of volumes/db/realtime.sql) and reachable as `db:5432`. An arm64 image runs under
# qemu-user 8 or newer (binfmt_misc, registered here). Then, inside the same root:
#   1. the compose healthcheck, verbatim, with the image's own /bin/sh and curl;
#   2. the Supabase CLI's one-shot `/app/bin/realtime eval …health_check("realtime-dev")`
#      through the entrypoint (exit 0), and the same for an unknown tenant (exit 1);
# and from outside it:
#   3. supabase-js's realtime client on /socket/websocket with Host
#      realtime-dev.supabase-realtime: broadcast and postgres_changes;
#   4. SIGTERM to PID 1: exit within 10 s, replication slots dropped.
# It prints the image size and each check's result, and exits non-zero if any check fails.
# Everything runs in private network and mount namespaces: ports 4000 and 5432 are the loopback
# of that namespace only, and nothing stays mounted afterwards. Needs root, Node.js (the
# supabase-js test's node_modules under tests/js are installed when missing) and the PostgreSQL
# server binaries (/usr/lib/postgresql/<newest>/bin, or REALTIME_TEST_PG_BIN).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

archive=${1:-}
[ -n "$archive" ] && [ -f "$archive" ] || { echo "usage: docker/smoke-image.sh target/image/realtime-<arch>.oci.tar" >&2; exit 2; }
archive=$(realpath "$archive")
[ "$(id -u)" = 0 ] || { echo "smoke-image.sh: run as root (chroot, namespaces, runuser)" >&2; exit 1; }

# What needs the network comes first, outside the namespaces: supabase-js for the client and,
# for an arm64 image on an amd64 host, a qemu-user recent enough. qemu-user before 8 refuses
# prctl(PR_SET_CHILD_SUBREAPER), which `tini -s` needs, and bookworm's qemu-user-static is 7.2:
# then the static qemu-aarch64 of the distribution's backports is unpacked (not installed)
# under target/image/qemu-user.
if [ -z "${SMOKE_IN_NAMESPACES:-}" ]; then
  if [ ! -d tests/js/node_modules/@supabase/realtime-js ]; then
    (cd tests/js && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  fi
  image_arch=$(python3 - "$archive" <<'EOF'
import json, sys, tarfile
t = tarfile.open(sys.argv[1])
blob = lambda d: json.load(t.extractfile("blobs/" + d.replace(":", "/")))
index = json.load(t.extractfile("index.json"))
print(blob(blob(index["manifests"][0]["digest"])["config"]["digest"])["architecture"])
EOF
)
  host_arch=$(dpkg --print-architecture)
  qemu=""
  if [ "$image_arch" != "$host_arch" ]; then
    [ "$image_arch" = arm64 ] && [ "$host_arch" = amd64 ] || { echo "cannot run $image_arch images on $host_arch" >&2; exit 1; }
    qemu_major() { "$1" --version 2>/dev/null | sed -n 's/.*version \([0-9]*\)\..*/\1/p' | head -1; }
    qemu=/usr/bin/qemu-aarch64-static
    if ! [ "$(qemu_major "$qemu")" -ge 8 ] 2>/dev/null; then
      qemu=$repo/target/image/qemu-user/usr/bin/qemu-aarch64
      if ! [ "$(qemu_major "$qemu")" -ge 8 ] 2>/dev/null; then
        apt_dir=$(mktemp -d /tmp/realtime-smoke-apt.XXXXXX)
        mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/debs"
        echo "deb http://deb.debian.org/debian $(. /etc/os-release && echo "$VERSION_CODENAME")-backports main" >"$apt_dir/sources.list"
        apt_opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o Dir::Etc::SourceParts=/nonexistent
          -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache" -o Dir::State::status=/dev/null)
        nice -n 19 apt-get "${apt_opts[@]}" update -qq
        (cd "$apt_dir/debs" && nice -n 19 apt-get "${apt_opts[@]}" download qemu-user 2>/dev/null)
        mkdir -p "$repo/target/image/qemu-user"
        dpkg-deb --fsys-tarfile "$apt_dir"/debs/qemu-user_*.deb | tar -x -C "$repo/target/image/qemu-user" ./usr/bin/qemu-aarch64
        rm -rf "$apt_dir"
      fi
    fi
  fi
  exec unshare --net --mount --propagation private env SMOKE_IN_NAMESPACES=1 SMOKE_QEMU="$qemu" "$0" "$@"
fi
ip link set lo up

# ---------------------------------------------------------------------------------------------
results=()
failed=0
check() { # check NAME OK(0|1) DETAIL
  local mark=PASS
  if [ "$2" != 0 ]; then mark=FAIL; failed=1; fi
  results+=("$mark  $1${3:+: $3}")
  echo "-- $mark  $1${3:+: $3}"
}

work=$(mktemp -d /tmp/realtime-smoke.XXXXXX)
chmod 0755 "$work"
root=$work/root
pg_bin=${REALTIME_TEST_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
server_ns_pid=""
cleanup() {
  set +e
  [ -n "$server_ns_pid" ] && kill -KILL "$server_ns_pid" 2>/dev/null
  [ -f "$work/pgdata/postmaster.pid" ] && runuser -u postgres -- "$pg_bin/pg_ctl" -D "$work/pgdata" -m immediate stop >/dev/null 2>&1
  umount -R "$root/proc" "$root/dev" 2>/dev/null
  if [ -n "${SMOKE_KEEP:-}" ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

# --- unpack the image --------------------------------------------------------------------------
mkdir -p "$work/oci" "$root"
tar -xf "$archive" -C "$work/oci"
python3 - "$work/oci" "$work" <<'EOF'
import json, os, sys
oci, work = sys.argv[1], sys.argv[2]
blob = lambda d: os.path.join(oci, "blobs", *d.split(":"))
index = json.load(open(os.path.join(oci, "index.json")))
manifest = json.load(open(blob(index["manifests"][0]["digest"])))
config = json.load(open(blob(manifest["config"]["digest"])))
c = config.get("config", {})
with open(os.path.join(work, "layers"), "w") as f:
    for layer in manifest["layers"]:
        f.write(blob(layer["digest"]) + "\n")
def nul(path, items):
    with open(os.path.join(work, path), "wb") as f:
        f.write(b"".join(s.encode() + b"\0" for s in items))
nul("argv", (c.get("Entrypoint") or []) + (c.get("Cmd") or []))
nul("entrypoint", c.get("Entrypoint") or [])
nul("image-env", c.get("Env") or [])
with open(os.path.join(work, "meta"), "w") as f:
    f.write(f"arch={config['architecture']}\nuser={c.get('User') or 'root'}\nworkdir={c.get('WorkingDir') or '/'}\n")
EOF
. "$work/meta"
layer_bytes=0
while read -r layer; do
  # Whiteouts can't occur in an image FROM scratch with COPY-only layers; refuse rather than guess.
  if tar -tzf "$layer" | grep '\.wh\.' >/dev/null; then echo "layer $layer has whiteouts" >&2; exit 1; fi
  layer_bytes=$((layer_bytes + $(gzip -dc "$layer" | wc -c)))
  tar -xzpf "$layer" --numeric-owner -C "$root"
done <"$work/layers"
mapfile -d '' argv <"$work/argv"
mapfile -d '' entrypoint <"$work/entrypoint"
mapfile -d '' image_env <"$work/image-env"

mb() { awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1e6 }'; }
files_bytes=$(find "$root" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')
echo "== image $archive ($arch)"
echo "   size: $(mb "$layer_bytes") uncompressed (layer tars), $(mb "$files_bytes") in files, $(mb "$(stat -c %s "$archive")") compressed archive"
echo "   user=$user workdir=$workdir"
echo "   entrypoint+cmd: ${argv[*]}"
( cd "$root" && find . -type f -printf '%s %p\n' | sort -rn | head -20 |
    awk '{ printf "   %8.2f MB  %s\n", $1 / 1e6, substr($2, 2) }' ) || true
size_mb=$(awk -v b="$layer_bytes" 'BEGIN { printf "%.1f", b / 1e6 }')
awk -v s="$size_mb" 'BEGIN { exit !(s <= 30) }' && r=0 || r=1
check "image size ≤ 30 MB uncompressed" $r "$size_mb MB"

# --- arm64 on an amd64 host: qemu-user through binfmt_misc ------------------------------------
if [ -n "${SMOKE_QEMU:-}" ]; then
  [ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  entry=/proc/sys/fs/binfmt_misc/qemu-aarch64
  if [ -e "$entry" ] && ! { grep -qx "interpreter $SMOKE_QEMU" "$entry" && grep -q '^flags:.*F' "$entry"; }; then
    echo -1 >"$entry" # registered with another interpreter or without F: replace it
  fi
  if [ ! -e "$entry" ]; then
    # F: the interpreter is opened now, so it also runs inside the chroot.
    printf '%s' ':qemu-aarch64:M::\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:'"$SMOKE_QEMU"':F' \
      >/proc/sys/fs/binfmt_misc/register
  fi
  echo "   running under qemu-user: $SMOKE_QEMU ($("$SMOKE_QEMU" --version | head -1))"
fi

# --- PostgreSQL as the self-hosted stack sets it up, reachable as db:5432 ----------------------
pg_password=your-super-secret-and-long-postgres-password
jwt_secret=your-super-secret-jwt-token-with-at-least-32-characters-long
mkdir -p "$work/pgdata" "$work/pgsock"
chown postgres: "$work/pgdata" "$work/pgsock"
printf '%s\n' "$pg_password" >"$work/pgpass" && chown postgres: "$work/pgpass"
touch "$work/postgres.log" && chown postgres: "$work/postgres.log"
runuser -u postgres -- "$pg_bin/initdb" -D "$work/pgdata" -U supabase_admin --pwfile="$work/pgpass" \
  --auth-local=trust --auth-host=scram-sha-256 >"$work/initdb.log" 2>&1
cat >>"$work/pgdata/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = 5432
unix_socket_directories = '$work/pgsock'
wal_level = logical
max_replication_slots = 10
max_wal_senders = 10
fsync = off
EOF
runuser -u postgres -- "$pg_bin/pg_ctl" -D "$work/pgdata" -l "$work/postgres.log" -w start >/dev/null
psql_cmd="$pg_bin/psql -X -q -v ON_ERROR_STOP=1 -h $work/pgsock -U supabase_admin -d postgres"
sql() { runuser -u postgres -- $psql_cmd -At "$@"; }
# The roles, schemas and publication the supabase/postgres image provides (realtime-testkit).
sed -n '/BOOTSTRAP_SQL: &str = r#"/,/^"#;/p' crates/realtime-testkit/src/bootstrap.rs | sed '1d;$d' >"$work/bootstrap.sql"
sql -f "$work/bootstrap.sql" >/dev/null
# docker/volumes/db/realtime.sql of the self-hosted bundle, and a table for postgres_changes.
sql >/dev/null <<'EOF'
create schema if not exists _realtime;
alter schema _realtime owner to supabase_admin;
create table public.smoke_messages (id bigint generated always as identity primary key, body text);
grant select on public.smoke_messages to anon, authenticated;
alter publication supabase_realtime add table public.smoke_messages;
EOF
echo "   postgres $("$pg_bin/postgres" --version | awk '{print $3}') on db:5432 (wal_level=logical)"

# --- what Docker gives a container: /dev, /proc, /etc/hosts, /etc/resolv.conf, /etc/hostname --
hostname=3f2a1c9b7d10
mkdir -p "$root/dev" "$root/proc" "$root/sys"
mount -t tmpfs -o mode=0755,nosuid tmpfs "$root/dev"
for node in "null 1 3" "zero 1 5" "full 1 7" "random 1 8" "urandom 1 9" "tty 5 0"; do
  set -- $node; mknod -m 0666 "$root/dev/$1" c "$2" "$3"
done
ln -s /proc/self/fd "$root/dev/fd"
ln -s /proc/self/fd/0 "$root/dev/stdin"
ln -s /proc/self/fd/1 "$root/dev/stdout"
ln -s /proc/self/fd/2 "$root/dev/stderr"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.0.1\tdb\n127.0.0.1\t%s realtime-dev.supabase-realtime\n' "$hostname" >"$root/etc/hosts"
echo 'nameserver 127.0.0.11' >"$root/etc/resolv.conf"
echo "$hostname" >"$root/etc/hostname"

# The user of the image config (name or uid[:gid]), resolved in the image's own /etc/passwd.
user_name=${user%%:*}
if [[ "$user_name" =~ ^[0-9]+$ ]]; then uid=$user_name; gid=${user#*:}; [ "$gid" != "$user" ] || gid=$uid; home=/
else
  IFS=: read -r _ _ uid gid _ home _ < <(grep "^$user_name:" "$root/etc/passwd") \
    || { echo "user $user_name is not in the image's /etc/passwd" >&2; exit 1; }
fi

# --- the container's environment: image ENV, then compose `environment:` with .env values -------
anon_key=$(python3 - "$jwt_secret" <<'EOF'
import base64, hashlib, hmac, json, sys, time
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
body = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "." + b64(json.dumps(
    {"role": "anon", "iss": "supabase", "iat": int(time.time()), "exp": int(time.time()) + 3600}).encode())
print(body + "." + b64(hmac.new(sys.argv[1].encode(), body.encode(), hashlib.sha256).digest()))
EOF
)
export POSTGRES_HOST=db POSTGRES_PORT=5432 POSTGRES_DB=postgres POSTGRES_PASSWORD=$pg_password \
  JWT_SECRET=$jwt_secret ANON_KEY=$anon_key \
  SECRET_KEY_BASE=UpNVntn3cDxHJpq99YMc1T1AQgQpc8kfYTuRgBiYa15BLrx8etQoXz3gZv1/u2oq
# Reads docker/docker-compose.yml's `environment:` mapping and healthcheck command (the small
# subset of YAML that file uses) and interpolates ${VAR} as compose does.
python3 - docker/docker-compose.yml "$work" <<'EOF'
import json, os, re, sys
lines = open(sys.argv[1]).read().splitlines()
work = sys.argv[2]
interp = lambda s: re.sub(r"\$\{(\w+)(?::-([^}]*))?\}", lambda m: os.environ.get(m.group(1), m.group(2) or ""), s)
def scalar(v):
    v = v.strip()
    if v.startswith('"'): return json.loads(v)
    if v.startswith("'"): return v[1:-1].replace("''", "'")
    return v
env, health, i = [], None, 0
while i < len(lines):
    line = lines[i]
    if line.strip() == "environment:":
        indent = len(line) - len(line.lstrip())
        i += 1
        while i < len(lines) and (not lines[i].strip() or lines[i].lstrip().startswith("#")
                                  or len(lines[i]) - len(lines[i].lstrip()) > indent):
            s = lines[i].strip()
            if s and not s.startswith("#"):
                k, v = s.split(":", 1)
                env.append(f"{k.strip()}={interp(scalar(v))}")
            i += 1
        continue
    if '"CMD-SHELL"' in line:
        health = interp(json.loads(lines[i + 1].strip().rstrip(",")))
    i += 1
assert env and health, "environment or healthcheck not found"
open(os.path.join(work, "compose-env"), "wb").write(b"".join(e.encode() + b"\0" for e in env))
open(os.path.join(work, "healthcheck"), "w").write(health)
EOF
mapfile -d '' compose_env <"$work/compose-env"
healthcheck_cmd=$(cat "$work/healthcheck")
container_env=("${image_env[@]}" "HOSTNAME=$hostname" "HOME=$home" "${compose_env[@]}")

# in-root.py ROOT UID GID WORKDIR ENV_FILE PROC CMD...: runs CMD inside the root as the image's
# user, with the container environment, in the image's workdir; PROC=1 first mounts the /proc of
# the current PID namespace in the root. Under `unshare --pid --fork` the command is PID 1 of a
# new PID namespace, as in `docker run`; in_root (no new namespace) is like `docker exec`.
cat >"$work/in-root.py" <<'EOF'
import os, subprocess, sys
root, uid, gid, workdir, env_file, proc = sys.argv[1:7]
argv = sys.argv[7:]
if proc == "1":
    subprocess.run(["mount", "-t", "proc", "-o", "nosuid,nodev,noexec", "proc", root + "/proc"], check=True)
env = dict(e.split("=", 1) for e in open(env_file, "rb").read().decode().split("\0") if e)
os.chroot(root)
os.chdir(workdir)
os.setgroups([])
os.setgid(int(gid))
os.setuid(int(uid))
os.execvpe(argv[0], argv, env)
EOF
in_root() { python3 "$work/in-root.py" "$root" "$uid" "$gid" "$workdir" "$work/container-env" 0 "$@"; }
printf '%s\0' "${container_env[@]}" >"$work/container-env"

# --- start the container -----------------------------------------------------------------------
echo "== starting: ${argv[*]} (as $user, uid $uid, in $workdir)"
unshare --pid --fork --kill-child \
  python3 "$work/in-root.py" "$root" "$uid" "$gid" "$workdir" "$work/container-env" 1 "${argv[@]}" \
  </dev/null >"$work/server.log" 2>&1 &
server_ns_pid=$!
pid1=""
for _ in $(seq 50); do pid1=$(pgrep -P "$server_ns_pid" | head -1) && [ -n "$pid1" ] && break; sleep 0.1; done

# 1. The compose healthcheck, verbatim (compose runs CMD-SHELL as `/bin/sh -c`), until it passes
#    (compose would allow start_period 10 s + 3 retries × 30 s).
started=$(date +%s.%N)
healthy=1
for _ in $(seq 120); do
  if in_root /bin/sh -c "$healthcheck_cmd" </dev/null >"$work/health.out" 2>&1; then healthy=0; break; fi
  kill -0 "$server_ns_pid" 2>/dev/null || break
  sleep 0.5
done
took=$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
check "compose healthcheck (/bin/sh -c 'curl -sSfL --head … /api/tenants/realtime-dev/health')" $healthy \
  "$([ $healthy = 0 ] && echo "healthy after $took s" || echo "$(tail -1 "$work/health.out")")"
if [ $healthy != 0 ]; then echo "--- server log"; tail -30 "$work/server.log"; fi

tini_nspid=$(awk '/^NSpid:/ { print $NF }' "/proc/${pid1:-none}/status" 2>/dev/null || echo "?")
server_pid=$( { [ -n "$pid1" ] && pgrep -P "$pid1"; } | head -1 || true)
server_uid="?"; server_exe="no server process"
if [ -n "$server_pid" ]; then
  server_uid=$(awk '/^Uid:/ { print $2 }' "/proc/$server_pid/status" 2>/dev/null || echo "?")
  server_exe=$(tr '\0' ' ' <"/proc/$server_pid/cmdline" 2>/dev/null | sed 's|^[^ ]*/qemu-[a-z0-9_]* ||' || true)
fi
# (Under qemu-user the command line starts with the emulator.)
pid1_cmd=$(tr '\0' ' ' <"/proc/${pid1:-none}/cmdline" 2>/dev/null | sed 's|^[^ ]*/qemu-[a-z0-9_]* ||' || true)
[ "$tini_nspid" = 1 ] && [ "${pid1_cmd%% *}" = "${entrypoint[0]}" ] && r=0 || r=1
check "ENTRYPOINT is PID 1" $r "$pid1_cmd(PID $tini_nspid in the container)"
[ "$server_uid" = "$uid" ] && [ "$uid" != 0 ] && r=0 || r=1
check "server runs as $user" $r "uid $server_uid: $server_exe"

# 2. The Supabase CLI's one-shot health check, through the entrypoint, in a container of its own.
cli_expr=$'{:ok, _} = Application.ensure_all_started(:realtime)\n{:ok, _} = Realtime.Tenants.health_check("realtime-dev")'
timeout 60 unshare --pid --fork --kill-child python3 "$work/in-root.py" "$root" "$uid" "$gid" "$workdir" \
  "$work/container-env" 0 "${entrypoint[@]}" /app/bin/realtime eval "$cli_expr" </dev/null >"$work/eval.log" 2>&1 \
  && rc=0 || rc=$?
check "/app/bin/realtime eval '…health_check(\"realtime-dev\")' exits 0" $rc "exit $rc"
[ $rc = 0 ] || tail -5 "$work/eval.log"
timeout 60 unshare --pid --fork --kill-child python3 "$work/in-root.py" "$root" "$uid" "$gid" "$workdir" \
  "$work/container-env" 0 "${entrypoint[@]}" /app/bin/realtime eval "${cli_expr/realtime-dev/no-such-tenant}" \
  </dev/null >"$work/eval-unknown.log" 2>&1 && rc=0 || rc=$?
[ $rc = 1 ] && r=0 || r=1
check "/app/bin/realtime eval '…health_check(\"no-such-tenant\")' exits 1" $r "exit $rc"

# 3. supabase-js on /socket/websocket with the gateway's Host header.
client_out=$(SMOKE_URL=ws://127.0.0.1:4000/socket SMOKE_HOST=realtime-dev.supabase-realtime \
  SMOKE_TOKEN=$anon_key NODE_PATH=$repo/tests/js/node_modules \
  SMOKE_INSERT="runuser -u postgres -- $psql_cmd -c \"insert into public.smoke_messages (body) values ('\$SMOKE_BODY')\"" \
  timeout 90 node docker/smoke-client.js 2>"$work/client.err") && rc=0 || rc=$?
check "supabase-js: /socket/websocket, Host realtime-dev.supabase-realtime, broadcast + postgres_changes" $rc "$client_out"
[ $rc = 0 ] || tail -5 "$work/client.err"

# 4. SIGTERM to PID 1, as `docker stop` does: exit within 10 s, replication slots dropped.
slots_before=$(sql -c "select string_agg(slot_name || ' (' || slot_type || ', active ' || active || ')', ', ') from pg_replication_slots")
echo "   replication slots while running: ${slots_before:-none}"
started=$(date +%s.%N)
kill -TERM "${pid1:-none}" 2>/dev/null || true
exited=1
for _ in $(seq 100); do kill -0 "$server_ns_pid" 2>/dev/null || { exited=0; break; }; sleep 0.1; done
took=$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
if [ $exited = 0 ]; then wait "$server_ns_pid" && code=0 || code=$?; server_ns_pid=""; else code="still running"; fi
check "SIGTERM: exits within 10 s" $exited "exit status $code after $took s"
sleep 1
slots_after=$(sql -c "select count(*) from pg_replication_slots")
[ -n "$slots_before" ] && [ "$slots_after" = 0 ] && r=0 || r=1
check "SIGTERM: replication slots dropped" $r "before: ${slots_before:-none}; after: $slots_after"

echo
echo "--- last lines of the container's output"
tail -8 "$work/server.log" | cut -c1-200
echo
echo "== $archive ($arch): $(mb "$layer_bytes") uncompressed"
printf '%s\n' "${results[@]}"
exit $failed
