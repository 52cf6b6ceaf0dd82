#!/usr/bin/env bash
# Courier POP3 (courier-pop: pop3d + pop3d-ssl) from Debian's packages as a private peer on loopback.
#
#   courier.sh start  DIR            install/extract if needed, configure DIR, start, wait for +OK
#   courier.sh stop   DIR            SIGTERM by PID, SIGKILL after PEER_STOP_TIMEOUT s
#   courier.sh seed   DIR USER FILE...   deliver messages with Courier's deliverquota (Maildir)
#   courier.sh status DIR            print state; exit 0 running, 3 stopped
#   courier.sh env    DIR            print DIR/peer.env (shell-sourceable)
#
# courier-pop conflicts with every other pop3-server (Dovecot, Mailutils), so
# it is never installed: its .deb is fetched with `apt-get download` and
# unpacked into DIR/root.  Its dependencies (courier-base, courier-authdaemon,
# courier-authlib-userdb) install normally.  authlib's paths are compiled in
# (/etc/courier/authdaemonrc, /etc/courier/userdb.dat,
# /run/courier/authdaemon/socket), so the daemons run in a private mount
# namespace (unshare -m) where DIR/etc is bind-mounted on /etc/courier and
# DIR/run on /run/courier (in a private tmpfs /run): the system's
# /etc/courier and /run/courier are never written, and two instances in
# different DIRs do not collide.
#
# Environment (read by start): PEER_POP3_PORT (22110), PEER_POP3S_PORT (22995),
# PEER_PASSWORD (s3cret), PEER_USERS ("alice bob carol"), PEER_MAIL_USER
# (pop3peer), PEER_AUTH_MECHANISMS ("PLAIN LOGIN CRAM-MD5"), PEER_MAX_PER_IP
# (200), PEER_PYTHON (the project's .venv python), PEER_START_TIMEOUT (20),
# PEER_STOP_TIMEOUT (10).
#
# Exit codes: 0 ok, 1 error, 2 usage, 3 not running (status), 4 the peer
# cannot run here (not root, no apt-get, install failed, no mount namespaces).
set -euo pipefail

# shellcheck source=scripts/peers/lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)/lib.sh"
LABEL=Courier
PID_FILE=courier.pid
STOP_CLEAN=('run/authdaemon/socket*')   # a stopped authdaemond leaves a stale socket
# The launcher waits on authdaemond and both couriertcpd; open sessions
# (pop3login/pop3d/couriertls children) must go too: TERM the whole session.
STOP_MODE=all
APOP_USER=""
# Installed normally (no Conflicts); courier-pop itself is only extracted.
PACKAGES=(courier-base courier-authdaemon courier-authlib-userdb libcourier-unicode4 libidn12)
LOGIN=usr/lib/courier/courier/courierpop3login   # inside DIR/root
POP3D=usr/lib/courier/courier/courierpop3d
export PATH="/usr/sbin:/usr/bin:/sbin:/bin:$PATH"

pid_of() {  # print the launcher PID ('courier.sh __run DIR' in its own session) if it runs for DIR
  pid_from "$PROG __run $1 " "$1/courier.pid"
}

peer_ready() { greets_ok "$PEER_POP3_PORT" && tls_greets_ok "$PEER_POP3S_PORT"; }

tls_greets_ok() {  # tls_greets_ok PORT: the implicit-TLS port answers +OK through TLS
  local out
  # -quiet implies -ign_eof: send QUIT so that the server closes the connection.
  out=$(printf 'QUIT\r\n' | timeout 5 openssl s_client -connect "$HOST:$1" -quiet -verify_quiet 2>/dev/null | head -n1) || true
  [[ "$out" == "+OK"* ]]
}

# ----------------------------------------------------------------- install

# courier-pop must match courier-base exactly (Depends: courier-base (= V)).
ensure_extracted() {
  local dir=$1 version
  version=$(dpkg-query -W -f='${Version}' courier-base)
  if [ -x "$dir/root/$LOGIN" ] && [ "$(cat "$dir/root/VERSION" 2>/dev/null)" = "$version" ]; then
    return 0
  fi
  extract_deb courier-pop "$version" "$dir/root"
}

