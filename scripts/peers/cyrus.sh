#!/usr/bin/env bash
# Cyrus IMAP's POP3 server (cyrus-pop3d, Debian 12) as a private POP3/POP3S peer on loopback.
#
#   cyrus.sh start  DIR              extract Cyrus if needed, configure DIR, start, wait for +OK
#   cyrus.sh stop   DIR              SIGTERM the master by PID, SIGKILL after PEER_STOP_TIMEOUT s
#   cyrus.sh seed   DIR USER FILE... deliver messages to USER's INBOX over Cyrus' own LMTP socket
#   cyrus.sh status DIR              print state; exit 0 running, 3 stopped
#   cyrus.sh env    DIR              print DIR/peer.env (shell-sourceable)
#
# cyrus-pop3d Conflicts with pop3-server (Dovecot, Mailutils are installed
# here), so it is never dpkg-installed: cyrus-common + cyrus-pop3d are
# fetched with `apt-get download` and unpacked with `dpkg-deb -x` into a
# private root (PEER_CYRUS_ROOT); only their library dependencies (and
# sasl2-bin for saslpasswd2) are apt-get installed.  No system user: Cyrus
# runs as PEER_MAIL_USER (cyrus_user).  Everything else lives in DIR:
# imapd.conf, cyrus.conf, sasldb2, tls/, conf/ (configdirectory), spool/
# (partition-default), socket/lmtp, master.log, cyrus.pid, peer.env.
#
# Environment (read by start): PEER_POP3_PORT (23110), PEER_POP3S_PORT (23995),
# PEER_PASSWORD (s3cret), PEER_USERS ("alice bob carol"), PEER_MAIL_USER
# (pop3peer), PEER_CYRUS_ROOT (/var/tmp/pop3suite-peers/cyrus-root), PEER_PYTHON
# (the project's .venv python), PEER_START_TIMEOUT (30), PEER_STOP_TIMEOUT (10).
#
# Exit codes: 0 ok, 1 error, 2 usage, 3 not running (status), 4 the peer
# cannot run here (not root, no apt-get, or a download/install failed).
set -euo pipefail

PROG=$(basename "$0")
ROOT=$(cd "$(dirname "$0")/../.." && pwd -P)
SELF="$ROOT/scripts/peers/$PROG"
HOST=127.0.0.1
DEBS=(cyrus-common cyrus-pop3d)
CYRUS_ROOT=${PEER_CYRUS_ROOT:-/var/tmp/pop3suite-peers/cyrus-root}
BIN=$CYRUS_ROOT/usr/lib/cyrus/bin
LIBDIR=$CYRUS_ROOT/usr/lib/x86_64-linux-gnu
export PATH="$PATH:/usr/sbin:/sbin"

