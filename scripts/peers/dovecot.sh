#!/usr/bin/env bash
# Dovecot from Debian's packages as a private POP3/POP3S peer on loopback.
#
#   dovecot.sh start  DIR            install if needed, configure DIR, start, wait for +OK
#   dovecot.sh stop   DIR            SIGTERM by PID, SIGKILL after PEER_STOP_TIMEOUT s
#   dovecot.sh seed   DIR USER FILE...   deliver messages into USER's Maildir (tmp/ -> new/)
#   dovecot.sh status DIR            print state; exit 0 running, 3 stopped
#   dovecot.sh env    DIR            print DIR/peer.env (shell-sourceable)
#
# Everything lives in DIR: dovecot.conf, users (passwd-file), tls/, mail/,
# run/ (base_dir), state/ (state_dir), dovecot.log, dovecot.pid, peer.env.
# The system instance (/etc/dovecot/dovecot.conf) is never used or touched.
#
# Environment (read by start): PEER_POP3_PORT (21110), PEER_POP3S_PORT (21995),
# PEER_PASSWORD (s3cret), PEER_USERS ("alice bob carol"), PEER_MAIL_USER
# (pop3peer), PEER_AUTH_MECHANISMS ("plain login apop"), PEER_PYTHON (the
# project's .venv python), PEER_START_TIMEOUT (20), PEER_STOP_TIMEOUT (10).
#
# Exit codes: 0 ok, 1 error, 2 usage, 3 not running (status), 4 the peer
# cannot run here (not root, no apt-get, or apt-get install failed): callers
# such as the tests skip on 4 and show the reason printed on stderr.
set -euo pipefail

PROG=$(basename "$0")
ROOT=$(cd "$(dirname "$0")/../.." && pwd -P)
HOST=127.0.0.1
PACKAGES=(dovecot-core dovecot-pop3d)
export PATH="$PATH:/usr/sbin:/sbin"   # dovecot, doveconf, useradd live in sbin

