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

# shellcheck source=scripts/peers/lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)/lib.sh"
LABEL=Cyrus
PID_FILE=cyrus.pid
STOP_CLEAN=(master.pid)
DEBS=(cyrus-common cyrus-pop3d)
CYRUS_ROOT=${PEER_CYRUS_ROOT:-/var/tmp/pop3suite-peers/cyrus-root}
BIN=$CYRUS_ROOT/usr/lib/cyrus/bin
LIBDIR=$CYRUS_ROOT/usr/lib/x86_64-linux-gnu
export PATH="$PATH:/usr/sbin:/sbin"

pid_of() {  # print the master PID if our Cyrus runs for DIR (our config, not a recycled PID)
  pid_from "-M $1/cyrus.conf" "$1/cyrus.pid"
}

peer_ready() { greets_ok "$PEER_POP3_PORT" && [ -S "$READY_DIR/socket/lmtp" ]; }

# ----------------------------------------------------------------- install

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
  # shellcheck disable=SC2046  # LIBDEPS: one package name a line
  install_missing $(cat "$CYRUS_ROOT/LIBDEPS") sasl2-bin libsasl2-modules libsasl2-modules-db
  local exe
  for exe in master pop3d lmtpd ctl_cyrusdb; do
    if LD_LIBRARY_PATH=$LIBDIR ldd "$BIN/$exe" | grep -q 'not found'; then
      LD_LIBRARY_PATH=$LIBDIR ldd "$BIN/$exe" | grep 'not found' >&2
      unavailable "$BIN/$exe lacks shared libraries (see above)"
    fi
  done
  command -v saslpasswd2 >/dev/null || unavailable "saslpasswd2 not found although sasl2-bin is installed"
}

# ----------------------------------------------------------------- config

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

# ----------------------------------------------------------------- commands

cmd_start() {
  local dir=$1 pid t0
  : "${PEER_POP3_PORT:=23110}" "${PEER_POP3S_PORT:=23995}"
  default_settings
  check_user_names '^[a-z][a-z0-9_-]*$' "Cyrus: no dots"
  check_ports "$PEER_POP3_PORT" "$PEER_POP3S_PORT"
  [ ${#dir} -lt 90 ] || die "$dir is too long for a unix socket path (DIR/socket/lmtp < 108 bytes)"

  ensure_installed
  ensure_mail_user "$PEER_MAIL_USER" "Cyrus runs as it"

  t0=$(now)
  make_traversable "$dir" "Cyrus' processes run as $PEER_MAIL_USER"
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
  READY_DIR=$dir
  wait_ready "$dir" "$pid" "${PEER_START_TIMEOUT:-30}" \
    "no +OK greeting on $HOST:$PEER_POP3_PORT (Cyrus logs only to syslog; see $dir/master.log)" \
    "$dir/master.log"
  pid_of "$dir" >/dev/null || die "Cyrus answers but PID $pid is not our master"
  write_env "$dir" "$pid" "$(cat "$CYRUS_ROOT/VERSION")" \
    "PEER_LMTP_SOCKET=$dir/socket/lmtp" "PEER_CYRUS_ROOT=$CYRUS_ROOT"
  say "started in $(elapsed "$t0") s: PID $pid, pop3 $HOST:$PEER_POP3_PORT (STLS), pop3s $HOST:$PEER_POP3S_PORT, lmtp $dir/socket/lmtp; env in $dir/peer.env"
}

# Deliver the way Cyrus' own delivery does: LMTP to lmtpd on DIR/socket/lmtp
# (Python's smtplib.LMTP; line ends sent as CRLF, dot-stuffed, a missing
# final CRLF added, as an MTA's LMTP client does).
# lmtpd adds Return-Path:/Received: on top and, if missing, Message-ID:/Date:.
cmd_seed() {
  local dir=$1 user=$2 python
  shift 2
  [ -S "$dir/socket/lmtp" ] || die "$dir/socket/lmtp is missing: is the peer running?"
  python=$(peer_python)
  [ -x "$python" ] || python=python3
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

peer_main "$@"
