# shellcheck shell=bash
# Shared helpers of the peer scripts (dovecot.sh, courier.sh, cyrus.sh,
# mailutils.sh, popa3d.sh).  Not a peer: each script sources it first with
#
#   . "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)/lib.sh"
#
# which finds it beside the script whatever the caller's working directory
# and however the script was named (relative, absolute, through a symlinked
# directory).  Sourcing reads the whole file at once, so a long-running
# launcher (courier.sh/popa3d.sh __run) is not disturbed by later edits.
#
# Set here, from the sourcing script's $0:
#   PROG   the script's file name (messages, usage, pid_of patterns)
#   SELF   its absolute, symlink-free path (PEER_SEED, the __run launcher)
#   ROOT   the project checkout (../.. of this file)
#   HOST   127.0.0.1: every peer listens on loopback only
# Set by the script after sourcing, read by these helpers:
#   LABEL      "Dovecot", "Cyrus", ...: the 'unavailable here' message
#   PID_FILE   DIR's pid file name (cyrus.pid, ...): cmd_stop removes it
#   STOP_CLEAN more paths (relative to DIR, globs allowed) cmd_stop removes
#   STOP_MODE  leader: TERM the session leader, then its leftovers (a master
#              that stops its own children); all: TERM every process of the
#              session at once (a shell launcher that waits on its children)
#   HAS_TLS    0 for a peer without POP3S (status prints "(no TLS)", peer.env
#              has an empty PEER_POP3S_PORT and PEER_CA, PEER_STLS=no)
#   APOP_USER  the account peer.env names for APOP ("" when there is no APOP)
# and the functions pid_of DIR (print the running peer's PID or fail),
# peer_ready (succeeds once the peer answers), cmd_start DIR (DIR resolved,
# not running yet), cmd_seed DIR USER FILE... (checked first by seed_peer),
# optionally cmd_run (the private __run launcher).
#
# Exit codes shared by every script: 0 ok, 1 error (die), 2 usage,
# 3 not running (status), 4 the peer cannot run here (unavailable).

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  echo "lib.sh: sourced by the scripts in scripts/peers/, not a peer itself" >&2
  exit 2
fi

PROG=$(basename "$0")
SELF=$(cd "$(dirname "$0")" && pwd -P)/$PROG
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
HOST=127.0.0.1
LABEL=${LABEL:-$PROG}
PID_FILE=${PID_FILE:-}
STOP_CLEAN=()
STOP_MODE=leader
HAS_TLS=1
APOP_USER=carol
MAIL_UID="" MAIL_GID=""   # set by ensure_mail_user and seed_peer

# ----------------------------------------------------------------- messages

