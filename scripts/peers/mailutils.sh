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

# shellcheck source=scripts/peers/lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)/lib.sh"
LABEL="GNU Mailutils"
PID_FILE=pop3d.pid
PACKAGES=(mailutils-pop3d mailutils libnss-wrapper)
export PATH="$PATH:/usr/sbin:/sbin"

pid_of() {  # print the daemon PID if our pop3d runs for DIR (our config, not a recycled PID)
  pid_from "--config-file=$1/pop3d.conf" "$1/pop3d.pid"
}

peer_ready() { greets_ok "$PEER_POP3_PORT"; }

# ----------------------------------------------------------------- install

ensure_installed() {
  install_missing "${PACKAGES[@]}"
  command -v pop3d >/dev/null || unavailable "pop3d not found although mailutils-pop3d is installed"
  NSS_WRAPPER_LIB=$(dpkg -L libnss-wrapper | grep -m1 '/libnss_wrapper\.so$') \
    || unavailable "libnss_wrapper.so not found although libnss-wrapper is installed"
}

# ----------------------------------------------------------------- config

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

# ----------------------------------------------------------------- commands

cmd_start() {
  local dir=$1 pid t0
  [ "$(id -u)" = 0 ] || unavailable "start needs root (pop3d switches to the mail user per login)"

  : "${PEER_POP3_PORT:=22110}" "${PEER_POP3S_PORT:=22995}"
  default_settings
  check_user_names '^[a-z_][a-z0-9._-]*$'
  check_ports "$PEER_POP3_PORT" "$PEER_POP3S_PORT"

  ensure_installed
  ensure_mail_user "$PEER_MAIL_USER" "the spools are owned by it"
  local uid=$MAIL_UID gid=$MAIL_GID user

  t0=$(now)
  make_traversable "$dir" "pop3d runs as $PEER_MAIL_USER after login"
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
  wait_ready "$dir" "$pid" "${PEER_START_TIMEOUT:-20}" \
    "no +OK greeting on $HOST:$PEER_POP3_PORT (see $dir/pop3d.log)" "$dir/pop3d.log"
  pid_of "$dir" >/dev/null || die "pop3d answers but PID $pid is not our pop3d"
  write_env "$dir" "$pid" "$(dpkg-query -W -f='${Version}' mailutils-pop3d 2>/dev/null || echo unknown)" \
    "PEER_SPOOL=$dir/spool"
  say "started in $(elapsed "$t0") s: PID $pid, pop3 $HOST:$PEER_POP3_PORT (STLS), pop3s $HOST:$PEER_POP3S_PORT; env in $dir/peer.env"
}

# Deliver like an mbox MDA (Mailutils' own mda/mail.local do the same):
# dotlock the spool, append a "From " separator line, the message with CRLF
# stored as LF and mboxrd quoting (">*From " gets one more ">", which
# Mailutils' mbox reader removes again), a final newline and a blank line.
cmd_seed() {
  local dir=$1 user=$2
  shift 2
  local uid=$MAIL_UID file n=0 box="$dir/spool/$user" date
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

peer_main "$@"
