# Sourced by the bench scripts: start_registry WORK LEVEL starts a CNCF distribution registry
# (Debian's docker-registry) on a free port of 127.0.0.1, storing under WORK/registry and
# logging to WORK/registry.log at LEVEL (info: one line per request, which cache_pipeline.sh
# counts; warn: quiet). Sets `reg` (host:port) and `registry_pid` (the caller's cleanup stops it).
start_registry() {
  local work=$1 level=$2 port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  reg=127.0.0.1:$port
  cat > "$work/registry.yml" <<YAML
version: 0.1
log:
  level: $level
  formatter: text
storage:
  filesystem:
    rootdirectory: $work/registry
  delete:
    enabled: true
http:
  addr: $reg
YAML
  docker-registry serve "$work/registry.yml" > "$work/registry.log" 2>&1 &
  registry_pid=$!
  for _ in $(seq 1 100); do
    curl -fsS -o /dev/null "http://$reg/v2/" 2>/dev/null && return 0
    sleep 0.1
  done
  curl -fsS -o /dev/null "http://$reg/v2/" || {
    echo "the registry did not start:" >&2
    cat "$work/registry.log" >&2
    exit 1
  }
}

# Stops the registry start_registry started, if any (for the callers' cleanup traps).
stop_registry() {
  if [ -n "${registry_pid:-}" ]; then
    kill "$registry_pid" 2>/dev/null || true
    wait "$registry_pid" 2>/dev/null || true
    registry_pid=
  fi
}