say() { echo "$PROG: $*" >&2; }
die() { say "error: $*"; exit 1; }
unavailable() { say "Dovecot peer unavailable here: $*"; exit 4; }
usage() {
  sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

# ----------------------------------------------------------------- paths

# resolve_dir DIR CREATE: absolute, symlink-free path of DIR.
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

# Dovecot drops privileges (auth runs as 'dovecot', mail processes as the
# mail user): every ancestor of DIR must be traversable by others, or logins
# fail later with a vague -ERR [SYS/TEMP].  Add only o+x (no listing).
make_traversable() {
  local path=$1
  chmod 755 "$path"
  path=$(dirname "$path")
  while [ "$path" != / ]; do
    if [ "$(( 0$(stat -c %a "$path") & 1 ))" = 0 ]; then
      chmod o+x "$path" || die "$path is not traversable by others and chmod o+x failed; use a directory such as /var/tmp/pop3suite-peers/NAME"
      say "made $path traversable (o+x): Dovecot's unprivileged processes must reach DIR"
    fi
    path=$(dirname "$path")
  done
}

# ----------------------------------------------------------------- process state

alive() {  # alive PID: the process exists and is not a zombie waiting to be reaped
  local stat
  { read -r stat < "/proc/$1/stat"; } 2>/dev/null || return 1
  stat=${stat##*) }
  [[ "$stat" != [ZX]* ]]
}

pid_of() {  # print the master PID if our Dovecot runs for DIR
  local dir=$1 pid=""
  if [ -s "$dir/run/master.pid" ]; then
    pid=$(head -n1 "$dir/run/master.pid")
  elif [ -s "$dir/dovecot.pid" ]; then
    pid=$(head -n1 "$dir/dovecot.pid")
  fi
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  alive "$pid" || return 1
  # It must be a dovecot master started with our config, not a recycled PID.
  tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q -- "$dir/dovecot.conf" || return 1
  echo "$pid"
}

session_pids() {  # live PIDs whose session id is $1 (the daemonized master is a session leader)
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

# ----------------------------------------------------------------- install

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

ensure_installed() {
  local missing=() pkg
  for pkg in "${PACKAGES[@]}"; do installed "$pkg" || missing+=("$pkg"); done
  if [ ${#missing[@]} -eq 0 ]; then
    command -v dovecot >/dev/null || unavailable "dovecot binary not found although ${PACKAGES[*]} are installed"
    return 0
  fi
  command -v apt-get >/dev/null || unavailable "apt-get is not available; install ${missing[*]} yourself"
  [ "$(id -u)" = 0 ] || unavailable "need root to apt-get install ${missing[*]}"
  say "installing ${missing[*]} from Debian's packages"
  local t0 made_policy=0 log
  t0=$(now)
  # post-install scripts must start no service: policy-rc.d exiting 101.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    made_policy=1
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT   # also when interrupted:
    trap 'rm -f /usr/sbin/policy-rc.d; exit 130' INT TERM
  fi
  log=$(mktemp)
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
       -o DPkg::Lock::Timeout=120 "${missing[@]}" >"$log" 2>&1; then
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
  stop_system_instance
}

# If a post-install script started the system Dovecot anyway, stop it by PID
# (only right after our own install: a system Dovecot someone runs on purpose
# is left alone otherwise).
stop_system_instance() {
  local pidfile=/run/dovecot/master.pid pid
  [ -s "$pidfile" ] || return 0
  pid=$(head -n1 "$pidfile")
  [[ "$pid" =~ ^[0-9]+$ ]] && alive "$pid" || return 0
  say "the package started a system Dovecot (PID $pid); stopping it"
  kill -TERM "$pid" 2>/dev/null || true
  local i
  for i in $(seq 50); do alive "$pid" || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}

ensure_mail_user() {
  local user=$1
  if ! id -u "$user" >/dev/null 2>&1; then
    [ "$(id -u)" = 0 ] || die "user $user does not exist and only root can create it"
    useradd --system --user-group --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin "$user" || die "cannot create system user $user"
    say "created system user $user (mail files are owned by it)"
  fi
}

# ----------------------------------------------------------------- config

write_tls() {
  local dir=$1 python=${PEER_PYTHON:-$ROOT/.venv/bin/python}
  [ -s "$dir/tls/server.pem" ] && [ -s "$dir/tls/server.key" ] && return 0
  [ -x "$python" ] || die "no Python at $python to make the test PKI (run ./dev test once, or set PEER_PYTHON)"
  PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" "$python" -c \
    'import sys; from reference_server import tls; tls.issue(sys.argv[1])' "$dir/tls" \
    || die "reference_server.tls.issue failed for $dir/tls"
  chmod 755 "$dir/tls"
}

write_users() {
  local dir=$1 uid=$2 gid=$3 password=$4 user
  case "$password" in
    *:*|*$'\n'*) die "PEER_PASSWORD may not contain ':' or a newline (passwd-file fields)";;
  esac
  local tmp="$dir/users.tmp"
  : > "$tmp"
  for user in $PEER_USERS; do
    [[ "$user" =~ ^[A-Za-z0-9._-]+$ ]] || die "bad user name '$user' in PEER_USERS"
    # user:{PLAIN}password:uid:gid:gecos:home:shell:extra.  {PLAIN} keeps the
    # secret recoverable, which APOP (and CRAM-MD5) need.
    printf '%s:{PLAIN}%s:%s:%s::%s::\n' "$user" "$password" "$uid" "$gid" "$dir/mail/$user" >> "$tmp"
  done
  # The auth process runs as the 'dovecot' user: it must read this file.
  chown root:dovecot "$tmp"
  chmod 640 "$tmp"
  mv -f "$tmp" "$dir/users"
}

ensure_maildir() {  # ensure_maildir DIR USER UID GID
  local box="$1/mail/$2" sub
  for sub in "" /tmp /new /cur; do
    if [ ! -d "$box$sub" ]; then
      mkdir -p "$box$sub"
      chown "$3:$4" "$box$sub"
      chmod 700 "$box$sub"
    fi
  done
}

write_config() {
  local dir=$1 uid=$2 gid=$3
  local login_procs
  login_procs=$(nproc 2>/dev/null || echo 1)
  cat > "$dir/dovecot.conf.tmp" <<EOF
# Private Dovecot POP3 peer for pop3suite, written by scripts/peers/dovecot.sh.
# Run as: dovecot -c $dir/dovecot.conf   (never the system instance)
# Every setting is explained in docs/peers.md.

instance_name = pop3suite-dovecot-$PEER_POP3_PORT
base_dir = $dir/run
state_dir = $dir/state
log_path = $dir/dovecot.log
info_log_path = $dir/dovecot.log
auth_verbose = yes

protocols = pop3
listen = $HOST

ssl = yes
ssl_cert = <$dir/tls/server.pem
ssl_key = <$dir/tls/server.key
ssl_min_protocol = TLSv1.2

disable_plaintext_auth = no
auth_mechanisms = $PEER_AUTH_MECHANISMS

passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $dir/users
}
userdb {
  driver = passwd-file
  args = username_format=%u $dir/users
}

mail_location = maildir:$dir/mail/%u
first_valid_uid = $uid
first_valid_gid = $gid

pop3_uidl_format = %08Xu%08Xv
pop3_lock_session = yes
mail_max_userip_connections = 1000

service pop3-login {
  inet_listener pop3 {
    address = $HOST
    port = $PEER_POP3_PORT
  }
  inet_listener pop3s {
    address = $HOST
    port = $PEER_POP3S_PORT
    ssl = yes
  }
  service_count = 0
  process_min_avail = $login_procs
}
EOF
  mv -f "$dir/dovecot.conf.tmp" "$dir/dovecot.conf"
}

write_env() {
  local dir=$1
  {
    echo "# Dovecot peer, written by scripts/peers/dovecot.sh start"
    printf 'PEER_NAME=dovecot\n'
    printf 'PEER_DIR=%q\n' "$dir"
    printf 'PEER_HOST=%q\n' "$HOST"
    printf 'PEER_POP3_PORT=%q\n' "$PEER_POP3_PORT"
    printf 'PEER_POP3S_PORT=%q\n' "$PEER_POP3S_PORT"
    printf 'PEER_CA=%q\n' "$dir/tls/ca.pem"
    printf 'PEER_USERS=%q\n' "$PEER_USERS"
    printf 'PEER_PASSWORD=%q\n' "$PEER_PASSWORD"
    printf 'PEER_MAILDIR_ROOT=%q\n' "$dir/mail"
    printf 'PEER_MAIL_USER=%q\n' "$PEER_MAIL_USER"
    # What the server matrix needs to run `pop3suite check` against this peer.
    printf 'PEER_VERSION=%q\n' "$(dpkg-query -W -f='${Version}' dovecot-pop3d 2>/dev/null || echo unknown)"
    printf 'PEER_STLS=yes\n'
    printf 'PEER_USER=alice\n'
    printf 'PEER_SECOND_USER=bob\n'
    printf 'PEER_APOP_USER=carol\n'
    printf 'PEER_SEED=%q\n' "maildir:$dir/mail/alice"
    printf 'PEER_EXPECTATIONS=%q\n' "$ROOT/conformance/expectations/dovecot.toml"
  } > "$dir/peer.env.tmp"
  chmod 600 "$dir/peer.env.tmp"
  mv -f "$dir/peer.env.tmp" "$dir/peer.env"
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

# ----------------------------------------------------------------- commands

cmd_start() {
  [ $# -eq 1 ] || usage
  local dir pid t0
  dir=$(resolve_dir "$1" 1)
  if pid=$(pid_of "$dir"); then
    say "already running (PID $pid) for $dir; nothing to do"
    echo "$pid" > "$dir/dovecot.pid"
    return 0
  fi
  [ "$(id -u)" = 0 ] || unavailable "start needs root (Dovecot switches to the mail user per login)"

  : "${PEER_POP3_PORT:=21110}" "${PEER_POP3S_PORT:=21995}" "${PEER_PASSWORD:=s3cret}"
  : "${PEER_USERS:=alice bob carol}" "${PEER_MAIL_USER:=pop3peer}"
  : "${PEER_AUTH_MECHANISMS:=plain login apop}"
  local port
  for port in "$PEER_POP3_PORT" "$PEER_POP3S_PORT"; do
    [[ "$port" =~ ^[0-9]+$ ]] && [ "$port" -ge 1 ] && [ "$port" -le 65535 ] || die "bad port '$port'"
  done
  [ "$PEER_POP3_PORT" != "$PEER_POP3S_PORT" ] || die "PEER_POP3_PORT and PEER_POP3S_PORT must differ"

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
  mkdir -p "$dir/mail" "$dir/state"
  chmod 755 "$dir/mail" "$dir/state"
  rm -f "$dir/dovecot.pid"
  write_tls "$dir"
  write_users "$dir" "$uid" "$gid" "$PEER_PASSWORD"
  local user
  for user in $PEER_USERS; do ensure_maildir "$dir" "$user" "$uid" "$gid"; done
  write_config "$dir" "$uid" "$gid"
  write_env "$dir"

  # Check the config first: doveconf names the bad line, the daemon only logs.
  doveconf -c "$dir/dovecot.conf" -n >/dev/null 2>"$dir/doveconf.err" \
    || { cat "$dir/doveconf.err" >&2; die "Dovecot rejected $dir/dovecot.conf"; }
  rm -f "$dir/doveconf.err"

  # stdio redirected: a daemon holding the caller's stdout makes $(start) hang.
  if ! dovecot -c "$dir/dovecot.conf" </dev/null >>"$dir/dovecot.stdio.log" 2>&1; then
    tail -n 5 "$dir/dovecot.stdio.log" "$dir/dovecot.log" >&2 2>/dev/null || true
    die "dovecot -c $dir/dovecot.conf failed to start (see $dir/dovecot.log)"
  fi
  local deadline
  deadline=$(( $(date +%s) + ${PEER_START_TIMEOUT:-20} ))
  until greets_ok "$PEER_POP3_PORT"; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      tail -n 20 "$dir/dovecot.log" >&2 2>/dev/null || true
      cmd_stop "$dir" >/dev/null 2>&1 || true
      die "no +OK greeting on $HOST:$PEER_POP3_PORT within ${PEER_START_TIMEOUT:-20} s (see $dir/dovecot.log)"
    fi
    sleep 0.05
  done
  pid=$(pid_of "$dir") || die "Dovecot answers but $dir/run/master.pid names no master of ours"
  echo "$pid" > "$dir/dovecot.pid"
  say "started in $(elapsed "$t0") s: PID $pid, pop3 $HOST:$PEER_POP3_PORT (STLS), pop3s $HOST:$PEER_POP3S_PORT; env in $dir/peer.env"
}

cmd_stop() {
  [ $# -eq 1 ] || usage
  local dir pid
  [ -d "$1" ] || { say "$1 does not exist; not running"; return 0; }
  dir=$(resolve_dir "$1" 0)
  if ! pid=$(pid_of "$dir"); then
    rm -f "$dir/dovecot.pid"
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
    say "PID $pid still alive after ${timeout} s; sending SIGKILL to it and its processes"
    local children
    children=$(session_pids "$pid")
    kill -KILL "$pid" $children 2>/dev/null || true
  fi
  # Children notice the master is gone within moments; wait, then insist.
  for (( i = 0; i < 50; i++ )); do
    [ -z "$(session_pids "$pid")" ] && break
    sleep 0.1
  done
  local left
  left=$(session_pids "$pid")
  [ -z "$left" ] || kill -KILL $left 2>/dev/null || true
  rm -f "$dir/dovecot.pid" "$dir/run/master.pid"
  say "stopped (was PID $pid)"
}

cmd_seed() {
  [ $# -ge 3 ] || usage
  local dir user
  dir=$(resolve_dir "$1" 0); user=$2; shift 2
  [ -f "$dir/peer.env" ] || die "$dir/peer.env is missing (run '$PROG start $dir' first)"
  local PEER_USERS PEER_MAIL_USER
  PEER_USERS=$(. "$dir/peer.env"; echo "$PEER_USERS")
  PEER_MAIL_USER=$(. "$dir/peer.env"; echo "$PEER_MAIL_USER")
  [[ " $PEER_USERS " == *" $user "* ]] || die "unknown user '$user' (peer users: $PEER_USERS)"
  local uid gid
  uid=$(id -u "$PEER_MAIL_USER") || die "mail user $PEER_MAIL_USER is missing"
  gid=$(id -g "$PEER_MAIL_USER")
  ensure_maildir "$dir" "$user" "$uid" "$gid"
  local box="$dir/mail/$user" host file n=0 sec usec name size
  host=$(hostname 2>/dev/null || echo localhost)
  host=${host//\//\\057}; host=${host//:/\\072}
  for file in "$@"; do
    [ -f "$file" ] && [ -r "$file" ] || die "cannot read message file $file"
  done
  for file in "$@"; do
    n=$((n + 1))
    sec=${EPOCHREALTIME%.*}; usec=${EPOCHREALTIME#*.}
    size=$(stat -c %s -- "$file")
    # Maildir unique name time.MusecPpidQn.host; S= is the exact file size.
    name="$sec.M${usec}P$$Q$n.$host,S=$size"
    install -o "$uid" -g "$gid" -m 600 -- "$file" "$box/tmp/$name"
    sync -- "$box/tmp/$name" 2>/dev/null || true
    mv -- "$box/tmp/$name" "$box/new/$name"   # rename(2): atomic delivery
    echo "$box/new/$name"
  done
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
