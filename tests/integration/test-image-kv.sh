#!/usr/bin/env bash
# Smoke test of the flotilla-kv image: build it with images/build (podman here; no Docker engine
# runs on these machines), run it, use it from outside with etcdctl and from inside with
# flotillactl, check it runs as the unprivileged user and keeps data across a restart of the
# container with the same volume, and stops cleanly on SIGTERM.
# Needs root, podman with runc, and a debian:bookworm-slim base image; the base is made with
# mmdebstrap from Debian's archive when missing (no registry is reachable here).
set -euo pipefail
cd "$(dirname "$0")/../.."
if [[ $(id -u) -ne 0 ]] || ! command -v podman >/dev/null || ! command -v mmdebstrap >/dev/null; then
  [[ -n "${FLOTILLA_TEST_REQUIRE:-}" ]] && { echo "podman, mmdebstrap and root are required"; exit 1; }
  echo "skipping: needs root, podman and mmdebstrap"; exit 77
fi
conf=$(mktemp -d)
printf '[containers]\ndefault_ulimits = []\n[engine]\nruntime = "runc"\n' >"$conf/containers.conf"
printf '[storage]\ndriver = "vfs"\nrunroot = "/run/containers/storage"\ngraphroot = "/var/lib/containers/storage"\n' >"$conf/storage.conf"
export CONTAINERS_CONF=$conf/containers.conf CONTAINERS_STORAGE_CONF=$conf/storage.conf
name=flotilla-kv-smoke-$$
vol=flotilla-kv-smoke-vol-$$
port=$((27000 + RANDOM % 2000))
cleanup() { podman rm -f "$name" >/dev/null 2>&1 || true; podman volume rm -f "$vol" >/dev/null 2>&1 || true; rm -rf "$conf"; }
trap cleanup EXIT

if ! podman image exists docker.io/library/debian:bookworm-slim; then
  echo "== making debian:bookworm-slim with mmdebstrap"
  base=$(mktemp -u /tmp/bookworm-XXXXXX.tar)
  mmdebstrap --variant=minbase bookworm "$base" >/dev/null 2>&1
  podman import "$base" docker.io/library/debian:bookworm-slim >/dev/null
  rm -f "$base"
fi
echo "== images/build kv"
images/build --tag smoke kv >/dev/null
podman image prune -f >/dev/null 2>&1 || true

run() {
  podman run -d --name "$name" --network host -v "$vol:/var/lib/flotilla-kv" flotilla/kv:smoke \
    --name smoke --listen-client-urls "http://127.0.0.1:$port" --advertise-client-urls "http://127.0.0.1:$port" \
    --listen-peer-urls "http://127.0.0.1:$((port + 1))" --initial-advertise-peer-urls "http://127.0.0.1:$((port + 1))" \
    --initial-cluster "smoke=http://127.0.0.1:$((port + 1))" >/dev/null
  for _ in $(seq 1 100); do
    curl -s -m 1 "http://127.0.0.1:$port/health" 2>/dev/null | grep -q '"true"' && return 0
    sleep 0.1
  done
  podman logs "$name"; return 1
}
export ETCDCTL_API=2
echo "== run"
run
[[ $(podman inspect "$name" --format '{{.Config.User}}') == "65532:65532" ]]
[[ $(podman exec "$name" /usr/bin/flotillactl --endpoints "http://127.0.0.1:$port" kv set /smoke/a hello) == hello ]]
[[ $(etcdctl --endpoints "http://127.0.0.1:$port" get /smoke/a) == hello ]]
echo "== restart with the same volume"
podman stop -t 10 "$name" >/dev/null
podman logs "$name" 2>&1 | grep -q "Received Terminated, stopping"
podman rm "$name" >/dev/null
run
[[ $(etcdctl --endpoints "http://127.0.0.1:$port" get /smoke/a) == hello ]]
size=$(podman image inspect flotilla/kv:smoke --format '{{.Size}}')
echo "image flotilla/kv:smoke is $((size / 1024 / 1024)) MiB; smoke test passed"
