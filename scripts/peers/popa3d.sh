#!/usr/bin/env bash
# popa3d (Openwall's tiny POP3 server) from Debian's packages as a private peer on loopback.
#
#   popa3d.sh start  DIR            extract if needed, configure DIR, start, wait for +OK
#   popa3d.sh stop   DIR            SIGTERM by PID, SIGKILL after PEER_STOP_TIMEOUT s
#   popa3d.sh seed   DIR USER FILE...   append messages to USER's mbox spool (From_ line, >From quoting)
#   popa3d.sh status DIR            print state; exit 0 running, 3 stopped
#   popa3d.sh env    DIR            print DIR/peer.env (shell-sourceable)
#
# popa3d has no options, no configuration file and no TLS: everything is
# compiled in (spool /var/mail/USER, chroot /var/lib/popa3d, user popa3d,
# PAM service "popa3d", syslog).  It conflicts with every other pop3-server,
# so its .deb is fetched with `apt-get download` and unpacked into DIR/root,
# and it runs inetd-style (one process per connection) behind socat on
# 127.0.0.1, inside a private mount namespace (unshare -m) that shows it
# DIR's accounts, spool and syslog socket:
#   /etc       overlay with DIR/ns/etc on top (passwd, group, shadow, pam.d/popa3d)
#   /var/lib   overlay with DIR/ns/varlib on top (the empty popa3d chroot)
#   /var/mail  bind mount of DIR/mail
#   /dev       overlay with DIR/ns/dev on top (a /dev/log read into DIR/syslog.log)
# The system's /etc, /var/mail and /var/lib are never written.
#
# Environment (read by start): PEER_POP3_PORT (23110), PEER_PASSWORD (s3cret),
# PEER_USERS ("alice bob carol"), PEER_MAIL_USER (pop3peer), PEER_PYTHON
# (the project's .venv python), PEER_START_TIMEOUT (20), PEER_STOP_TIMEOUT (10).
#
# Exit codes: 0 ok, 1 error, 2 usage, 3 not running (status), 4 the peer
# cannot run here (not root, no apt-get/socat, download failed, no mount namespaces).
set -euo pipefail

# shellcheck source=scripts/peers/lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)/lib.sh"
LABEL=popa3d
PID_FILE=popa3d.pid
STOP_CLEAN=(ns/dev/log)
# The launcher waits on socat and the syslog reader: TERM the whole session.
STOP_MODE=all
HAS_TLS=0
APOP_USER=""
export PATH="/usr/sbin:/usr/bin:/sbin:/bin:$PATH"

pid_of() {  # print the launcher PID if our popa3d peer runs for DIR (not a recycled PID)
  pid_from "$PROG __run $1 " "$1/popa3d.pid"
}

peer_ready() { greets_ok "$PEER_POP3_PORT"; }

# ----------------------------------------------------------------- install

# popa3d's only dependencies (libc6, libpam0g) are part of every Debian
# system; its Pre-Depends (adduser, update-inetd, debconf) serve only its
# maintainer scripts, which we do not run.
ensure_extracted() {
  local dir=$1 version
  [ -x "$dir/root/usr/sbin/popa3d" ] && [ -s "$dir/root/VERSION" ] && return 0
  version=$(apt-cache policy popa3d 2>/dev/null | awk '/Candidate:/ { print $2 }')
  [ -n "$version" ] && [ "$version" != "(none)" ] || unavailable "no popa3d package known to apt (apt-get update?)"
  extract_deb popa3d "$version" "$dir/root"
}

# ----------------------------------------------------------------- config

