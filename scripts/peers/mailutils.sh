#!/usr/bin/env bash
# GNU Mailutils pop3d from Debian's packages as a private POP3/POP3S peer on loopback.
#
#   mailutils.sh start  DIR              install if needed, configure DIR, start, wait for +OK
#   mailutils.sh stop   DIR              SIGTERM by PID, SIGKILL after PEER_STOP_TIMEOUT s
#   mailutils.sh seed   DIR USER FILE... append messages to USER's mbox spool (dotlocked, mboxrd)
#   mailutils.sh status DIR              print state; exit 0 running, 3 stopped
#   mailutils.sh env    DIR              print DIR/peer.env (shell-sourceable)
#
# Everything lives in DIR: pop3d.conf, passwd + group (nss_wrapper), apop.db,
# tls/, spool/USER (mbox), pop3d.log, pop3d.pid, peer.env.  The accounts
# exist only for this pop3d: libnss_wrapper (LD_PRELOAD) shows it DIR/passwd
# instead of /etc/passwd, so no system user is created and /etc is untouched.
#
# Environment (read by start): PEER_POP3_PORT (22110), PEER_POP3S_PORT (22995),
# PEER_PASSWORD (s3cret), PEER_USERS ("alice bob carol"), PEER_MAIL_USER
# (pop3peer), PEER_PYTHON (the project's .venv python), PEER_START_TIMEOUT (20),
# PEER_STOP_TIMEOUT (10).
#
# Exit codes: 0 ok, 1 error, 2 usage, 3 not running (status), 4 the peer
# cannot run here (not root, no apt-get, or apt-get install failed).
set -euo pipefail

PROG=$(basename "$0")
ROOT=$(cd "$(dirname "$0")/../.." && pwd -P)
SELF="$ROOT/scripts/peers/$PROG"
HOST=127.0.0.1
PACKAGES=(mailutils-pop3d mailutils libnss-wrapper)
export PATH="$PATH:/usr/sbin:/sbin"

say() { echo "$PROG: $*" >&2; }
die() { say "error: $*"; exit 1; }
unavailable() { say "Mailutils peer unavailable here: $*"; exit 4; }
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