# ----------------------------------------------------------------- config

# DIR/etc becomes /etc/courier inside the namespace.
write_authlib() {
  local dir=$1 uid=$2 gid=$3 password=$4 hash user
  case "$password" in
    *'|'*|*$'\n'*|*$'\t'*) die "PEER_PASSWORD may not contain '|', a tab or a newline (userdb fields)";;
  esac
  mkdir -p "$dir/etc" "$dir/run/authdaemon"
  # userdb: NAME<TAB>field=value|...  systempw is SHA512-crypt (what USER/PASS
  # and SASL PLAIN/LOGIN check); hmac-md5pw is the intermediate HMAC context
  # CRAM-MD5 needs (userdbpw -hmac-md5; authuserdb does not use clearpw for it).
  local hmac
  hash=$(printf '%s' "$password" | openssl passwd -6 -stdin) || die "openssl passwd -6 failed"
  hmac=$(printf '%s\n%s\n' "$password" "$password" | userdbpw -hmac-md5) || die "userdbpw -hmac-md5 failed"
  : > "$dir/etc/userdb"
  chmod 600 "$dir/etc/userdb"
  check_user_names '^[A-Za-z0-9._-]+$'
  for user in $PEER_USERS; do
    printf '%s\tuid=%s|gid=%s|home=%s|mail=%s|systempw=%s|hmac-md5pw=%s\n' \
      "$user" "$uid" "$gid" "$dir/mail/$user" "$dir/mail/$user" "$hash" "$hmac" >> "$dir/etc/userdb"
  done
  rm -f "$dir/etc/userdb.dat" "$dir/etc/userdbshadow.dat"
  makeuserdb -f "$dir/etc/userdb" >/dev/null || die "makeuserdb -f $dir/etc/userdb failed"
  cat > "$dir/etc/authdaemonrc" <<EOF
# Private authdaemonrc for the pop3suite Courier peer (scripts/peers/courier.sh);
# bind-mounted on /etc/courier in the peer's mount namespace only.
authmodulelist="authuserdb"
authmodulelistorig="authuserdb"
daemons=2
authdaemonvar=/run/courier/authdaemon
DEBUG_LOGIN=1
DEFAULTOPTIONS=""
LOGGEROPTS=""
EOF
  # GnuTLS DH parameters for DHE suites (ECDHE needs none); the package made
  # /etc/courier/dhparams.pem at install, which the namespace hides.
  if [ ! -s "$dir/etc/dhparams.pem" ]; then
    if [ -r /etc/courier/dhparams.pem ]; then
      cp /etc/courier/dhparams.pem "$dir/etc/dhparams.pem"
    else
      certtool --generate-dh-params --sec-param medium --outfile "$dir/etc/dhparams.pem" 2>/dev/null \
        || die "certtool --generate-dh-params failed"
    fi
  fi
  chown -R root:courier "$dir/etc"
  chmod 750 "$dir/etc"
  chmod 640 "$dir/etc/authdaemonrc" "$dir/etc/dhparams.pem"
  chmod 600 "$dir/etc/userdb" "$dir/etc/userdbshadow.dat"
  chmod 644 "$dir/etc/userdb.dat"
  # As the package makes /run/courier: root:courier 0775, authdaemon courier 0750.
  chown root:courier "$dir/run"; chmod 775 "$dir/run"
  chown courier:courier "$dir/run/authdaemon"; chmod 750 "$dir/run/authdaemon"
  rm -f "$dir/run/authdaemon/"socket*   # a stopped authdaemond leaves a stale socket
}