say() { echo "$PROG: $*" >&2; }
die() { say "error: $*"; exit 1; }
unavailable() { say "Cyrus peer unavailable here: $*"; exit 4; }
usage() {
  sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

# ----------------------------------------------------------------- paths

resolve_dir() {  # resolve_dir DIR CREATE: absolute, symlink-free path of DIR
  local dir=$1 create=$2
  [ -n "$dir" ] || usage
  if [ "$create" = 1 ]; then
    mkdir -p -- "$dir" || die "cannot create $dir"
  elif [ ! -d "$dir" ]; then
    die "$dir is not a peer directory (run '$PROG start $dir' first)"
  fi
  (cd -- "$dir" && pwd -P)
}

# Cyrus runs as the mail user (cyrus_user): every ancestor of DIR must be
# traversable by others, or it cannot reach its config and spool.  Add only o+x.
make_traversable() {
  local path=$1
  chmod 755 "$path"
  path=$(dirname "$path")
  while [ "$path" != / ]; do
    if [ "$(( 0$(stat -c %a "$path") & 1 ))" = 0 ]; then
      chmod o+x "$path" || die "$path is not traversable by others and chmod o+x failed; use a directory such as /var/tmp/pop3suite-peers/NAME"
      say "made $path traversable (o+x): Cyrus' processes run as $PEER_MAIL_USER"
    fi
    path=$(dirname "$path")
  done
}

# ----------------------------------------------------------------- process state

alive() {  # alive PID: the process exists and is not a zombie
  local stat
  { read -r stat < "/proc/$1/stat"; } 2>/dev/null || return 1
  stat=${stat##*) }
  [[ "$stat" != [ZX]* ]]
}

pid_of() {  # print the master PID if our Cyrus runs for DIR
  local dir=$1 pid=""
  [ -s "$dir/cyrus.pid" ] && pid=$(head -n1 "$dir/cyrus.pid")
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  alive "$pid" || return 1
  # Only a master started with our config, not a recycled PID.
  tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q -- "-M $dir/cyrus.conf" || return 1
  echo "$pid"
}

session_pids() {  # live PIDs whose session id is $1 (master is started by setsid)
  local sid=$1 stat rest p
  local -a fields
  for stat in /proc/[0-9]*/stat; do
    { read -r rest < "$stat"; } 2>/dev/null || continue
    read -r -a fields <<< "${rest##*) }"
    [[ "${fields[0]:-}" == [ZX] ]] && continue
    if [ "${fields[3]:-}" = "$sid" ]; then p=${stat#/proc/}; echo "${p%/stat}"; fi
  done
  return 0
}

# ----------------------------------------------------------------- install

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

apt_install() {  # apt_install PKG...: install with no service started
  local made_policy=0 log t0
  command -v apt-get >/dev/null || unavailable "apt-get is not available; install $* yourself"
  say "installing $* from Debian's packages"
  t0=$(now)
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    made_policy=1
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    trap 'rm -f /usr/sbin/policy-rc.d; exit 130' INT TERM
  fi
  log=$(mktemp)
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
       -o DPkg::Lock::Timeout=900 "$@" >"$log" 2>&1; then
    [ $made_policy = 1 ] && rm -f /usr/sbin/policy-rc.d
    local reason
    tail -n 20 "$log" >&2
    reason=$(grep -E '^(E|W):' "$log" | tail -n 1 || true)
    rm -f "$log"
    unavailable "apt-get install $* failed${reason:+: $reason}"
  fi
  rm -f "$log"
  if [ $made_policy = 1 ]; then rm -f /usr/sbin/policy-rc.d; trap - EXIT INT TERM; fi
  say "installed $* in $(elapsed "$t0") s"
}

# Unpack cyrus-common + cyrus-pop3d into CYRUS_ROOT once (flock: two starts
# at a time unpack once).  Their maintainer scripts never run: no cyrus
# user, no /var/lib/cyrus, no init script, nothing in /etc.
ensure_extracted() {
  [ -x "$BIN/pop3d" ] && [ -x "$BIN/master" ] && [ -s "$CYRUS_ROOT/VERSION" ] && return 0
  command -v apt-get >/dev/null || unavailable "apt-get is not available to download ${DEBS[*]}"
  mkdir -p "$CYRUS_ROOT"
  chmod 755 "$CYRUS_ROOT"
  (
    flock 9
    [ -x "$BIN/pop3d" ] && [ -s "$CYRUS_ROOT/VERSION" ] && exit 0
    local debs t0
    t0=$(now)
    debs=$(mktemp -d /var/tmp/pop3suite-cyrus-debs.XXXXXX)
    chmod 755 "$debs"   # apt's _apt user writes the download here
    if ! (cd "$debs" && apt-get download -q -o DPkg::Lock::Timeout=900 "${DEBS[@]}") >"$debs/log" 2>&1; then
      tail -n 5 "$debs/log" >&2; rm -rf "$debs"
      unavailable "apt-get download ${DEBS[*]} failed"
    fi
    local deb
    for deb in "$debs"/*.deb; do dpkg-deb -x "$deb" "$CYRUS_ROOT" || { rm -rf "$debs"; die "dpkg-deb -x $deb failed"; }; done
    # Their library dependencies ("lib..." names of Depends), to apt-get install.
    for deb in "$debs"/*.deb; do dpkg-deb -f "$deb" Depends; done | tr ',' '\n' \
      | sed -e 's/|.*//' -e 's/(.*)//' -e 's/:any//' -e 's/ //g' | grep '^lib' | sort -u > "$CYRUS_ROOT/LIBDEPS"
    dpkg-deb -f "$debs"/cyrus-pop3d_*.deb Version > "$CYRUS_ROOT/VERSION"
    rm -rf "$debs"
    say "unpacked ${DEBS[*]} $(cat "$CYRUS_ROOT/VERSION") into $CYRUS_ROOT in $(elapsed "$t0") s"
  ) 9>"$CYRUS_ROOT/.lock" || exit $?
}

ensure_installed() {
  [ "$(id -u)" = 0 ] || unavailable "start needs root (Cyrus' master switches to the mail user)"
  ensure_extracted
  local missing=() pkg
  for pkg in $(cat "$CYRUS_ROOT/LIBDEPS") sasl2-bin libsasl2-modules libsasl2-modules-db; do
    installed "$pkg" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
  local exe
  for exe in master pop3d lmtpd ctl_cyrusdb; do
    if LD_LIBRARY_PATH=$LIBDIR ldd "$BIN/$exe" | grep -q 'not found'; then
      LD_LIBRARY_PATH=$LIBDIR ldd "$BIN/$exe" | grep 'not found' >&2
      unavailable "$BIN/$exe lacks shared libraries (see above)"
    fi
  done
  command -v saslpasswd2 >/dev/null || unavailable "saslpasswd2 not found although sasl2-bin is installed"
}

ensure_mail_user() {
  local user=$1
  if ! id -u "$user" >/dev/null 2>&1; then
    useradd --system --user-group --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin "$user" || die "cannot create system user $user"
    say "created system user $user (Cyrus runs as it)"
  fi
}

# ----------------------------------------------------------------- config

write_tls() {
  local dir=$1 python=${PEER_PYTHON:-$ROOT/.venv/bin/python}
  [ -s "$dir/tls/server.pem" ] && [ -s "$dir/tls/server.key" ] && return 0
  [ -x "$python" ] || die "no Python at $python to make the test PKI (set PEER_PYTHON)"
  PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" "$python" -c \
    'import sys; from reference_server import tls; tls.issue(sys.argv[1])' "$dir/tls" \
    || die "reference_server.tls.issue failed for $dir/tls"
  chmod 755 "$dir/tls"
}

write_users() {  # the private SASL database (sasldb2): plaintext secrets, so APOP works too
  local dir=$1 password=$2 user
  case "$password" in
    *$'\n'*) die "PEER_PASSWORD may not contain a newline";;
  esac
  rm -f "$dir/sasldb2" "$dir/sasldb2.tmp"
  for user in $PEER_USERS; do
    printf '%s' "$password" | saslpasswd2 -f "$dir/sasldb2.tmp" -c -p "$user" \
      || die "saslpasswd2 failed for $user"
  done
  chown "$PEER_MAIL_USER:mail" "$dir/sasldb2.tmp"
  chmod 640 "$dir/sasldb2.tmp"
  mv -f "$dir/sasldb2.tmp" "$dir/sasldb2"
}

write_config() {
  local dir=$1
  cat > "$dir/imapd.conf.tmp" <<CONF
# Private Cyrus POP3 peer for pop3suite, written by scripts/peers/cyrus.sh.
# Every setting is explained in docs/peers-cyrus.md.
configdirectory: $dir/conf
partition-default: $dir/spool
defaultpartition: default
cyrus_user: $PEER_MAIL_USER
cyrus_group: mail
admins: pop3suite-admin
syslog_prefix: pop3suite-cyrus-$PEER_POP3_PORT
master_pid_file: $dir/master.pid
lmtpsocket: $dir/socket/lmtp
idlesocket: $dir/socket/idle
notifysocket: $dir/socket/notify
sasl_pwcheck_method: auxprop
sasl_auxprop_plugin: sasldb
sasl_sasldb_path: $dir/sasldb2
sasl_mech_list: PLAIN LOGIN
allowplaintext: yes
allowapop: yes
munge8bit: no
autocreate_quota: 0
autocreate_post: yes
tls_server_cert: $dir/tls/server.pem
tls_server_key: $dir/tls/server.key
tls_versions: tls1_2 tls1_3
CONF
  mv -f "$dir/imapd.conf.tmp" "$dir/imapd.conf"
  local conf="-C $dir/imapd.conf"
  # master does not pass its -C on to the services: every cmd= names it.
  cat > "$dir/cyrus.conf.tmp" <<CONF
# Private Cyrus master config for pop3suite, written by scripts/peers/cyrus.sh.
START {
  recover cmd="$BIN/ctl_cyrusdb $conf -r"
}
SERVICES {
  pop3 cmd="$BIN/pop3d $conf" listen="$HOST:$PEER_POP3_PORT" prefork=1 maxchild=200
  pop3s cmd="$BIN/pop3d -s $conf" listen="$HOST:$PEER_POP3S_PORT" prefork=1 maxchild=200
  lmtpunix cmd="$BIN/lmtpd $conf" listen="$dir/socket/lmtp" prefork=0 maxchild=20
}
EVENTS {
  checkpoint cmd="$BIN/ctl_cyrusdb $conf -c" period=30
}
CONF
  mv -f "$dir/cyrus.conf.tmp" "$dir/cyrus.conf"
}

write_env() {
  local dir=$1 pid=$2 seed
  seed=$(printf '%q ' "$SELF" seed "$dir")
  {
    echo "# Cyrus peer, written by scripts/peers/cyrus.sh start"
    printf 'PEER_NAME=cyrus\n'
    printf 'PEER_DIR=%q\n' "$dir"
    printf 'PEER_HOST=%q\n' "$HOST"
    printf 'PEER_POP3_PORT=%q\n' "$PEER_POP3_PORT"
    printf 'PEER_POP3S_PORT=%q\n' "$PEER_POP3S_PORT"
    printf 'PEER_STLS=yes\n'
    printf 'PEER_CA=%q\n' "$dir/tls/ca.pem"
    printf 'PEER_USERS=%q\n' "$PEER_USERS"
    printf 'PEER_PASSWORD=%q\n' "$PEER_PASSWORD"
    printf 'PEER_USER=alice\n'
    printf 'PEER_SECOND_USER=bob\n'
    printf 'PEER_APOP_USER=carol\n'
    printf 'PEER_MAIL_USER=%q\n' "$PEER_MAIL_USER"
    printf 'PEER_LMTP_SOCKET=%q\n' "$dir/socket/lmtp"
    printf 'PEER_CYRUS_ROOT=%q\n' "$CYRUS_ROOT"
    printf 'PEER_VERSION=%q\n' "$(cat "$CYRUS_ROOT/VERSION")"
    printf 'PEER_PID=%q\n' "$pid"
    printf 'PEER_SEED=%q\n' "exec:${seed% }"
    printf 'PEER_EXPECTATIONS=%q\n' "$ROOT/conformance/expectations/cyrus.toml"
  } > "$dir/peer.env.tmp"
  chmod 600 "$dir/peer.env.tmp"
  mv -f "$dir/peer.env.tmp" "$dir/peer.env"
}

# ----------------------------------------------------------------- greeting probe

port_busy() {
  { exec 3<>"/dev/tcp/$HOST/$1"; } 2>/dev/null || return 1
  exec 3<&- 3>&-
}

greets_ok() {
  local port=$1 line=""
  { exec 3<>"/dev/tcp/$HOST/$port"; } 2>/dev/null || return 1
  IFS= read -r -t 2 line <&3 || true
  printf 'QUIT\r\n' >&3 2>/dev/null || true
  exec 3<&- 3>&-
  [[ "$line" == "+OK"* ]]
}

# ----------------------------------------------------------------- commands

cmd_start() {
  [ $# -eq 1 ] || usage
  local dir pid t0
  dir=$(resolve_dir "$1" 1)
  if pid=$(pid_of "$dir"); then
    say "already running (PID $pid) for $dir; nothing to do"
    return 0
  fi
  : "${PEER_POP3_PORT:=23110}" "${PEER_POP3S_PORT:=23995}" "${PEER_PASSWORD:=s3cret}"
  : "${PEER_USERS:=alice bob carol}" "${PEER_MAIL_USER:=pop3peer}"
  local port user
  for port in "$PEER_POP3_PORT" "$PEER_POP3S_PORT"; do
    [[ "$port" =~ ^[0-9]+$ ]] && [ "$port" -ge 1 ] && [ "$port" -le 65535 ] || die "bad port '$port'"
  done
  [ "$PEER_POP3_PORT" != "$PEER_POP3S_PORT" ] || die "PEER_POP3_PORT and PEER_POP3S_PORT must differ"
  for user in $PEER_USERS; do
    [[ "$user" =~ ^[a-z][a-z0-9_-]*$ ]] || die "bad user name '$user' in PEER_USERS (Cyrus: no dots)"
  done
  for port in "$PEER_POP3_PORT" "$PEER_POP3S_PORT"; do
    ! port_busy "$port" || die "$HOST:$port is in use by another program; choose PEER_POP3_PORT / PEER_POP3S_PORT"
  done
  [ ${#dir} -lt 90 ] || die "$dir is too long for a unix socket path (DIR/socket/lmtp < 108 bytes)"

  ensure_installed
  ensure_mail_user "$PEER_MAIL_USER"
  [ "$(id -u "$PEER_MAIL_USER")" != 0 ] || die "PEER_MAIL_USER must not be root"

  t0=$(now)
  make_traversable "$dir"
  mkdir -p "$dir/conf" "$dir/spool" "$dir/socket"
  chown "$PEER_MAIL_USER:mail" "$dir/conf" "$dir/spool" "$dir/socket"
  chmod 750 "$dir/conf" "$dir/spool" "$dir/socket"
  rm -f "$dir/cyrus.pid" "$dir/master.pid" "$dir/socket/"*
  write_tls "$dir"
  chown "$PEER_MAIL_USER" "$dir/tls/server.key"   # read by pop3d (as the mail user) on STLS
  write_users "$dir" "$PEER_PASSWORD"
  write_config "$dir"

  # A session of its own (setsid) so stop finds every service process;
  # stdio redirected (Cyrus logs to syslog only; this catches early errors).
  LD_LIBRARY_PATH=$LIBDIR setsid "$BIN/master" -C "$dir/imapd.conf" -M "$dir/cyrus.conf" \
    -p "$dir/master.pid" </dev/null >>"$dir/master.log" 2>&1 &
  pid=$!
  echo "$pid" > "$dir/cyrus.pid"
  local deadline
  deadline=$(( $(date +%s) + ${PEER_START_TIMEOUT:-30} ))
  until greets_ok "$PEER_POP3_PORT" && [ -S "$dir/socket/lmtp" ]; do
    if ! alive "$pid" || [ "$(date +%s)" -ge "$deadline" ]; then
      tail -n 20 "$dir/master.log" >&2 2>/dev/null || true
      cmd_stop "$dir" >/dev/null 2>&1 || true
      die "no +OK greeting on $HOST:$PEER_POP3_PORT (Cyrus logs only to syslog; see $dir/master.log)"
    fi
    sleep 0.05
  done
  pid_of "$dir" >/dev/null || die "Cyrus answers but PID $pid is not our master"
  write_env "$dir" "$pid"
  say "started in $(elapsed "$t0") s: PID $pid, pop3 $HOST:$PEER_POP3_PORT (STLS), pop3s $HOST:$PEER_POP3S_PORT, lmtp $dir/socket/lmtp; env in $dir/peer.env"
}

cmd_stop() {
  [ $# -eq 1 ] || usage
  local dir pid
  [ -d "$1" ] || { say "$1 does not exist; not running"; return 0; }
  dir=$(resolve_dir "$1" 0)
  if ! pid=$(pid_of "$dir"); then
    rm -f "$dir/cyrus.pid"
    say "not running ($dir)"
    return 0
  fi
  local timeout=${PEER_STOP_TIMEOUT:-10} i
  kill -TERM "$pid" 2>/dev/null || true   # master passes SIGTERM on to its services
  for (( i = 0; i < timeout * 10; i++ )); do
    alive "$pid" || break
    sleep 0.1
  done
  if alive "$pid"; then
    say "PID $pid still alive after ${timeout} s; sending SIGKILL to it and its session"
    kill -KILL "$pid" $(session_pids "$pid") 2>/dev/null || true
  fi
  local left
  for (( i = 0; i < 30; i++ )); do
    [ -z "$(session_pids "$pid")" ] && break
    sleep 0.1
  done
  left=$(session_pids "$pid")
  [ -z "$left" ] || kill -KILL $left 2>/dev/null || true
  rm -f "$dir/cyrus.pid" "$dir/master.pid"
  say "stopped (was PID $pid)"
}

# Deliver the way Cyrus' own delivery does: LMTP to lmtpd on DIR/socket/lmtp
# (Python's smtplib.LMTP; line ends sent as CRLF, dot-stuffed, a missing
# final CRLF added, as an MTA's LMTP client does).
# lmtpd adds Return-Path:/Received: on top and, if missing, Message-ID:/Date:.
cmd_seed() {
  [ $# -ge 3 ] || usage
  local dir user python=${PEER_PYTHON:-$ROOT/.venv/bin/python}
  dir=$(resolve_dir "$1" 0); user=$2; shift 2
  [ -f "$dir/peer.env" ] || die "$dir/peer.env is missing (run '$PROG start $dir' first)"
  local PEER_USERS
  PEER_USERS=$(. "$dir/peer.env"; echo "$PEER_USERS")
  [[ " $PEER_USERS " == *" $user "* ]] || die "unknown user '$user' (peer users: $PEER_USERS)"
  [ -S "$dir/socket/lmtp" ] || die "$dir/socket/lmtp is missing: is the peer running?"
  [ -x "$python" ] || python=python3
  local file
  for file in "$@"; do
    [ -f "$file" ] && [ -r "$file" ] || die "cannot read message file $file"
  done
  "$python" - "$dir/socket/lmtp" "$user" "$@" <<'PY' || die "LMTP delivery to $user failed"
import re
import smtplib
import sys

socket_path, user, files = sys.argv[1], sys.argv[2], sys.argv[3:]
with smtplib.LMTP(socket_path, timeout=60) as lmtp:
    for path in files:
        with open(path, "rb") as handle:
            # The wire form an MTA sends: CRLF line ends (smtplib leaves a
            # bare LF alone and then adds CRLF after it: an extra line).
            data = re.sub(rb"\r?\n", b"\r\n", handle.read())
        lmtp.sendmail("pop3suite@localhost", [user], data)
PY
  say "seeded $# message(s) for $user over LMTP"
}

cmd_status() {
  [ $# -eq 1 ] || usage
  [ -d "$1" ] || { echo "stopped: $1 does not exist"; return 3; }
  local dir pid
  dir=$(resolve_dir "$1" 0)
  if pid=$(pid_of "$dir"); then
    local p3="?" p3s="?"
    if [ -f "$dir/peer.env" ]; then
      p3=$(. "$dir/peer.env"; echo "$PEER_POP3_PORT"); p3s=$(. "$dir/peer.env"; echo "$PEER_POP3S_PORT")
    fi
    echo "running: PID $pid, pop3 $HOST:$p3, pop3s $HOST:$p3s, dir $dir"
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

main() {
  [ $# -ge 1 ] || usage
  local cmd=$1; shift
  case "$cmd" in
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    seed) cmd_seed "$@" ;;
    status) cmd_status "$@" ;;
    env) cmd_env "$@" ;;
    -h|--help|help) usage ;;
    *) say "unknown command '$cmd'"; usage ;;
  esac
}

main "$@"