# pop3d switches to the mail user after login: every ancestor of DIR must be
# traversable by others, or opening the spool fails.  Add only o+x.
make_traversable() {
  local path=$1
  chmod 755 "$path"
  path=$(dirname "$path")
  while [ "$path" != / ]; do
    if [ "$(( 0$(stat -c %a "$path") & 1 ))" = 0 ]; then
      chmod o+x "$path" || die "$path is not traversable by others and chmod o+x failed; use a directory such as /var/tmp/pop3suite-peers/NAME"
      say "made $path traversable (o+x): pop3d runs as $PEER_MAIL_USER after login"
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

pid_of() {  # print the daemon PID if our pop3d runs for DIR
  local dir=$1 pid=""
  [ -s "$dir/pop3d.pid" ] && pid=$(head -n1 "$dir/pop3d.pid")
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  alive "$pid" || return 1
  # Only a pop3d started with our config, not a recycled PID.
  tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q -- "--config-file=$dir/pop3d.conf" || return 1
  echo "$pid"
}

session_pids() {  # live PIDs whose session id is $1 (pop3d is started by setsid)
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

ensure_installed() {
  local missing=() pkg
  for pkg in "${PACKAGES[@]}"; do installed "$pkg" || missing+=("$pkg"); done
  if [ ${#missing[@]} -gt 0 ]; then
    command -v apt-get >/dev/null || unavailable "apt-get is not available; install ${missing[*]} yourself"
    say "installing ${missing[*]} from Debian's packages"
    local t0 made_policy=0 log
    t0=$(now)
    if [ ! -e /usr/sbin/policy-rc.d ]; then   # package scripts must start no service
      printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
      chmod 755 /usr/sbin/policy-rc.d
      made_policy=1
      trap 'rm -f /usr/sbin/policy-rc.d' EXIT
      trap 'rm -f /usr/sbin/policy-rc.d; exit 130' INT TERM
    fi
    log=$(mktemp)
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
         -o DPkg::Lock::Timeout=900 "${missing[@]}" >"$log" 2>&1; then
      [ $made_policy = 1 ] && rm -f /usr/sbin/policy-rc.d
      local reason
      tail -n 20 "$log" >&2
      reason=$(grep -E '^(E|W):' "$log" | tail -n 1 || true)
      rm -f "$log"
      unavailable "apt-get install ${missing[*]} failed${reason:+: $reason}"
    fi
    rm -f "$log"
    if [ $made_policy = 1 ]; then rm -f /usr/sbin/policy-rc.d; trap - EXIT INT TERM; fi
    say "installed ${missing[*]} in $(elapsed "$t0") s"
  fi
  command -v pop3d >/dev/null || unavailable "pop3d not found although mailutils-pop3d is installed"
  NSS_WRAPPER_LIB=$(dpkg -L libnss-wrapper | grep -m1 '/libnss_wrapper\.so$') \
    || unavailable "libnss_wrapper.so not found although libnss-wrapper is installed"
}

ensure_mail_user() {
  local user=$1
  if ! id -u "$user" >/dev/null 2>&1; then
    useradd --system --user-group --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin "$user" || die "cannot create system user $user"
    say "created system user $user (the spools are owned by it)"
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

# The private user database: the system's passwd/group (pop3d still needs
# root, mail, ...) minus any same-named accounts, plus our users with a
# SHA512-crypt hash in the password field (Mailutils' "generic"
# authentication compares crypt(3) of the password with pw_passwd).
write_users() {
  local dir=$1 uid=$2 gid=$3 password=$4 user hash
  case "$password" in
    *:*|*$'\n'*) die "PEER_PASSWORD may not contain ':' or a newline (passwd fields)";;
  esac
  hash=$(printf '%s' "$password" | openssl passwd -6 -stdin) || die "openssl passwd -6 failed"
  local pattern="^($(echo $PEER_USERS | tr ' ' '|')):"
  grep -vE "$pattern" /etc/passwd > "$dir/passwd.tmp" || true
  for user in $PEER_USERS; do
    printf '%s:%s:%s:%s:pop3suite peer:%s:/usr/sbin/nologin\n' \
      "$user" "$hash" "$uid" "$gid" "$dir/spool" >> "$dir/passwd.tmp"
  done
  chmod 600 "$dir/passwd.tmp"
  mv -f "$dir/passwd.tmp" "$dir/passwd"
  cp /etc/group "$dir/group.tmp"
  mv -f "$dir/group.tmp" "$dir/group"
  # APOP secrets: a GDBM file made by Mailutils' own popauth from "user password" lines.
  local plain
  plain=$(mktemp "$dir/apop.XXXXXX")
  for user in $PEER_USERS; do printf '%s %s\n' "$user" "$password" >> "$plain"; done
  rm -f "$dir/apop.db"
  popauth -c -f "$plain" -o "$dir/apop.db" -P 600 || { rm -f "$plain"; die "popauth -c failed"; }
  rm -f "$plain"
}

ensure_spool() {  # ensure_spool DIR USER UID: an empty mbox owned by the mail user
  local box="$1/spool/$2"
  if [ ! -e "$box" ]; then
    : > "$box"
    chown "$3:mail" "$box" 2>/dev/null || chown "$3" "$box"
    chmod 600 "$box"
  fi
}

write_config() {
  local dir=$1
  cat > "$dir/pop3d.conf.tmp" <<EOF
# Private GNU Mailutils pop3d peer for pop3suite, written by scripts/peers/mailutils.sh.
# Run as: pop3d --config-file=$dir/pop3d.conf  (with nss_wrapper; see docs/peers-mailutils.md)
logging {
  syslog no;              # there is no syslog daemon: log to stderr = $dir/pop3d.log
  session-id yes;
};
mode daemon;
foreground yes;           # our own setsid child: its PID is the one stop kills
pidfile "$dir/pop3d.pid";
max-children 500;         # default 20 refuses a load test's connections
mailbox {
  mail-spool "$dir/spool";
  mailbox-type mbox;
};
auth {
  authentication generic; # crypt(3) against pw_passwd of the (wrapped) passwd entry
  authorization system;   # getpwnam via nss_wrapper: uid, gid, home
};
apop-database-file "$dir/apop.db";
tls {
  ssl-certificate-file "$dir/tls/server.pem";
  ssl-key-file "$dir/tls/server.key";
  # GnuTLS's NORMAL still allows TLS 1.0/1.1 here; RFC 8996 forbids them
  # (the Dovecot peer sets ssl_min_protocol = TLSv1.2 likewise).
  ssl-priorities "NORMAL:-VERS-TLS1.0:-VERS-TLS1.1";
};
server $HOST:$PEER_POP3_PORT {
  tls-mode stls;          # plain, STLS offered and optional
  backlog 128;            # the default listen backlog is 4
};
server $HOST:$PEER_POP3S_PORT {
  tls-mode connection;    # implicit TLS (RFC 8314)
  backlog 128;
};
EOF
  mv -f "$dir/pop3d.conf.tmp" "$dir/pop3d.conf"
}

write_env() {
  local dir=$1 seed
  seed=$(printf '%q ' "$SELF" seed "$dir")
  {
    echo "# GNU Mailutils peer, written by scripts/peers/mailutils.sh start"
    printf 'PEER_NAME=mailutils\n'
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
    printf 'PEER_SPOOL=%q\n' "$dir/spool"
    printf 'PEER_VERSION=%q\n' "$(dpkg-query -W -f='${Version}' mailutils-pop3d 2>/dev/null || echo unknown)"
    printf 'PEER_PID=%q\n' "$2"
    printf 'PEER_SEED=%q\n' "exec:${seed% }"
    printf 'PEER_EXPECTATIONS=%q\n' "$ROOT/conformance/expectations/mailutils.toml"
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
  [ "$(id -u)" = 0 ] || unavailable "start needs root (pop3d switches to the mail user per login)"

  : "${PEER_POP3_PORT:=22110}" "${PEER_POP3S_PORT:=22995}" "${PEER_PASSWORD:=s3cret}"
  : "${PEER_USERS:=alice bob carol}" "${PEER_MAIL_USER:=pop3peer}"
  local port user
  for port in "$PEER_POP3_PORT" "$PEER_POP3S_PORT"; do
    [[ "$port" =~ ^[0-9]+$ ]] && [ "$port" -ge 1 ] && [ "$port" -le 65535 ] || die "bad port '$port'"
  done
  [ "$PEER_POP3_PORT" != "$PEER_POP3S_PORT" ] || die "PEER_POP3_PORT and PEER_POP3S_PORT must differ"
  for user in $PEER_USERS; do
    [[ "$user" =~ ^[a-z_][a-z0-9._-]*$ ]] || die "bad user name '$user' in PEER_USERS"
  done
  for port in "$PEER_POP3_PORT" "$PEER_POP3S_PORT"; do
    ! port_busy "$port" || die "$HOST:$port is in use by another program; choose PEER_POP3_PORT / PEER_POP3S_PORT"
  done

  ensure_installed
  ensure_mail_user "$PEER_MAIL_USER"
  local uid gid
  uid=$(id -u "$PEER_MAIL_USER"); gid=$(id -g "$PEER_MAIL_USER")
  [ "$uid" != 0 ] || die "PEER_MAIL_USER must not be root"

  t0=$(now)
  make_traversable "$dir"
  mkdir -p "$dir/spool"
  # pop3d runs as the mail user when it dotlocks (spool/USER.lock): it must write here.
  chown "$uid:$gid" "$dir/spool"; chmod 755 "$dir/spool"
  rm -f "$dir/pop3d.pid"
  write_tls "$dir"
  write_users "$dir" "$uid" "$gid" "$PEER_PASSWORD"
  for user in $PEER_USERS; do ensure_spool "$dir" "$user" "$uid"; done
  write_config "$dir"

  pop3d --config-file="$dir/pop3d.conf" --config-lint >"$dir/lint.err" 2>&1 \
    || { cat "$dir/lint.err" >&2; die "pop3d rejected $dir/pop3d.conf"; }
  rm -f "$dir/lint.err"

  # A session of its own (setsid) so stop can find every child; stdio
  # redirected so $(start) does not hang; nss_wrapper for the private users.
  NSS_WRAPPER_PASSWD="$dir/passwd" NSS_WRAPPER_GROUP="$dir/group" LD_PRELOAD="$NSS_WRAPPER_LIB" \
    setsid pop3d --config-file="$dir/pop3d.conf" </dev/null >>"$dir/pop3d.log" 2>&1 &
  pid=$!
  echo "$pid" > "$dir/pop3d.pid"
  local deadline
  deadline=$(( $(date +%s) + ${PEER_START_TIMEOUT:-20} ))
  until greets_ok "$PEER_POP3_PORT"; do
    if ! alive "$pid" || [ "$(date +%s)" -ge "$deadline" ]; then
      tail -n 20 "$dir/pop3d.log" >&2 2>/dev/null || true
      cmd_stop "$dir" >/dev/null 2>&1 || true
      die "no +OK greeting on $HOST:$PEER_POP3_PORT (see $dir/pop3d.log)"
    fi
    sleep 0.05
  done
  pid_of "$dir" >/dev/null || die "pop3d answers but PID $pid is not our pop3d"
  write_env "$dir" "$pid"
  say "started in $(elapsed "$t0") s: PID $pid, pop3 $HOST:$PEER_POP3_PORT (STLS), pop3s $HOST:$PEER_POP3S_PORT; env in $dir/peer.env"
}

cmd_stop() {
  [ $# -eq 1 ] || usage
  local dir pid
  [ -d "$1" ] || { say "$1 does not exist; not running"; return 0; }
  dir=$(resolve_dir "$1" 0)
  if ! pid=$(pid_of "$dir"); then
    rm -f "$dir/pop3d.pid"
    say "not running ($dir)"
    return 0
  fi
  local timeout=${PEER_STOP_TIMEOUT:-10} i
  kill -TERM "$pid" 2>/dev/null || true
  for (( i = 0; i < timeout * 10; i++ )); do
    alive "$pid" || break
    sleep 0.1
  done
  if alive "$pid"; then
    say "PID $pid still alive after ${timeout} s; sending SIGKILL to it and its session"
    kill -KILL "$pid" $(session_pids "$pid") 2>/dev/null || true
  fi
  # Session children (one per connection) may outlive the daemon: TERM, then KILL.
  local left
  left=$(session_pids "$pid")
  [ -z "$left" ] || kill -TERM $left 2>/dev/null || true
  for (( i = 0; i < 30; i++ )); do
    [ -z "$(session_pids "$pid")" ] && break
    sleep 0.1
  done
  left=$(session_pids "$pid")
  [ -z "$left" ] || kill -KILL $left 2>/dev/null || true
  rm -f "$dir/pop3d.pid"
  say "stopped (was PID $pid)"
}

# Deliver like an mbox MDA (Mailutils' own mda/mail.local do the same):
# dotlock the spool, append a "From " separator line, the message with CRLF
# stored as LF and mboxrd quoting (">*From " gets one more ">", which
# Mailutils' mbox reader removes again), a final newline and a blank line.
cmd_seed() {
  [ $# -ge 3 ] || usage
  local dir user
  dir=$(resolve_dir "$1" 0); user=$2; shift 2
  [ -f "$dir/peer.env" ] || die "$dir/peer.env is missing (run '$PROG start $dir' first)"
  local PEER_USERS PEER_MAIL_USER
  PEER_USERS=$(. "$dir/peer.env"; echo "$PEER_USERS")
  PEER_MAIL_USER=$(. "$dir/peer.env"; echo "$PEER_MAIL_USER")
  [[ " $PEER_USERS " == *" $user "* ]] || die "unknown user '$user' (peer users: $PEER_USERS)"
  local uid file n=0 box="$dir/spool/$user" date
  uid=$(id -u "$PEER_MAIL_USER") || die "mail user $PEER_MAIL_USER is missing"
  for file in "$@"; do
    [ -f "$file" ] && [ -r "$file" ] || die "cannot read message file $file"
  done
  ensure_spool "$dir" "$user" "$uid"
  dotlock.mailutils --retry=100 --delay=1 --pid-check "$box" \
    || die "cannot dotlock $box (a POP3 session holds it?)"
  trap 'dotlock.mailutils --unlock "$box" 2>/dev/null || true' EXIT
  for file in "$@"; do
    n=$((n + 1))
    date=$(LC_ALL=C date -u '+%a %b %e %H:%M:%S %Y')
    {
      printf 'From pop3suite@localhost %s\n' "$date"
      sed -e 's/\r$//' -e 's/^\(>*From \)/>\1/' -- "$file"
      [ ! -s "$file" ] || [ -z "$(tail -c1 -- "$file")" ] || printf '\n'
      printf '\n'
    } >> "$box"
  done
  sync -- "$box" 2>/dev/null || true
  dotlock.mailutils --unlock "$box" || true
  trap - EXIT
  say "seeded $n message(s) for $user"
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
