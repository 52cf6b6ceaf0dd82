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

PROG=$(basename "$0")
SELF=$(cd "$(dirname "$0")" && pwd -P)/$PROG
ROOT=$(cd "$(dirname "$0")/../.." && pwd -P)
HOST=127.0.0.1
# Installed normally (no Conflicts); courier-pop itself is only extracted.
PACKAGES=(courier-base courier-authdaemon courier-authlib-userdb libcourier-unicode4 libidn12)
DEB_CACHE=/var/cache/pop3suite-peers
LOGIN=usr/lib/courier/courier/courierpop3login   # inside DIR/root
POP3D=usr/lib/courier/courier/courierpop3d
export PATH="/usr/sbin:/usr/bin:/sbin:/bin:$PATH"

say() { echo "$PROG: $*" >&2; }
die() { say "error: $*"; exit 1; }
unavailable() { say "Courier peer unavailable here: $*"; exit 4; }
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

# courierpop3d runs as the mail user and couriertls as 'courier': every
# ancestor of DIR must be traversable by others.  Add only o+x (no listing).
make_traversable() {
  local path=$1
  chmod 755 "$path"
  path=$(dirname "$path")
  while [ "$path" != / ]; do
    if [ "$(( 0$(stat -c %a "$path") & 1 ))" = 0 ]; then
      chmod o+x "$path" || die "$path is not traversable by others and chmod o+x failed; use a directory such as /var/tmp/pop3suite-peers/NAME"
      say "made $path traversable (o+x): Courier's unprivileged processes must reach DIR"
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

pid_of() {  # print the launcher PID if our Courier runs for DIR
  local dir=$1 pid=""
  [ -s "$dir/courier.pid" ] && pid=$(head -n1 "$dir/courier.pid")
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  alive "$pid" || return 1
  # Our launcher ('courier.sh __run DIR' in its own session), not a recycled PID.
  tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q -- "$PROG __run $dir " || return 1
  echo "$pid"
}

session_pids() {  # live PIDs whose session id is $1 (the launcher is a session leader)
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

with_policy_rc_d() {  # run "$@" with a policy-rc.d that forbids starting services
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

ensure_installed() {
  local missing=() pkg
  for pkg in "${PACKAGES[@]}"; do installed "$pkg" || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null || unavailable "apt-get is not available; install ${missing[*]} yourself"
  say "installing ${missing[*]} from Debian's packages"
  local t0 log
  t0=$(now)
  log=$(mktemp)
  if ! with_policy_rc_d env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
       -o DPkg::Lock::Timeout=900 "${missing[@]}" >"$log" 2>&1; then
    local reason
    tail -n 20 "$log" >&2
    reason=$(grep -E '^(E|W):' "$log" | tail -n 1 || true)
    rm -f "$log"
    unavailable "apt-get install ${missing[*]} failed${reason:+: $reason}"
  fi
  rm -f "$log"
  say "installed ${missing[*]} in $(elapsed "$t0") s"
}

# courier-pop must match courier-base exactly (Depends: courier-base (= V)).
ensure_extracted() {
  local dir=$1 version deb
  version=$(dpkg-query -W -f='${Version}' courier-base)
  if [ -x "$dir/root/$LOGIN" ] && [ "$(cat "$dir/root/VERSION" 2>/dev/null)" = "$version" ]; then
    return 0
  fi
  mkdir -p "$DEB_CACHE"
  deb=$(ls "$DEB_CACHE"/courier-pop_"${version/*:/}"_*.deb 2>/dev/null | head -n1 || true)
  if [ -z "$deb" ]; then
    command -v apt-get >/dev/null || unavailable "apt-get is not available to download courier-pop"
    say "downloading courier-pop $version (conflicts with pop3-server: extracted, not installed)"
    # apt drops to _apt for downloads: let it write the cache.
    chown _apt "$DEB_CACHE" 2>/dev/null || true
    (cd "$DEB_CACHE" && apt-get download -q -o DPkg::Lock::Timeout=900 "courier-pop=$version" >/dev/null 2>"$DEB_CACHE/download.err") \
      || { cat "$DEB_CACHE/download.err" >&2; unavailable "apt-get download courier-pop=$version failed"; }
    deb=$(ls "$DEB_CACHE"/courier-pop_"${version/*:/}"_*.deb 2>/dev/null | head -n1 || true)
    [ -n "$deb" ] || unavailable "apt-get download courier-pop=$version left no .deb in $DEB_CACHE"
  fi
  rm -rf "$dir/root"
  dpkg-deb -x "$deb" "$dir/root" || die "dpkg-deb -x $deb failed"
  dpkg-deb -f "$deb" Version > "$dir/root/VERSION"
}

ensure_mail_user() {
  local user=$1
  if ! id -u "$user" >/dev/null 2>&1; then
    useradd --system --user-group --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin "$user" || die "cannot create system user $user"
    say "created system user $user (mail files are owned by it)"
  fi
}

# ----------------------------------------------------------------- config

write_tls() {
  local dir=$1 python=${PEER_PYTHON:-$ROOT/.venv/bin/python}
  if ! [ -s "$dir/tls/server.pem" ] || ! [ -s "$dir/tls/server.key" ]; then
    [ -x "$python" ] || die "no Python at $python to make the test PKI (set PEER_PYTHON)"
    PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" "$python" -c \
      'import sys; from reference_server import tls; tls.issue(sys.argv[1])' "$dir/tls" \
      || die "reference_server.tls.issue failed for $dir/tls"
  fi
  chmod 755 "$dir/tls"
  # couriertls wants key and certificate in one file (TLS_CERTFILE); it reads
  # it after dropping to 'courier' (pop3d-ssl: -user=courier; STLS after the
  # login process dropped privileges), so 'courier' must read it.
  cat "$dir/tls/server.key" "$dir/tls/server.pem" > "$dir/tls/courier.pem.tmp"
  chown root:courier "$dir/tls/courier.pem.tmp"
  chmod 640 "$dir/tls/courier.pem.tmp"
  mv -f "$dir/tls/courier.pem.tmp" "$dir/tls/courier.pem"
}

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
  for user in $PEER_USERS; do
    [[ "$user" =~ ^[A-Za-z0-9._-]+$ ]] || die "bad user name '$user' in PEER_USERS"
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

write_env() {
  local dir=$1
  {
    echo "# Courier peer, written by scripts/peers/courier.sh start"
    printf 'PEER_NAME=courier\n'
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
    # No PEER_APOP_USER: Courier's pop3login has no APOP command.
    printf 'PEER_MAILDIR_ROOT=%q\n' "$dir/mail"
    printf 'PEER_MAIL_USER=%q\n' "$PEER_MAIL_USER"
    printf 'PEER_VERSION=%q\n' "$(cat "$dir/root/VERSION")"
    printf 'PEER_PID=%q\n' "$2"
    printf 'PEER_SEED=%q\n' "exec:$SELF seed $dir"
    printf 'PEER_EXPECTATIONS=%q\n' "$ROOT/conformance/expectations/courier.toml"
  } > "$dir/peer.env.tmp"
  chmod 600 "$dir/peer.env.tmp"
  mv -f "$dir/peer.env.tmp" "$dir/peer.env"
}

# ----------------------------------------------------------------- the namespace

# __run DIR: the launcher, started by `start` as `setsid unshare -m
# --propagation private courier.sh __run DIR`.  Private mounts, then
# authdaemond and the two couriertcpd listeners in the foreground (logging
# to stderr, i.e. to files: Courier logs to syslog only through courierlogger).
cmd_run() {
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

tls_greets_ok() {  # tls_greets_ok PORT: the implicit-TLS port answers +OK through TLS
  local out
  # -quiet implies -ign_eof: send QUIT so that the server closes the connection.
  out=$(printf 'QUIT\r\n' | timeout 5 openssl s_client -connect "$HOST:$1" -quiet -verify_quiet 2>/dev/null | head -n1) || true
  [[ "$out" == "+OK"* ]]
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
  [ "$(id -u)" = 0 ] || unavailable "start needs root (mount namespace, privilege drops)"
  command -v unshare >/dev/null || unavailable "unshare (util-linux) is missing"
  unshare -m --propagation private true 2>/dev/null || unavailable "cannot create a mount namespace (unshare -m)"

  : "${PEER_POP3_PORT:=22110}" "${PEER_POP3S_PORT:=22995}" "${PEER_PASSWORD:=s3cret}"
  : "${PEER_USERS:=alice bob carol}" "${PEER_MAIL_USER:=pop3peer}"
  : "${PEER_AUTH_MECHANISMS:=PLAIN LOGIN CRAM-MD5}" "${PEER_MAX_PER_IP:=200}"
  local port
  for port in "$PEER_POP3_PORT" "$PEER_POP3S_PORT"; do
    [[ "$port" =~ ^[0-9]+$ ]] && [ "$port" -ge 1 ] && [ "$port" -le 65535 ] || die "bad port '$port'"
    ! port_busy "$port" || die "$HOST:$port is in use by another program; choose PEER_POP3_PORT / PEER_POP3S_PORT"
  done
  [ "$PEER_POP3_PORT" != "$PEER_POP3S_PORT" ] || die "PEER_POP3_PORT and PEER_POP3S_PORT must differ"
  [[ "$PEER_MAX_PER_IP" =~ ^[0-9]+$ ]] || die "bad PEER_MAX_PER_IP '$PEER_MAX_PER_IP'"

  ensure_installed
  ensure_extracted "$dir"
  ensure_mail_user "$PEER_MAIL_USER"
  local uid gid user
  uid=$(id -u "$PEER_MAIL_USER"); gid=$(id -g "$PEER_MAIL_USER")
  [ "$uid" != 0 ] || die "PEER_MAIL_USER must not be root"

  t0=$(now)
  make_traversable "$dir"
  mkdir -p "$dir/mail"; chmod 755 "$dir/mail"
  rm -f "$dir/courier.pid"
  write_tls "$dir"
  write_authlib "$dir" "$uid" "$gid" "$PEER_PASSWORD"
  for user in $PEER_USERS; do ensure_maildir "$dir" "$user" "$uid" "$gid"; done
  write_server_env "$dir"

  # stdio redirected: a daemon holding the caller's stdout makes $(start) hang.
  setsid unshare -m --propagation private bash "$SELF" __run "$dir" </dev/null >>"$dir/launcher.log" 2>&1 &
  pid=$!
  echo "$pid" > "$dir/courier.pid"
  local deadline
  deadline=$(( $(date +%s) + ${PEER_START_TIMEOUT:-20} ))
  until greets_ok "$PEER_POP3_PORT" && tls_greets_ok "$PEER_POP3S_PORT"; do
    if [ "$(date +%s)" -ge "$deadline" ] || ! alive "$pid"; then
      tail -n 20 "$dir/launcher.log" "$dir/authdaemond.log" "$dir/pop3d.log" "$dir/pop3d-ssl.log" >&2 2>/dev/null || true
      cmd_stop "$dir" >/dev/null 2>&1 || true
      die "no +OK greeting on $HOST:$PEER_POP3_PORT and (TLS) $PEER_POP3S_PORT within ${PEER_START_TIMEOUT:-20} s (see $dir/*.log)"
    fi
    sleep 0.05
  done
  write_env "$dir" "$pid"
  say "started in $(elapsed "$t0") s: PID $pid, pop3 $HOST:$PEER_POP3_PORT (STLS), pop3s $HOST:$PEER_POP3S_PORT; env in $dir/peer.env"
}

cmd_stop() {
  [ $# -eq 1 ] || usage
  local dir pid
  [ -d "$1" ] || { say "$1 does not exist; not running"; return 0; }
  dir=$(resolve_dir "$1" 0)
  if ! pid=$(pid_of "$dir"); then
    rm -f "$dir/courier.pid"
    say "not running ($dir)"
    return 0
  fi
  local timeout=${PEER_STOP_TIMEOUT:-10} i left
  # The launcher TERMs authdaemond and both couriertcpd; open sessions
  # (pop3login/pop3d/couriertls children) get TERM here too.
  kill -TERM "$pid" 2>/dev/null || true
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
  rm -f "$dir/courier.pid" "$dir/run/authdaemon/"socket*
  say "stopped (was PID $pid)"
}

# Courier's own Maildir delivery agent, deliverquota, run as the mail user
# (tmp/ then new/), after turning CRLF into LF as Courier's MTA does on
# receipt.  Bare LF, bare CR and a missing final newline are kept.
cmd_seed() {
  [ $# -ge 3 ] || usage
  local dir user
  dir=$(resolve_dir "$1" 0); user=$2; shift 2
  [ -f "$dir/peer.env" ] || die "$dir/peer.env is missing (run '$PROG start $dir' first)"
  local PEER_USERS PEER_MAIL_USER
  PEER_USERS=$(. "$dir/peer.env"; echo "$PEER_USERS")
  PEER_MAIL_USER=$(. "$dir/peer.env"; echo "$PEER_MAIL_USER")
  [[ " $PEER_USERS " == *" $user "* ]] || die "unknown user '$user' (peer users: $PEER_USERS)"
  local uid gid file n=0
  uid=$(id -u "$PEER_MAIL_USER") || die "mail user $PEER_MAIL_USER is missing"
  gid=$(id -g "$PEER_MAIL_USER")
  ensure_maildir "$dir" "$user" "$uid" "$gid"
  for file in "$@"; do
    [ -f "$file" ] && [ -r "$file" ] || die "cannot read message file $file"
  done
  for file in "$@"; do
    # Courier's MTA stores LF line ends and pop3d adds the CR when sending:
    # a CRLF file stored as is would be served with CR CR LF.
    perl -0777 -pe 's/\r\n/\n/g' < "$file" | (umask 077; setpriv --reuid="$uid" --regid="$gid" --clear-groups \
      deliverquota.courier "$dir/mail/$user") || die "deliverquota.courier failed for $file"
    n=$((n + 1))
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
    __run) [ $# -eq 1 ] || usage; cmd_run "$1" ;;
    -h|--help|help) usage ;;
    *) say "unknown command '$cmd'"; usage ;;
  esac
}

# exit here: bash reads a script as it runs, so a long-running launcher must
# not read on after main if the file is edited meanwhile.
main "$@"; exit
