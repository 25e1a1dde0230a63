#!/usr/bin/env bash
# Builds the bridge's runtime image the way the Dockerfile's final stage lays it out — the static
# binary at /bridge, CA certificates, USER 65532:65532, ENTRYPOINT /bridge, CMD run — then runs it
# and checks it: `bridge version`, the process's UID, and a development-mode start (embedded Redis,
# sandbox badge host) whose /healthz answers 200 and which stops cleanly on SIGTERM.
#
#   scripts/image-check.sh        (as root; installs buildah, podman and runc with apt-get if missing)
#
# No registry is needed: the image is FROM scratch (buildah), with the machine's Debian CA bundle
# instead of a distroless base. Everything (image store, containers, build output) lives in one
# temporary directory that is removed at the end, so the machine's own container storage is not
# touched. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin:$HOME/go/bin"
start=$SECONDS

say() { printf 'image-check [%3ds]: %s\n' "$((SECONDS - start))" "$*"; }
fail() { printf 'image-check: FAIL: %s\n' "$*" >&2; exit 1; }

# ---- tools -------------------------------------------------------------------------------------
missing=()
for tool in buildah podman runc curl; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
[ -r /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends buildah podman runc curl ca-certificates >/dev/null
fi
[ -r /etc/ssl/certs/ca-certificates.crt ] || fail "no /etc/ssl/certs/ca-certificates.crt after installing ca-certificates"

work=$(mktemp -d "${TMPDIR:-/tmp}/image-check.XXXXXX")
# runc, the cgroupfs manager, vfs storage (no overlay mounts needed) and no default ulimits (the
# sandbox this runs in may not allow raising them); storage under $work, not /var/lib/containers.
cat >"$work/containers.conf" <<CONF
[containers]
default_ulimits = []
log_driver = "k8s-file"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$work/events.log"
CONF
export CONTAINERS_CONF="$work/containers.conf"
store=(--root "$work/storage" --runroot "$work/run" --storage-driver vfs)
podman=(podman --runtime runc --cgroup-manager cgroupfs "${store[@]}")
image=localhost/badge-bridge:image-check
name="badge-bridge-image-check-$$"
builder=""

cleanup() {
  set +e
  "${podman[@]}" rm -f -t 0 "$name" >/dev/null 2>&1
  [ -n "$builder" ] && buildah "${store[@]}" rm "$builder" >/dev/null 2>&1
  "${podman[@]}" rmi -f "$image" >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT

# ---- binary ------------------------------------------------------------------------------------
version="${VERSION:-0.0.0-image-check}"
commit="${COMMIT:-image-check}"
say "building the static binary (CGO_ENABLED=0, version $version)"
CGO_ENABLED=0 GOOS=linux go build -trimpath \
  -ldflags "-s -w -X main.version=$version -X main.commit=$commit" \
  -o "$work/bridge" ./cmd/bridge

# ---- image -------------------------------------------------------------------------------------
say "building $image FROM scratch with buildah"
builder=$(buildah "${store[@]}" from scratch)
buildah "${store[@]}" copy --quiet --chown 0:0 --chmod 0755 "$builder" "$work/bridge" /bridge >/dev/null
buildah "${store[@]}" copy --quiet --chown 0:0 --chmod 0644 "$builder" \
  /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt >/dev/null
buildah "${store[@]}" config \
  --user 65532:65532 \
  --entrypoint '["/bridge"]' --cmd run \
  --port 8080 --port 8081 \
  --label org.opencontainers.image.title="Badge Bridge" \
  --label org.opencontainers.image.version="$version" \
  "$builder"
buildah "${store[@]}" commit --quiet "$builder" "$image" >/dev/null
buildah "${store[@]}" rm "$builder" >/dev/null
builder=""
user=$("${podman[@]}" image inspect --format '{{.Config.User}}' "$image")
[ "$user" = "65532:65532" ] || fail "image user is '$user', want 65532:65532"
say "image built: user $user, $("${podman[@]}" image inspect --format '{{.Size}}' "$image") bytes"

# Run options shared by both runs: what the Helm chart's securityContext asks of a pod.
run_opts=(--network host --read-only --cap-drop ALL --security-opt no-new-privileges)

# ---- bridge version ----------------------------------------------------------------------------
out=$("${podman[@]}" run --rm "${run_opts[@]}" "$image" version) || fail "bridge version exited non-zero: $out"
say "bridge version: $out"
case "$out" in
  "bridge $version commit $commit go"*) ;;
  *) fail "bridge version printed '$out', want 'bridge $version commit $commit go…'" ;;
esac

# ---- development-mode start, /healthz ----------------------------------------------------------
# Free loopback ports for the host network: a port nothing answers on.
free_port() {
  local p
  for _ in $(seq 50); do
    p=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return 0
    fi
  done
  fail "no free loopback port found"
}
http_port=$(free_port)
admin_port=$(free_port)
[ "$http_port" != "$admin_port" ] || admin_port=$((http_port + 1))

say "starting the bridge in development mode on 127.0.0.1:$http_port (admin :$admin_port)"
"${podman[@]}" run -d --name "$name" "${run_opts[@]}" \
  -e BRIDGE_DEV=true \
  -e BRIDGE_HTTP_ADDR="127.0.0.1:$http_port" \
  -e BRIDGE_ADMIN_ADDR="127.0.0.1:$admin_port" \
  -e BRIDGE_LOG_FORMAT=text \
  "$image" >/dev/null

logs() { "${podman[@]}" logs "$name" 2>&1 | tail -n 40 >&2 || true; }
healthy=""
for _ in $(seq 60); do
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$http_port/healthz" || true)
  if [ "$code" = "200" ]; then
    healthy=yes
    break
  fi
  state=$("${podman[@]}" inspect --format '{{.State.Status}}' "$name" 2>/dev/null || echo gone)
  if [ "$state" != "running" ]; then
    logs
    fail "the container stopped before /healthz answered (state $state)"
  fi
  sleep 0.5
done
if [ -z "$healthy" ]; then
  logs
  fail "/healthz did not answer 200 within 30 s (last code $code)"
fi
say "GET /healthz: 200 $(curl -sS --max-time 2 "http://127.0.0.1:$http_port/healthz")"

# The process really runs as 65532 (root podman: no user namespace, so host UID = container UID).
pid=$("${podman[@]}" inspect --format '{{.State.Pid}}' "$name")
uids=$(awk '/^Uid:/ {print $2, $3, $4, $5}' "/proc/$pid/status")
gids=$(awk '/^Gid:/ {print $2, $3, $4, $5}' "/proc/$pid/status")
[ "$uids" = "65532 65532 65532 65532" ] || fail "process UIDs are '$uids', want 65532"
[ "$gids" = "65532 65532 65532 65532" ] || fail "process GIDs are '$gids', want 65532"
say "process $pid runs as uid 65532 gid 65532"

# SIGTERM: a clean stop exits 0 within the grace.
"${podman[@]}" stop -t 30 "$name" >/dev/null
exit_code=$("${podman[@]}" inspect --format '{{.State.ExitCode}}' "$name")
if [ "$exit_code" != "0" ]; then
  logs
  fail "the bridge exited $exit_code on SIGTERM, want 0"
fi
say "stopped cleanly on SIGTERM (exit 0)"
say "OK in $((SECONDS - start)) s"
