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

# shellcheck source=scripts/peers/lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)/lib.sh"
LABEL=Dovecot
PID_FILE=dovecot.pid
STOP_CLEAN=(run/master.pid)
PACKAGES=(dovecot-core dovecot-pop3d)
export PATH="$PATH:/usr/sbin:/sbin"   # dovecot, doveconf, useradd live in sbin

pid_of() {  # print the master PID if our Dovecot runs for DIR (its config, not a recycled PID)
  pid_from "$1/dovecot.conf" "$1/run/master.pid" "$1/dovecot.pid"
}

peer_ready() { greets_ok "$PEER_POP3_PORT"; }

# ----------------------------------------------------------------- install

ensure_installed() {
  install_missing "${PACKAGES[@]}"
  if [ -z "$INSTALLED_NOW" ]; then
    command -v dovecot >/dev/null || unavailable "dovecot binary not found although ${PACKAGES[*]} are installed"
    return 0
  fi
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

# ----------------------------------------------------------------- config

write_users() {
  local dir=$1 uid=$2 gid=$3 password=$4 user
  case "$password" in
    *:*|*$'\n'*) die "PEER_PASSWORD may not contain ':' or a newline (passwd-file fields)";;
  esac
  local tmp="$dir/users.tmp"
  : > "$tmp"
  check_user_names '^[A-Za-z0-9._-]+$'
  for user in $PEER_USERS; do
    # user:{PLAIN}password:uid:gid:gecos:home:shell:extra.  {PLAIN} keeps the
    # secret recoverable, which APOP (and CRAM-MD5) need.
    printf '%s:{PLAIN}%s:%s:%s::%s::\n' "$user" "$password" "$uid" "$gid" "$dir/mail/$user" >> "$tmp"
  done
  # The auth process runs as the 'dovecot' user: it must read this file.
  chown root:dovecot "$tmp"
  chmod 640 "$tmp"
  mv -f "$tmp" "$dir/users"
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

# ----------------------------------------------------------------- commands

cmd_start() {
  local dir=$1 pid t0
  [ "$(id -u)" = 0 ] || unavailable "start needs root (Dovecot switches to the mail user per login)"

  : "${PEER_POP3_PORT:=21110}" "${PEER_POP3S_PORT:=21995}" "${PEER_AUTH_MECHANISMS:=plain login apop}"
  default_settings
  check_ports "$PEER_POP3_PORT" "$PEER_POP3S_PORT"

  ensure_installed
  ensure_mail_user "$PEER_MAIL_USER" "mail files are owned by it"
  local uid=$MAIL_UID gid=$MAIL_GID

  t0=$(now)
  make_traversable "$dir" "Dovecot's unprivileged processes must reach DIR"
  mkdir -p "$dir/mail" "$dir/state"
  chmod 755 "$dir/mail" "$dir/state"
  rm -f "$dir/dovecot.pid"
  write_tls "$dir"
  write_users "$dir" "$uid" "$gid" "$PEER_PASSWORD"
  local user
  for user in $PEER_USERS; do ensure_maildir "$dir" "$user" "$uid" "$gid"; done
  write_config "$dir" "$uid" "$gid"
  # What the server matrix needs to run `pop3suite check` against this peer.
  write_env "$dir" "" "$(dpkg-query -W -f='${Version}' dovecot-pop3d 2>/dev/null || echo unknown)" \
    "PEER_MAILDIR_ROOT=$dir/mail" "PEER_SEED=maildir:$dir/mail/alice"

  # Check the config first: doveconf names the bad line, the daemon only logs.
  doveconf -c "$dir/dovecot.conf" -n >/dev/null 2>"$dir/doveconf.err" \
    || { cat "$dir/doveconf.err" >&2; die "Dovecot rejected $dir/dovecot.conf"; }
  rm -f "$dir/doveconf.err"

  # stdio redirected: a daemon holding the caller's stdout makes $(start) hang.
  if ! dovecot -c "$dir/dovecot.conf" </dev/null >>"$dir/dovecot.stdio.log" 2>&1; then
    tail -n 5 "$dir/dovecot.stdio.log" "$dir/dovecot.log" >&2 2>/dev/null || true
    die "dovecot -c $dir/dovecot.conf failed to start (see $dir/dovecot.log)"
  fi
  wait_ready "$dir" "" "${PEER_START_TIMEOUT:-20}" \
    "no +OK greeting on $HOST:$PEER_POP3_PORT within ${PEER_START_TIMEOUT:-20} s (see $dir/dovecot.log)" \
    "$dir/dovecot.log"
  pid=$(pid_of "$dir") || die "Dovecot answers but $dir/run/master.pid names no master of ours"
  echo "$pid" > "$dir/dovecot.pid"
  say "started in $(elapsed "$t0") s: PID $pid, pop3 $HOST:$PEER_POP3_PORT (STLS), pop3s $HOST:$PEER_POP3S_PORT; env in $dir/peer.env"
}

cmd_seed() {
  local dir=$1 user=$2
  shift 2
  local uid=$MAIL_UID gid=$MAIL_GID
  ensure_maildir "$dir" "$user" "$uid" "$gid"
  local box="$dir/mail/$user" host file n=0 sec usec name size
  host=$(hostname 2>/dev/null || echo localhost)
  host=${host//\//\\057}; host=${host//:/\\072}
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

peer_main "$@"
