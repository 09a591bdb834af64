# scripts/peers.sh - the comparison runners of scripts/bench-agent and
# scripts/bench-network, sourced by them (not a command). The peers are set
# up as ../shared/bench/run-peers.sh sets them up for scripts/bench, so that
# every table compares the same things:
#   native      nothing
#   strace-bpf  strace -f -qq --seccomp-bpf -e trace=$STRACE_CALLS -o /dev/null
#               (a seccomp filter stops only those calls; the cost of a tracer
#               that sees them and enforces nothing)
#   syd-check   syd -ppaludis -poff + exec,read,write,truncate sandboxing with
#               allow-all rules (every execve and open decided in syd's handler),
#               plus $SYD_EXTRA; syd is looked up on PATH, then where
#               scripts/install-syd installs it
#   lexecon     $LEXECON_BIN supervise --quiet --policy $LEXECON_POLICY
#               --keys $LEXECON_KEYS --ledger $LEXECON_LEDGER $LEXECON_EXTRA
#               (as root with --allow-root-tree: the benchmarks measure overhead)
#
# peer_available NAME: 0 when NAME can run here, else 1 with PEER_WHY set.
# peer_prefix NAME: sets the array PEER to the command prefix of NAME.

PEER_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STRACE_CALLS=${STRACE_CALLS:-execve,openat}
SYD_EXTRA=${SYD_EXTRA:-}
if [ -n "${SYD_CHECK_ARGS:-}" ]; then
  read -r -a PEER_SYD_CHECK <<<"$SYD_CHECK_ARGS"
else
  PEER_SYD_CHECK=(-ppaludis -poff
    -m 'sandbox/exec,read,write,truncate:on'
    -m 'allow/exec,read,write,truncate+/***')
fi

peer_syd() {
  if command -v syd >/dev/null 2>&1; then
    command -v syd
    return 0
  fi
  "$PEER_DIR/install-syd" --check 2>/dev/null
}

peer_available() {
  PEER_WHY=""
  case "$1" in
    native) return 0 ;;
    strace-bpf)
      command -v strace >/dev/null 2>&1 && return 0
      PEER_WHY="strace not found (Debian: apt-get install strace)" ;;
    syd-check)
      peer_syd >/dev/null && return 0
      PEER_WHY="syd not found (scripts/install-syd installs it)" ;;
    lexecon)
      [ -x "${LEXECON_BIN:-}" ] && return 0
      PEER_WHY="LEXECON_BIN is not an executable" ;;
    *) PEER_WHY="unknown runner $1 (native, strace-bpf, syd-check, lexecon)" ;;
  esac
  return 1
}

peer_prefix() {
  case "$1" in
    native) PEER=() ;;
    strace-bpf) PEER=(strace -f -qq --seccomp-bpf -e "trace=$STRACE_CALLS" -o /dev/null --) ;;
    syd-check)
      local extra=()
      [ -n "$SYD_EXTRA" ] && read -r -a extra <<<"$SYD_EXTRA"
      PEER=("$(peer_syd)" "${PEER_SYD_CHECK[@]}" "${extra[@]}" --) ;;
    lexecon)
      local extra=()
      [ -n "${LEXECON_EXTRA:-}" ] && read -r -a extra <<<"$LEXECON_EXTRA"
      [ "$(id -u)" = 0 ] && extra+=(--allow-root-tree)
      PEER=("$LEXECON_BIN" supervise --quiet --policy "$LEXECON_POLICY" --keys "$LEXECON_KEYS"
        --ledger "$LEXECON_LEDGER" "${extra[@]}" --) ;;
  esac
}