# DIR/ns/etc lies over /etc in the namespace: minimal passwd, group and
# shadow (root, popa3d, the accounts; no copy of the system's secrets) and
# the package's own /etc/pam.d/popa3d (common-auth/common-account, i.e.
# pam_unix against this shadow).
write_accounts() {
  local dir=$1 uid=$2 gid=$3 password=$4 hash user etc=$1/ns/etc
  case "$password" in
    *:*|*$'\n'*) die "PEER_PASSWORD may not contain ':' or a newline (shadow fields)";;
  esac
  # SHA512-crypt: Debian's default yescrypt costs ~20 ms a login (real-peers.md).
  check_user_names '^[a-z_][a-z0-9._-]*$'
  hash=$(printf '%s' "$password" | openssl passwd -6 -stdin) || die "openssl passwd -6 failed"
  mkdir -p "$etc/pam.d" "$dir/ns/etc.work" "$dir/ns/varlib/popa3d" "$dir/ns/varlib.work" \
    "$dir/ns/dev" "$dir/ns/dev.work"
  local mail_gid popa3d_id=${PEER_POPA3D_UID:-}
  mail_gid=$(getent group mail | cut -d: -f3); mail_gid=${mail_gid:-8}
  # popa3d's pre-login child runs as 'popa3d': a private system id unused on the host.
  if [ -z "$popa3d_id" ]; then
    popa3d_id=$(awk -F: 'FNR == NR { used[$3] = 1; next } { used[$3] = 1 }
      END { for (i = 999; i > 100; i--) if (!(i in used)) { print i; exit } }' /etc/passwd /etc/group)
  fi
  {
    echo "root:x:0:0:root:/root:/bin/sh"
    echo "popa3d:x:$popa3d_id:$popa3d_id:popa3d:/var/lib/popa3d:/usr/sbin/nologin"
    for user in $PEER_USERS; do
      echo "$user:x:$uid:$gid:pop3suite peer account:/nonexistent:/usr/sbin/nologin"
    done
  } > "$etc/passwd"
  {
    echo "root:x:0:"
    echo "mail:x:$mail_gid:"
    echo "popa3d:x:$popa3d_id:"
    echo "$PEER_MAIL_USER:x:$gid:"
  } > "$etc/group"
  {
    echo "root:*:19000:0:99999:7:::"
    echo "popa3d:*:19000:0:99999:7:::"
    for user in $PEER_USERS; do echo "$user:$hash:19000:0:99999:7:::"; done
  } > "$etc/shadow"
  chmod 644 "$etc/passwd" "$etc/group"
  chown root:shadow "$etc/shadow" 2>/dev/null || true
  chmod 640 "$etc/shadow"
  cp "$dir/root/etc/pam.d/popa3d" "$etc/pam.d/popa3d"
  chmod 644 "$etc/pam.d/popa3d"
  chmod 755 "$dir/ns/varlib/popa3d"    # the chroot: root-owned, empty, as the package makes it
  rm -f "$dir/ns/dev/log"              # a socket left by the last run
}

ensure_mbox() {  # ensure_mbox DIR USER UID GID: an empty spool file, as Debian's MDAs leave it
  local box="$1/mail/$2"
  if [ ! -f "$box" ]; then
    : > "$box"
    chown "$3:$(getent group mail | cut -d: -f3)" "$box"
    chmod 660 "$box"
  fi
}

# ----------------------------------------------------------------- the namespace

# A /dev/log reader: popa3d logs only to syslog and this image runs no
# syslog daemon.  One line per datagram into DIR/syslog.log.
SYSLOG_READER='
import os, socket, sys
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.bind("/dev/log")
os.chmod("/dev/log", 0o666)
with open(sys.argv[1], "ab", buffering=0) as out:
    while True:
        out.write(sock.recv(65536).rstrip(b"\0\n") + b"\n")
'