say() { echo "$PROG: $*" >&2; }
die() { say "error: $*"; exit 1; }
unavailable() { say "$LABEL peer unavailable here: $*"; exit 4; }
usage() {  # the script's own header, lines 2-8 (its command summary)
  sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
peer_python() { echo "${PEER_PYTHON:-$ROOT/.venv/bin/python}"; }

# ----------------------------------------------------------------- paths

# resolve_dir DIR CREATE: absolute, symlink-free path of DIR (made if CREATE=1).
resolve_dir() {
  local dir=$1 create=$2
  [ -n "$dir" ] || usage
  if [ "$create" = 1 ]; then
    mkdir -p -- "$dir" || die "cannot create $dir"
  elif [ ! -d "$dir" ]; then
    die "$dir is not a peer directory (run '$PROG start $dir' first)"
  fi
  (cd -- "$dir" && pwd -P)
}

# make_traversable DIR WHY: every server drops privileges (to the mail user
# or its own), so every ancestor of DIR must be traversable by others, or
# logins fail later with a vague error.  Adds only o+x (no listing); WHY
# ends the message that says so.
make_traversable() {
  local path=$1 why=$2
  chmod 755 "$path"
  path=$(dirname "$path")
  while [ "$path" != / ]; do
    if [ "$(( 0$(stat -c %a "$path") & 1 ))" = 0 ]; then
      chmod o+x "$path" || die "$path is not traversable by others and chmod o+x failed; use a directory such as /var/tmp/pop3suite-peers/NAME"
      say "made $path traversable (o+x): $why"
    fi
    path=$(dirname "$path")
  done
}

# env_get DIR NAME: NAME's value in DIR/peer.env (empty when unset).
env_get() { ( . "$1/peer.env"; printf '%s\n' "${!2:-}" ); }

# write_env DIR PID VERSION [KEY=VALUE...]: DIR/peer.env, what callers
# (tests, pop3suite's server matrix) know the peer by: the settings every
# peer shares, then KEY=VALUE, the server version, PID (left out when
# empty), the seed route (`SCRIPT seed DIR`, or PEER_SEED=... among the
# KEY=VALUE) and pop3suite/conformance/expectations/NAME.toml.  Values are quoted with
# printf %q (shell-sourceable); the file is private (it holds the password)
# and replaced atomically.
write_env() {
  local dir=$1 pid=$2 version=$3 name=${PROG%.sh} kv seed
  shift 3
  seed=$(printf '%q ' "$SELF" seed "$dir")
  seed="exec:${seed% }"
  {
    echo "# $LABEL peer, written by scripts/peers/$PROG start"
    printf 'PEER_NAME=%s\n' "$name"
    printf 'PEER_DIR=%q\n' "$dir"
    printf 'PEER_HOST=%q\n' "$HOST"
    printf 'PEER_POP3_PORT=%q\n' "$PEER_POP3_PORT"
    if [ "$HAS_TLS" = 1 ]; then
      printf 'PEER_POP3S_PORT=%q\nPEER_STLS=yes\nPEER_CA=%q\n' "$PEER_POP3S_PORT" "$dir/tls/ca.pem"
    else
      printf 'PEER_POP3S_PORT=\nPEER_STLS=no\nPEER_CA=\n'
    fi
    printf 'PEER_USERS=%q\n' "$PEER_USERS"
    printf 'PEER_PASSWORD=%q\n' "$PEER_PASSWORD"
    printf 'PEER_USER=alice\nPEER_SECOND_USER=bob\n'
    [ -z "$APOP_USER" ] || printf 'PEER_APOP_USER=%q\n' "$APOP_USER"
    printf 'PEER_MAIL_USER=%q\n' "$PEER_MAIL_USER"
    for kv in "$@"; do
      [[ "$kv" == PEER_SEED=* ]] && { seed=${kv#*=}; continue; }
      printf '%s=%q\n' "${kv%%=*}" "${kv#*=}"
    done
    printf 'PEER_VERSION=%q\n' "$version"
    [ -z "$pid" ] || printf 'PEER_PID=%q\n' "$pid"
    printf 'PEER_SEED=%q\n' "$seed"
    printf 'PEER_EXPECTATIONS=%q\n' "$ROOT/pop3suite/conformance/expectations/$name.toml"
  } > "$dir/peer.env.tmp"
  chmod 600 "$dir/peer.env.tmp"
  mv -f "$dir/peer.env.tmp" "$dir/peer.env"
}

# ----------------------------------------------------------------- process state

alive() {  # alive PID: the process exists and is not a zombie waiting to be reaped
  local stat
  { read -r stat < "/proc/$1/stat"; } 2>/dev/null || return 1
  stat=${stat##*) }
  [[ "$stat" != [ZX]* ]]
}

# pid_from PATTERN FILE...: print the PID in the first non-empty FILE if that
# process lives and its command line contains PATTERN (ours, not a recycled PID).
pid_from() {
  local pattern=$1 file pid=""
  shift
  for file in "$@"; do
    if [ -s "$file" ]; then pid=$(head -n1 "$file"); break; fi
  done
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  alive "$pid" || return 1
  tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q -- "$pattern" || return 1
  echo "$pid"
}

# session_pids SID: live PIDs whose session id is SID (every peer's master or
# launcher is a session leader, so these are all the processes of the peer).
session_pids() {
  local sid=$1 stat rest p
  local -a fields
  for stat in /proc/[0-9]*/stat; do
    # field 6 is the session id; the command field (2) may hold spaces: cut after ')'
    { read -r rest < "$stat"; } 2>/dev/null || continue
    read -r -a fields <<< "${rest##*) }"
    [[ "${fields[0]:-}" == [ZX] ]] && continue   # zombies are gone already
    if [ "${fields[3]:-}" = "$sid" ]; then p=${stat#/proc/}; echo "${p%/stat}"; fi
  done
  return 0
}

# stop_session PID: end the peer whose session leader is PID, by PID only.
# STOP_MODE=leader: SIGTERM the leader, wait PEER_STOP_TIMEOUT s, SIGKILL it
# and its session if still alive; then SIGTERM leftovers (per-connection
# children may outlive their master), wait 5 s, SIGKILL what remains.
# STOP_MODE=all: SIGTERM the whole session, wait PEER_STOP_TIMEOUT s for it
# to empty, SIGKILL what remains and wait 5 s more.
stop_session() {
  local pid=$1 timeout=${PEER_STOP_TIMEOUT:-10} i left
  kill -TERM "$pid" 2>/dev/null || true
  if [ "$STOP_MODE" = all ]; then
    left=$(session_pids "$pid")
    [ -z "$left" ] || kill -TERM $left 2>/dev/null || true
    for (( i = 0; i < timeout * 10; i++ )); do
      [ -z "$(session_pids "$pid")" ] && break
      sleep 0.1
    done
    left=$(session_pids "$pid")
    if [ -n "$left" ]; then
      say "still alive after ${timeout} s: $left; sending SIGKILL"
      kill -KILL $left 2>/dev/null || true
      for (( i = 0; i < 50; i++ )); do [ -z "$(session_pids "$pid")" ] && break; sleep 0.1; done
    fi
    return 0
  fi
  for (( i = 0; i < timeout * 10; i++ )); do
    alive "$pid" || break
    sleep 0.1
  done
  if alive "$pid"; then
    say "PID $pid still alive after ${timeout} s; sending SIGKILL to it and its session"
    kill -KILL "$pid" $(session_pids "$pid") 2>/dev/null || true
  fi
  left=$(session_pids "$pid")
  [ -z "$left" ] || kill -TERM $left 2>/dev/null || true
  for (( i = 0; i < 50; i++ )); do
    [ -z "$(session_pids "$pid")" ] && break
    sleep 0.1
  done
  left=$(session_pids "$pid")
  [ -z "$left" ] || kill -KILL $left 2>/dev/null || true
}

# ----------------------------------------------------------------- install

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

# install_missing PKG...: apt_install those PKGs not installed yet; their
# names (empty if none) are left in INSTALLED_NOW.
INSTALLED_NOW=""
install_missing() {
  local pkg missing=()
  for pkg in "$@"; do installed "$pkg" || missing+=("$pkg"); done
  INSTALLED_NOW="${missing[*]}"
  [ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
}

# with_policy_rc_d CMD...: run CMD with a policy-rc.d exiting 101, so that
# package scripts start no service; removed afterwards, also when interrupted.
with_policy_rc_d() {
  local made=0 rc=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    made=1
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    trap 'rm -f /usr/sbin/policy-rc.d; exit 130' INT TERM
  fi
  "$@" || rc=$?
  if [ $made = 1 ]; then rm -f /usr/sbin/policy-rc.d; trap - EXIT INT TERM; fi
  return $rc
}

# apt_install PKG...: apt-get install with no service started, waiting up to
# 15 min for another apt/dpkg run's lock; exit 4 (unavailable) with apt's
# last error when that fails, or without root or apt-get.
apt_install() {
  command -v apt-get >/dev/null || unavailable "apt-get is not available; install $* yourself"
  [ "$(id -u)" = 0 ] || unavailable "need root to apt-get install $*"
  say "installing $* from Debian's packages"
  local t0 log
  t0=$(now)
  log=$(mktemp)
  if ! with_policy_rc_d env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
       -o DPkg::Lock::Timeout=900 "$@" >"$log" 2>&1; then
    local reason
    tail -n 20 "$log" >&2
    reason=$(grep -E '^(E|W):' "$log" | tail -n 1 || true)
    rm -f "$log"
    unavailable "apt-get install $* failed${reason:+: $reason}"
  fi
  rm -f "$log"
  say "installed $* in $(elapsed "$t0") s"
}

# extract_deb PKG VERSION DEST: PKG=VERSION's .deb (cached in DEB_CACHE,
# fetched with `apt-get download` when missing) unpacked into DEST, its
# version in DEST/VERSION.  For servers that Conflict with pop3-server:
# never dpkg-installed, their maintainer scripts never run.
DEB_CACHE=/var/cache/pop3suite-peers
extract_deb() {
  local pkg=$1 version=$2 dest=$3 deb
  mkdir -p "$DEB_CACHE"
  deb=$(ls "$DEB_CACHE/${pkg}_${version/*:/}"_*.deb 2>/dev/null | head -n1 || true)
  if [ -z "$deb" ]; then
    command -v apt-get >/dev/null || unavailable "apt-get is not available to download $pkg"
    say "downloading $pkg $version (conflicts with pop3-server: extracted, not installed)"
    # apt drops to _apt for downloads: let it write the cache.
    chown _apt "$DEB_CACHE" 2>/dev/null || true
    (cd "$DEB_CACHE" && apt-get download -q -o DPkg::Lock::Timeout=900 "$pkg=$version" >/dev/null 2>"$DEB_CACHE/download.err") \
      || { cat "$DEB_CACHE/download.err" >&2; unavailable "apt-get download $pkg=$version failed"; }
    deb=$(ls "$DEB_CACHE/${pkg}_${version/*:/}"_*.deb 2>/dev/null | head -n1 || true)
    [ -n "$deb" ] || unavailable "apt-get download $pkg=$version left no .deb in $DEB_CACHE"
  fi
  rm -rf "$dest"
  dpkg-deb -x "$deb" "$dest" || die "dpkg-deb -x $deb failed"
  dpkg-deb -f "$deb" Version > "$dest/VERSION"
}

# ensure_mail_user USER WHY: the unprivileged system user the mail files
# belong to (created if missing; WHY ends the message); never root.  Its
# ids are left in MAIL_UID and MAIL_GID.
ensure_mail_user() {
  local user=$1 why=$2
  if ! id -u "$user" >/dev/null 2>&1; then
    [ "$(id -u)" = 0 ] || die "user $user does not exist and only root can create it"
    useradd --system --user-group --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin "$user" || die "cannot create system user $user"
    say "created system user $user ($why)"
  fi
  MAIL_UID=$(id -u "$user"); MAIL_GID=$(id -g "$user")
  [ "$MAIL_UID" != 0 ] || die "PEER_MAIL_USER must not be root"
}

# check_user_names REGEX [NOTE]: every name in PEER_USERS matches REGEX
# (what the server's user database accepts; NOTE ends the error).
check_user_names() {
  local user
  for user in $PEER_USERS; do
    [[ "$user" =~ $1 ]] || die "bad user name '$user' in PEER_USERS${2:+ ($2)}"
  done
}

# ----------------------------------------------------------------- config

# default_settings: the defaults every peer shares (the ports differ per peer).
default_settings() {
  : "${PEER_PASSWORD:=s3cret}" "${PEER_USERS:=alice bob carol}" "${PEER_MAIL_USER:=pop3peer}"
}

# need_namespace WHY: root and a private mount namespace (unshare -m), for
# servers whose paths are compiled in; WHY says what root is needed for.
need_namespace() {
  [ "$(id -u)" = 0 ] || unavailable "start needs root ($1)"
  command -v unshare >/dev/null || unavailable "unshare (util-linux) is missing"
  unshare -m --propagation private true 2>/dev/null || unavailable "cannot create a mount namespace (unshare -m)"
}

# check_ports PORT...: each a valid port, all different, none in use yet.
check_ports() {
  local port hint="PEER_POP3_PORT"
  [ $# -eq 1 ] || hint="PEER_POP3_PORT / PEER_POP3S_PORT"
  for port in "$@"; do
    [[ "$port" =~ ^[0-9]+$ ]] && [ "$port" -ge 1 ] && [ "$port" -le 65535 ] || die "bad port '$port'"
  done
  [ $# -lt 2 ] || [ "$1" != "$2" ] || die "PEER_POP3_PORT and PEER_POP3S_PORT must differ"
  for port in "$@"; do
    ! port_busy "$port" || die "$HOST:$port is in use by another program; choose $hint"
  done
}

# write_tls DIR: the test PKI (pop3suite.server.tls: ca.pem, server.pem,
# server.key) in DIR/tls, made once with the project's Python.
write_tls() {
  local dir=$1 python
  python=$(peer_python)
  if ! [ -s "$dir/tls/server.pem" ] || ! [ -s "$dir/tls/server.key" ]; then
    [ -x "$python" ] || die "no Python at $python to make the test PKI (run ./dev test once, or set PEER_PYTHON)"
    PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" "$python" -c \
      'import sys; from pop3suite.server import tls; tls.issue(sys.argv[1])' "$dir/tls" \
      || die "pop3suite.server.tls.issue failed for $dir/tls"
  fi
  chmod 755 "$dir/tls"
}

ensure_maildir() {  # ensure_maildir DIR USER UID GID: DIR/mail/USER/{tmp,new,cur}, 0700
  local box="$1/mail/$2" sub
  for sub in "" /tmp /new /cur; do
    if [ ! -d "$box$sub" ]; then
      mkdir -p "$box$sub"
      chown "$3:$4" "$box$sub"
      chmod 700 "$box$sub"
    fi
  done
}

# ----------------------------------------------------------------- greeting probe

port_busy() {  # port_busy PORT: something accepts connections there already
  { exec 3<>"/dev/tcp/$HOST/$1"; } 2>/dev/null || return 1
  exec 3<&- 3>&-
}

greets_ok() {  # greets_ok PORT: the POP3 port accepts and answers +OK
  local port=$1 line=""
  { exec 3<>"/dev/tcp/$HOST/$port"; } 2>/dev/null || return 1
  IFS= read -r -t 2 line <&3 || true
  printf 'QUIT\r\n' >&3 2>/dev/null || true
  exec 3<&- 3>&-
  [[ "$line" == "+OK"* ]]
}

# wait_ready DIR PID TIMEOUT WHAT LOG...: poll `peer_ready` (defined by the
# script) every 50 ms.  When TIMEOUT s pass, or PID (if not empty: a daemon
# that forks away passes "") dies first, show the LOGs' last lines, stop
# what did start and die with "WHAT".
wait_ready() {
  local dir=$1 pid=$2 timeout=$3 what=$4 deadline
  shift 4
  deadline=$(( $(date +%s) + timeout ))
  until peer_ready; do
    if [ "$(date +%s)" -ge "$deadline" ] || { [ -n "$pid" ] && ! alive "$pid"; }; then
      tail -n 20 "$@" >&2 2>/dev/null || true
      cmd_stop "$dir" >/dev/null 2>&1 || true
      die "$what"
    fi
    sleep 0.05
  done
}

# ----------------------------------------------------------------- commands

# start_peer DIR: cmd_start with DIR resolved (made if missing), unless our peer
# runs for DIR already: then say so, refresh the pid file and succeed.
start_peer() {
  [ $# -eq 1 ] || usage
  local dir pid
  dir=$(resolve_dir "$1" 1)
  if pid=$(pid_of "$dir"); then
    say "already running (PID $pid) for $dir; nothing to do"
    echo "$pid" > "$dir/$PID_FILE"
    return 0
  fi
  cmd_start "$dir"
}

# seed_peer DIR USER FILE...: cmd_seed DIR USER FILE... once DIR was started,
# USER is one of its accounts and every FILE is readable (checked before
# anything is delivered).  Sets MAIL_UID and MAIL_GID: the peer's mail user.
seed_peer() {
  [ $# -ge 3 ] || usage
  local dir user file users mail_user
  dir=$(resolve_dir "$1" 0); user=$2; shift 2
  [ -f "$dir/peer.env" ] || die "$dir/peer.env is missing (run '$PROG start $dir' first)"
  users=$(env_get "$dir" PEER_USERS)
  [[ " $users " == *" $user "* ]] || die "unknown user '$user' (peer users: $users)"
  for file in "$@"; do
    [ -f "$file" ] && [ -r "$file" ] || die "cannot read message file $file"
  done
  mail_user=$(env_get "$dir" PEER_MAIL_USER)
  MAIL_UID=$(id -u "$mail_user") || die "mail user $mail_user is missing"
  MAIL_GID=$(id -g "$mail_user")
  cmd_seed "$dir" "$user" "$@"
}

cmd_stop() {
  [ $# -eq 1 ] || usage
  local dir pid pattern
  [ -d "$1" ] || { say "$1 does not exist; not running"; return 0; }
  dir=$(resolve_dir "$1" 0)
  if ! pid=$(pid_of "$dir"); then
    rm -f "$dir/$PID_FILE"
    say "not running ($dir)"
    return 0
  fi
  stop_session "$pid"
  rm -f "$dir/$PID_FILE"
  for pattern in ${STOP_CLEAN[@]+"${STOP_CLEAN[@]}"}; do
    # shellcheck disable=SC2086  # a glob on purpose (stale sockets)
    rm -f "$dir"/$pattern
  done
  say "stopped (was PID $pid)"
}

cmd_status() {
  [ $# -eq 1 ] || usage
  [ -d "$1" ] || { echo "stopped: $1 does not exist"; return 3; }
  local dir pid p3="?" p3s="?"
  dir=$(resolve_dir "$1" 0)
  if pid=$(pid_of "$dir"); then
    if [ -f "$dir/peer.env" ]; then
      p3=$(env_get "$dir" PEER_POP3_PORT); p3s=$(env_get "$dir" PEER_POP3S_PORT)
    fi
    if [ "$HAS_TLS" = 1 ]; then
      echo "running: PID $pid, pop3 $HOST:$p3, pop3s $HOST:$p3s, dir $dir"
    else
      echo "running: PID $pid, pop3 $HOST:$p3 (no TLS), dir $dir"
    fi
    return 0
  fi
  echo "stopped: $dir"
  return 3
}

cmd_env() {
  [ $# -eq 1 ] || usage
  local dir
  dir=$(resolve_dir "$1" 0)
  [ -f "$dir/peer.env" ] || die "$dir/peer.env is missing (run '$PROG start $dir' first)"
  cat "$dir/peer.env"
}

# peer_main "$@": the command line every script shares.  __run ARGS... is
# the private launcher of scripts that define cmd_run (it checks its ARGS).
peer_main() {
  [ $# -ge 1 ] || usage
  local cmd=$1; shift
  case "$cmd" in
    start) start_peer "$@" ;;
    stop) cmd_stop "$@" ;;
    seed) seed_peer "$@" ;;
    status) cmd_status "$@" ;;
    env) cmd_env "$@" ;;
    __run) declare -F cmd_run >/dev/null || { say "unknown command '$cmd'"; usage; }; cmd_run "$@" ;;
    -h|--help|help) usage ;;
    *) say "unknown command '$cmd'"; usage ;;
  esac
}