# Settings that override Debian's /etc/courier/pop3d and pop3d-ssl (read from
# the extracted package, DIR/root/etc/courier): sourced by the launcher
# inside the namespace, after the package defaults.
write_server_env() {
  local dir=$1
  {
    echo "# Courier pop3d overrides, written by $PROG start (see docs/peers-courier.md)"
    printf 'PORT=%q\n' "$PEER_POP3_PORT"
    printf 'SSLPORT=%q\n' "$PEER_POP3S_PORT"
    printf 'ADDRESS=%q\n' "$HOST"
    printf 'MAXPERIP=%q\n' "$PEER_MAX_PER_IP"
    echo 'MAXDAEMONS=200'
    printf 'POP3AUTH=%q\n' "$PEER_AUTH_MECHANISMS"
    printf 'POP3AUTH_TLS=%q\n' "$PEER_AUTH_MECHANISMS"
    echo 'POP3_STARTTLS=YES'
    echo 'POP3_TLS_REQUIRED=0'
    printf 'TLS_CERTFILE=%q\n' "$dir/tls/courier.pem"
    echo 'TLS_DHPARAMS=/etc/courier/dhparams.pem'
    printf 'TLS_TRUSTCERTS=%q\n' "$dir/tls/ca.pem"
    # GnuTLS priority string (TLS_PROTOCOL is OpenSSL-only): TLS 1.2 and 1.3,
    # as Dovecot's ssl_min_protocol = TLSv1.2.  Unset (Debian's default,
    # "NORMAL") Courier also accepts TLS 1.0 and 1.1.
    echo 'TLS_PRIORITY="NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"'
    echo 'TLS_CACHEFILE=/run/courier/couriersslpop3cache'
  } > "$dir/pop3d.env.tmp"
  mv -f "$dir/pop3d.env.tmp" "$dir/pop3d.env"
}

# ----------------------------------------------------------------- the namespace

