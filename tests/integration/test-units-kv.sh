#!/usr/bin/env bash
# units/flotilla-kv.service and .socket under a real systemd: a Debian rootfs booted with
# systemd-nspawn (no systemd runs as PID 1 on these machines). Checks Type=notify readiness and
# status, the sandbox (dynamic user, state directory), that the watchdog restarts a hung member
# with its data intact, socket activation, and a clean stop.
#   test-units-kv.sh FLOTILLA_KV_BINARY
# Needs root, systemd-nspawn and mmdebstrap; the rootfs is built once and cached.
set -euo pipefail
bin=$1
src=$(cd "$(dirname "$0")/../.." && pwd)
if [[ $(id -u) -ne 0 ]] || ! command -v systemd-nspawn >/dev/null || ! command -v mmdebstrap >/dev/null; then
  [[ -n "${FLOTILLA_TEST_REQUIRE:-}" ]] && { echo "root, systemd-nspawn and mmdebstrap are required"; exit 1; }
  echo "skipping: needs root, systemd-nspawn and mmdebstrap"; exit 77
fi
pkgs=systemd,dbus,systemd-sysv,curl,libmicrohttpd12,libcurl3-gnutls,libjansson4
root=/var/tmp/flotilla-nspawn-$(echo "$pkgs" | sha1sum | cut -c1-8)
if [[ ! -f $root/.complete ]]; then
  echo "== building the test rootfs in $root (once)"
  rm -rf "$root"
  mmdebstrap --variant=minbase --include="$pkgs" bookworm "$root" >/dev/null 2>&1
  touch "$root/.complete"
fi

# The test build is instrumented with ASan/UBSan: give the machine the runtime it links, read-only.
sanitizer_binds=()
while read -r lib; do
  [[ -e "$root$lib" ]] || sanitizer_binds+=("--bind-ro=$lib")
done < <(ldd "$bin" | awk '/=>/ {print $3}' | grep -E 'libasan|libubsan|libstdc\+\+|libgcc_s')

work=$(mktemp -d)
mkdir -p "$work/etc-flotilla"
printf 'FLOTILLA_KV_LISTEN_CLIENT_URLS=http://127.0.0.1:2379\n' >"$work/etc-flotilla/kv.env"
machine=flotilla-units-$$
systemd-nspawn -D "$root" --volatile=overlay --register=no --keep-unit --private-network --console=passive \
  --machine "$machine" --bind-ro="$bin":/usr/bin/flotilla-kv \
  --bind-ro="$src/units/flotilla-kv.service":/etc/systemd/system/flotilla-kv.service \
  --bind-ro="$src/units/flotilla-kv.socket":/etc/systemd/system/flotilla-kv.socket \
  --bind-ro="$work/etc-flotilla":/etc/flotilla "${sanitizer_binds[@]}" -b >"$work/console.log" 2>&1 &
nspawn=$!
cleanup() { kill "$nspawn" 2>/dev/null; wait "$nspawn" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# nspawn forks short-lived helpers before the container's PID 1: wait for the child that is systemd.
pid1=""
for _ in $(seq 1 100); do
  for child in $(pgrep -P "$nspawn" || true); do
    [[ $(cat "/proc/$child/comm" 2>/dev/null) == systemd ]] && pid1=$child
  done
  [[ -n "$pid1" ]] && break
  sleep 0.1
done
[[ -n "$pid1" ]] || { cat "$work/console.log"; exit 1; }
inside() { nsenter -t "$pid1" -m -u -i -n -p "$@"; }
for _ in $(seq 1 100); do
  state=$(inside systemctl is-system-running 2>/dev/null || true)
  [[ "$state" == running || "$state" == degraded ]] && break
  sleep 0.1
done
prop() { inside systemctl show flotilla-kv -p "$1" --value; }
health() { inside curl -s -m 2 http://127.0.0.1:2379/health || true; }

if ((${#sanitizer_binds[@]})); then
  # LeakSanitizer stops the process with ptrace at exit, which the unit's system call filter
  # forbids (as it should); leaks are checked by every other test.
  inside mkdir -p /run/systemd/system/flotilla-kv.service.d
  inside sh -c 'printf "[Service]\nEnvironment=ASAN_OPTIONS=detect_leaks=0\n" > /run/systemd/system/flotilla-kv.service.d/asan.conf'
  inside systemctl daemon-reload
fi

echo "== Type=notify start"
inside systemctl start flotilla-kv || { inside journalctl -u flotilla-kv --no-pager | tail -20; exit 1; }
[[ $(prop ActiveState) == active ]]
[[ $(prop StatusText) == "Serving the v2 API as member default" ]]
[[ $(health) == '{"health":"true"}' ]]
inside curl -s -XPUT http://127.0.0.1:2379/v2/keys/unit -d value=kept | grep -q '"value":"kept"'
echo "== sandbox: a dynamic user owns the state directory"
pid=$(prop MainPID)
uid=$(inside awk '/^Uid:/ {print $2}' "/proc/$pid/status")
[[ "$uid" != 0 ]]
inside test -d /var/lib/private/flotilla-kv/member/wal

echo "== watchdog: a hung member is killed and restarted, its data intact"
inside mkdir -p /run/systemd/system/flotilla-kv.service.d
inside sh -c 'printf "[Service]\nWatchdogSec=2s\n" > /run/systemd/system/flotilla-kv.service.d/test.conf'
inside systemctl daemon-reload
inside systemctl restart flotilla-kv
before=$(prop NRestarts)
inside systemctl kill --kill-whom=main --signal=SIGSTOP flotilla-kv
for _ in $(seq 1 150); do
  [[ $(prop NRestarts) -gt $before && $(prop ActiveState) == active ]] && break
  sleep 0.1
done
[[ $(prop NRestarts) -gt $before ]]
inside journalctl -u flotilla-kv --no-pager | grep -q "Watchdog timeout"
for _ in $(seq 1 50); do [[ $(health) == '{"health":"true"}' ]] && break; sleep 0.1; done
inside curl -s http://127.0.0.1:2379/v2/keys/unit | grep -q '"value":"kept"'

echo "== clean stop"
inside systemctl stop flotilla-kv
[[ $(prop ActiveState) == inactive ]] || { inside journalctl -u flotilla-kv --no-pager | tail -40; exit 1; }
[[ $(prop Result) == success ]]

echo "== socket activation: the first client starts the service"
inside systemctl start flotilla-kv.socket
[[ $(prop ActiveState) == inactive ]] || { inside journalctl -u flotilla-kv --no-pager | tail -40; exit 1; }
inside curl -s -m 5 http://127.0.0.1:2379/v2/keys/unit | grep -q '"value":"kept"'
[[ $(prop ActiveState) == active ]]
inside journalctl -u flotilla-kv --no-pager | tail -3
echo "units test passed"
