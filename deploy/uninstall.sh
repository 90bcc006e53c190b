#!/bin/sh
# Remove Trace Edge Agent installed by deploy/install.sh.
#
#   sudo sh deploy/uninstall.sh            # keeps configuration, udev rules and the buffer
#   sudo sh deploy/uninstall.sh --purge    # deletes those too, and the edge-agent user
#
# Without --purge a later install.sh picks up where this one left off: same configuration,
# and the buffer's undelivered events are sent when the agent runs again.
set -eu

NAME=edge-agent
UDEV_RULES=99-edge-agent-readers.rules

PREFIX=
PURGE=no
SYSTEMD=yes

say() { printf 'uninstall: %s\n' "$*"; }
warn() { printf 'uninstall: WARNING: %s\n' "$*" >&2; }
die() { printf 'uninstall: ERROR: %s\n' "$*" >&2; exit 1; }

usage() {
    cat <<'EOF'
usage: sudo sh deploy/uninstall.sh [--purge] [--no-systemd]
       sh deploy/uninstall.sh --prefix DIR [--purge]

  --purge        also delete /etc/edge-agent, the udev rules, /var/lib/edge-agent (the buffer:
                 events not yet delivered are lost) and the edge-agent user
  --no-systemd   change files only: no systemctl or udevadm
  --prefix DIR   uninstall from below DIR, as installed by install.sh --prefix DIR
EOF
}

while [ "$#" -gt 0 ]; do
    case $1 in
        --prefix) [ "$#" -ge 2 ] || die "--prefix needs a value"; PREFIX=$2; shift 2 ;;
        --purge) PURGE=yes; shift ;;
        --no-systemd) SYSTEMD=no; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $1" ;;
    esac
done

if [ -n "$PREFIX" ]; then
    ROOT=$(cd "$PREFIX" && pwd) || die "--prefix $PREFIX: no such directory"
    SYSTEMD=no
    REAL=no
else
    ROOT=
    REAL=yes
    [ "$(id -u)" -eq 0 ] || die "run it as root: sudo sh $0"
fi
[ "$SYSTEMD" = no ] || [ -d /run/systemd/system ] || SYSTEMD=no

OPT=$ROOT/opt/$NAME
ETC=$ROOT/etc/$NAME
STATE=$ROOT/var/lib/$NAME
UNIT=$ROOT/etc/systemd/system/$NAME.service
DROPINS=$ROOT/etc/systemd/system/$NAME.service.d
MODULES=$ROOT/etc/modules-load.d/$NAME.conf
RULES=$ROOT/etc/udev/rules.d/$UDEV_RULES
LINK=$ROOT/usr/local/bin/$NAME

if [ "$SYSTEMD" = yes ]; then
    # Stopping lets the agent commit what the readers handed over (TimeoutStopSec=30).
    systemctl disable --now --quiet "$NAME" 2>/dev/null || warn "systemctl disable --now $NAME failed"
    say "stopped and disabled $NAME"
fi

rm -f "$UNIT" "$MODULES"
if [ -L "$LINK" ] && [ "$(readlink "$LINK")" = "/opt/$NAME/venv/bin/$NAME" ]; then
    rm -f "$LINK"
fi
rm -rf "$OPT"
say "removed the program ($OPT), $UNIT and $MODULES"

if [ "$PURGE" = yes ]; then
    if [ -e "$STATE/buffer.db" ]; then
        warn "deleting the buffer $STATE/buffer.db: events not yet delivered are lost"
    fi
    rm -rf "$ETC" "$STATE" "$DROPINS"
    rm -f "$RULES"
    say "purged $ETC, $STATE, $DROPINS and $RULES"
    if [ "$REAL" = yes ] && id -u "$NAME" >/dev/null 2>&1; then
        if userdel "$NAME"; then say "deleted the user $NAME"; else warn "userdel $NAME failed"; fi
    fi
else
    for kept in "$ETC" "$RULES" "$DROPINS"; do
        [ ! -e "$kept" ] || say "kept $kept"
    done
    if [ -e "$STATE/buffer.db" ]; then
        say "kept the buffer $STATE/buffer.db: it may hold events not yet delivered"
    fi
    say "(--purge deletes these too)"
fi

if [ "$SYSTEMD" = yes ]; then
    systemctl daemon-reload
    systemctl reset-failed "$NAME" 2>/dev/null || true
    [ "$PURGE" = no ] || udevadm control --reload 2>/dev/null || true
fi
say "done"