# __run DIR: the launcher, started by `start` as `setsid unshare -m
# --propagation private courier.sh __run DIR`.  Private mounts, then
# authdaemond and the two couriertcpd listeners in the foreground (logging
# to stderr, i.e. to files: Courier logs to syslog only through courierlogger).
cmd_run() {
  [ $# -eq 1 ] || usage
  local dir=$1
  mount --bind "$dir/etc" /etc/courier
  # A private /run: /run/courier need not exist on the host (it is made at
  # boot by the package's tmpfiles.d, which this image does not run).
  mount -t tmpfs -o mode=755 tmpfs /run
  mkdir /run/courier
  mount --bind "$dir/run" /run/courier
  # Debian's settings first (as /usr/lib/courier/pop3d does), then ours.
  # The package's files reference unset variables (TLS_PROTOCOL): no nounset.
  # shellcheck disable=SC1091
  set +u -a
  . "$dir/root/etc/courier/pop3d"; . "$dir/root/etc/courier/pop3d-ssl"; . "$dir/pop3d.env"
  set -u +a
  # As pop3d-ssl's init script: an empty session cache owned by courier.
  : > "$TLS_CACHEFILE"; chown courier:courier "$TLS_CACHEFILE"; chmod 600 "$TLS_CACHEFILE"
  local root=$dir/root tcpd=(/usr/sbin/couriertcpd -address="$ADDRESS" -maxprocs="$MAXDAEMONS"
    -maxperip="$MAXPERIP" $TCPDOPTS)
  local -a kids=()
  trap 'kill -TERM "${kids[@]}" 2>/dev/null; wait; exit 0' TERM INT
  /usr/lib/courier/courier-authlib/authdaemond </dev/null >>"$dir/authdaemond.log" 2>&1 &
  kids+=($!)
  local i
  for (( i = 0; i < 100; i++ )); do [ -S /run/courier/authdaemon/socket ] && break; sleep 0.05; done
  "${tcpd[@]}" "$PORT" "$root/$LOGIN" "$root/$POP3D" "$MAILDIRPATH" \
    </dev/null >>"$dir/pop3d.log" 2>&1 &
  kids+=($!)
  # As pop3d-ssl: TLS first (couriertls, dropping to 'courier'), no STLS inside.
  POP3_TLS=1 POP3_STARTTLS=NO POP3_TLS_REQUIRED=0 \
    "${tcpd[@]}" "$SSLPORT" "$COURIERTLS" -server -tcpd -user=courier \
    "$root/$LOGIN" "$root/$POP3D" "$MAILDIRPATH" </dev/null >>"$dir/pop3d-ssl.log" 2>&1 &
  kids+=($!)
  wait
}

# ----------------------------------------------------------------- commands

cmd_start() {
  local dir=$1 pid t0
  need_namespace "mount namespace, privilege drops"

  : "${PEER_POP3_PORT:=22110}" "${PEER_POP3S_PORT:=22995}"
  : "${PEER_AUTH_MECHANISMS:=PLAIN LOGIN CRAM-MD5}" "${PEER_MAX_PER_IP:=200}"
  default_settings
  check_ports "$PEER_POP3_PORT" "$PEER_POP3S_PORT"
  [[ "$PEER_MAX_PER_IP" =~ ^[0-9]+$ ]] || die "bad PEER_MAX_PER_IP '$PEER_MAX_PER_IP'"

  install_missing "${PACKAGES[@]}"
  ensure_extracted "$dir"
  ensure_mail_user "$PEER_MAIL_USER" "mail files are owned by it"
  local uid=$MAIL_UID gid=$MAIL_GID user

  t0=$(now)
  make_traversable "$dir" "Courier's unprivileged processes must reach DIR"
  mkdir -p "$dir/mail"; chmod 755 "$dir/mail"
  rm -f "$dir/courier.pid"
  write_tls "$dir"
  # couriertls wants key and certificate in one file (TLS_CERTFILE); it reads
  # it after dropping to 'courier' (pop3d-ssl: -user=courier; STLS after the
  # login process dropped privileges), so 'courier' must read it.
  cat "$dir/tls/server.key" "$dir/tls/server.pem" > "$dir/tls/courier.pem.tmp"
  chown root:courier "$dir/tls/courier.pem.tmp"
  chmod 640 "$dir/tls/courier.pem.tmp"
  mv -f "$dir/tls/courier.pem.tmp" "$dir/tls/courier.pem"
  write_authlib "$dir" "$uid" "$gid" "$PEER_PASSWORD"
  for user in $PEER_USERS; do ensure_maildir "$dir" "$user" "$uid" "$gid"; done
  write_server_env "$dir"

  # stdio redirected: a daemon holding the caller's stdout makes $(start) hang.
  setsid unshare -m --propagation private bash "$SELF" __run "$dir" </dev/null >>"$dir/launcher.log" 2>&1 &
  pid=$!
  echo "$pid" > "$dir/courier.pid"
  wait_ready "$dir" "$pid" "${PEER_START_TIMEOUT:-20}" \
    "no +OK greeting on $HOST:$PEER_POP3_PORT and (TLS) $PEER_POP3S_PORT within ${PEER_START_TIMEOUT:-20} s (see $dir/*.log)" \
    "$dir/launcher.log" "$dir/authdaemond.log" "$dir/pop3d.log" "$dir/pop3d-ssl.log"
  # No PEER_APOP_USER: Courier's pop3login has no APOP command.
  write_env "$dir" "$pid" "$(cat "$dir/root/VERSION")" "PEER_MAILDIR_ROOT=$dir/mail"
  say "started in $(elapsed "$t0") s: PID $pid, pop3 $HOST:$PEER_POP3_PORT (STLS), pop3s $HOST:$PEER_POP3S_PORT; env in $dir/peer.env"
}

# Courier's own Maildir delivery agent, deliverquota, run as the mail user
# (tmp/ then new/), after turning CRLF into LF as Courier's MTA does on
# receipt.  Bare LF, bare CR and a missing final newline are kept.
cmd_seed() {
  local dir=$1 user=$2
  shift 2
  local uid=$MAIL_UID gid=$MAIL_GID file n=0
  ensure_maildir "$dir" "$user" "$uid" "$gid"
  for file in "$@"; do
    # Courier's MTA stores LF line ends and pop3d adds the CR when sending:
    # a CRLF file stored as is would be served with CR CR LF.
    perl -0777 -pe 's/\r\n/\n/g' < "$file" | (umask 077; setpriv --reuid="$uid" --regid="$gid" --clear-groups \
      deliverquota.courier "$dir/mail/$user") || die "deliverquota.courier failed for $file"
    n=$((n + 1))
  done
  say "seeded $n message(s) for $user"
}

# exit here: bash reads a script as it runs, so a long-running launcher must
# not read on after main if the file is edited meanwhile.
peer_main "$@"; exit