# __run DIR PORT: the launcher, started by `start` as `setsid unshare -m
# --propagation private popa3d.sh __run DIR PORT`.
cmd_run() {
  [ $# -eq 2 ] || usage
  local dir=$1 port=$2
  mount -t overlay overlay -o "lowerdir=/etc,upperdir=$dir/ns/etc,workdir=$dir/ns/etc.work" /etc
  mount -t overlay overlay -o "lowerdir=/var/lib,upperdir=$dir/ns/varlib,workdir=$dir/ns/varlib.work" /var/lib
  mount --bind "$dir/mail" /var/mail
  mount -t overlay overlay -o "lowerdir=/dev,upperdir=$dir/ns/dev,workdir=$dir/ns/dev.work" /dev
  local -a kids=()
  trap 'kill -TERM "${kids[@]}" 2>/dev/null; wait; exit 0' TERM INT
  "$(peer_python)" -c "$SYSLOG_READER" "$dir/syslog.log" </dev/null >>"$dir/launcher.log" 2>&1 &
  kids+=($!)
  local i
  for (( i = 0; i < 100; i++ )); do [ -S /dev/log ] && break; sleep 0.05; done
  # inetd-style: one popa3d per connection on its stdin/stdout.
  socat "TCP-LISTEN:$port,bind=$HOST,fork,reuseaddr,backlog=128" \
    "EXEC:$dir/root/usr/sbin/popa3d,nofork" </dev/null >>"$dir/socat.log" 2>&1 &
  kids+=($!)
  wait
}

# ----------------------------------------------------------------- commands

cmd_start() {
  local dir=$1 pid t0
  need_namespace "mount namespace, popa3d's privilege drops"
  grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null || true
  grep -qw overlay /proc/filesystems || unavailable "the kernel has no overlay file system"
  # Mount points must exist; both are part of every Debian system (base-files).
  [ -d /var/mail ] && [ -d /var/lib ] || unavailable "/var/mail or /var/lib is missing (popa3d's paths are compiled in)"

  : "${PEER_POP3_PORT:=23110}"
  default_settings
  check_ports "$PEER_POP3_PORT"
  [ -x "$(peer_python)" ] || die "no Python at $(peer_python) for the syslog reader and seed (set PEER_PYTHON)"

  command -v socat >/dev/null || apt_install socat
  ensure_extracted "$dir"
  ensure_mail_user "$PEER_MAIL_USER" "mail files are owned by it"
  local uid=$MAIL_UID gid=$MAIL_GID user

  t0=$(now)
  make_traversable "$dir" "popa3d's unprivileged sessions must reach DIR"
  mkdir -p "$dir/mail"
  chown root:mail "$dir/mail"; chmod 2775 "$dir/mail"   # as Debian's /var/mail
  rm -f "$dir/popa3d.pid"
  write_accounts "$dir" "$uid" "$gid" "$PEER_PASSWORD"
  for user in $PEER_USERS; do ensure_mbox "$dir" "$user" "$uid" "$gid"; done

  setsid unshare -m --propagation private bash "$SELF" __run "$dir" "$PEER_POP3_PORT" \
    </dev/null >>"$dir/launcher.log" 2>&1 &
  pid=$!
  echo "$pid" > "$dir/popa3d.pid"
  wait_ready "$dir" "$pid" "${PEER_START_TIMEOUT:-20}" \
    "no +OK greeting on $HOST:$PEER_POP3_PORT within ${PEER_START_TIMEOUT:-20} s (see $dir/*.log)" \
    "$dir/launcher.log" "$dir/socat.log" "$dir/syslog.log"
  # No PEER_APOP_USER: popa3d has no APOP (nor SASL, nor CAPA); no TLS at all.
  write_env "$dir" "$pid" "$(cat "$dir/root/VERSION")" "PEER_SPOOL_ROOT=$dir/mail"
  say "started in $(elapsed "$t0") s: PID $pid, pop3 $HOST:$PEER_POP3_PORT (no STLS, no POP3S: popa3d has no TLS); env in $dir/peer.env"
}

# Local delivery to an mbox spool as Debian's MDAs do it (exim's appendfile,
# mail.local): under popa3d's own lock (fcntl, plus flock for other MUAs),
# a "From SENDER DATE" line, the message with CRLF turned into LF, lines
# starting with "From " quoted as ">From ", a final newline added if
# missing, and an empty line before the next message.
SEED_MBOX='
import fcntl, os, re, sys, time
box, sender = sys.argv[1], sys.argv[2]
with open(box, "ab") as out:
    fcntl.lockf(out, fcntl.LOCK_EX)
    fcntl.flock(out, fcntl.LOCK_EX)
    for path in sys.argv[3:]:
        with open(path, "rb") as message:
            data = message.read().replace(b"\r\n", b"\n")
        data = re.sub(rb"^From ", b">From ", data, flags=re.MULTILINE)
        if not data.endswith(b"\n"):
            data += b"\n"
        stamp = time.strftime("%a %b %e %H:%M:%S %Y", time.localtime()).encode()
        out.write(b"From " + sender.encode() + b" " + stamp + b"\n" + data + b"\n")
    out.flush()
    os.fsync(out.fileno())
'

cmd_seed() {
  local dir=$1 user=$2
  shift 2
  local uid=$MAIL_UID gid=$MAIL_GID
  ensure_mbox "$dir" "$user" "$uid" "$gid"
  "$(peer_python)" -c "$SEED_MBOX" "$dir/mail/$user" "${PEER_SEED_SENDER:-pop3suite@localhost}" "$@" \
    || die "appending to $dir/mail/$user failed"
  say "seeded $# message(s) for $user"
}

# exit here: bash reads a script as it runs, so a long-running launcher must
# not read on after main if the file is edited meanwhile.
peer_main "$@"; exit
