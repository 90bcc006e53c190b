#!/bin/sh
# Install or upgrade Trace Edge Agent as a systemd service (Raspberry Pi OS Bookworm, Debian 12).
#
#   sudo sh deploy/install.sh                  # from a checkout of the source; needs the internet
#   sudo sh deploy/install.sh --wheels DIR     # offline, from a wheel directory (docs/deploy.md)
#   sudo sh deploy/install.sh --web-admin      # also let the web page write agent.yaml
#
# Safe to run again, and that is how to upgrade: it replaces the program, the unit file and the
# examples, and keeps /etc/edge-agent/agent.yaml, the udev rules and the buffer in
# /var/lib/edge-agent untouched. Step by step: docs/deploy.md.
set -eu
# Files pip and venv create must be readable by the service user, whatever root's umask is.
umask 022

NAME=edge-agent
EXAMPLE=configs/pi-gateway.yaml
UDEV_RULES=99-edge-agent-readers.rules
WEB_DROPIN=edge-agent-web-admin.conf

PREFIX=
SRC=
PYTHON=python3
WHEELS=
SYSTEMD=yes
WEB_ADMIN=keep
ARGS=$*

say() { printf 'install: %s\n' "$*"; }
warn() { printf 'install: WARNING: %s\n' "$*" >&2; }
die() { printf 'install: ERROR: %s\n' "$*" >&2; exit 1; }

usage() {
    cat <<'EOF'
usage: sudo sh deploy/install.sh [--from DIR] [--python PATH] [--wheels DIR] [--no-systemd]
                                [--web-admin | --no-web-admin]
       sh deploy/install.sh --prefix DIR [--from DIR] [--python PATH] [--wheels DIR]

  --from DIR     source tree to install (default: the tree this script belongs to)
  --python PATH  Python >= 3.11 that creates the virtualenv (default: python3)
  --wheels DIR   install without the internet, only from the wheels in DIR
  --no-systemd   change files only: no systemctl, udevadm or modprobe
  --web-admin    let the web page's Apply / "save to config" write /etc/edge-agent/agent.yaml:
                 installs the drop-in edge-agent.service.d/web-admin.conf (ReadWritePaths=)
                 and makes the directory writable for the service (sticky, group edge-agent)
  --no-web-admin remove that again: /etc/edge-agent read-only for the service (the default;
                 without either option a run keeps what an earlier run chose)
  --prefix DIR   install below DIR instead of / (tests, inspection); implies --no-systemd,
                 creates no system user, changes no ownership; the virtualenv there only
                 works at that place
EOF
}

need_value() { [ "$#" -ge 2 ] || die "$1 needs a value (see --help)"; }

while [ "$#" -gt 0 ]; do
    case $1 in
        --prefix) need_value "$@"; PREFIX=$2; shift 2 ;;
        --from) need_value "$@"; SRC=$2; shift 2 ;;
        --python) need_value "$@"; PYTHON=$2; shift 2 ;;
        --wheels) need_value "$@"; WHEELS=$2; shift 2 ;;
        --no-systemd) SYSTEMD=no; shift ;;
        --web-admin) WEB_ADMIN=yes; shift ;;
        --no-web-admin) WEB_ADMIN=no; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $1" ;;
    esac
done

# ---------------------------------------------------------------- checks before changing anything

[ -n "$SRC" ] || SRC=$(dirname "$0")/..
SRC=$(cd "$SRC" && pwd) || die "--from $SRC: no such directory"
for f in pyproject.toml "$EXAMPLE" deploy/edge-agent.service deploy/edge-agent-modules.conf \
    "deploy/$UDEV_RULES" "deploy/$WEB_DROPIN" docs/deploy.md; do
    [ -f "$SRC/$f" ] || die "$SRC is not a Trace Edge Agent source tree: $f is missing"
done
if [ -n "$WHEELS" ]; then
    WHEELS=$(cd "$WHEELS" && pwd) || die "--wheels $WHEELS: no such directory"
fi

if [ -n "$PREFIX" ]; then
    mkdir -p "$PREFIX"
    ROOT=$(cd "$PREFIX" && pwd)
    SYSTEMD=no
    REAL=no
else
    ROOT=
    REAL=yes
    [ "$(id -u)" -eq 0 ] || die "run it as root: sudo sh $0 $ARGS"
fi

command -v "$PYTHON" >/dev/null 2>&1 ||
    die "$PYTHON not found: sudo apt-get install python3 python3-venv"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
    die "$("$PYTHON" -V 2>&1) is too old: the agent needs Python >= 3.11 (Bookworm has 3.11)"
"$PYTHON" -c 'import ensurepip, venv' 2>/dev/null ||
    die "$PYTHON cannot create virtualenvs: sudo apt-get install python3-venv"

OPT=$ROOT/opt/$NAME
VENV=$OPT/venv
ETC=$ROOT/etc/$NAME
CONFIG=$ETC/agent.yaml
STATE=$ROOT/var/lib/$NAME
UNIT=$ROOT/etc/systemd/system/$NAME.service
DROPIN=$ROOT/etc/systemd/system/$NAME.service.d/web-admin.conf
MODULES=$ROOT/etc/modules-load.d/$NAME.conf
RULES=$ROOT/etc/udev/rules.d/$UDEV_RULES
LINK=$ROOT/usr/local/bin/$NAME

# ------------------------------------------------------------------------------ the system user

if [ "$REAL" = no ]; then
    say "--prefix: no system user created (on a real install: useradd --system $NAME)"
else
    if id -u "$NAME" >/dev/null 2>&1; then
        say "user $NAME exists"
    else
        command -v useradd >/dev/null 2>&1 || die "useradd not found (Debian package passwd)"
        useradd --system --user-group --home-dir "/var/lib/$NAME" --no-create-home \
            --shell /usr/sbin/nologin --comment "Trace Edge Agent" "$NAME"
        say "created system user $NAME"
    fi
    # The unit adds dialout and input itself (SupplementaryGroups=); membership also lets a
    # technician run `sudo -u edge-agent edge-agent ...` against the readers.
    if ! id -nG "$NAME" | tr ' ' '\n' | grep -qx dialout; then
        usermod -a -G dialout "$NAME"
        say "added $NAME to the dialout group (serial ports)"
    fi
    # input owns /dev/input/event* (udev's 50-udev-default.rules): USB barcode scanners in
    # keyboard-wedge mode (driver: hid). The unit names the group too, and a unit whose
    # SupplementaryGroups= group is missing does not start, so make sure it exists.
    if ! getent group input >/dev/null 2>&1; then
        groupadd --system input
        say "created the input group"
    fi
    if ! id -nG "$NAME" | tr ' ' '\n' | grep -qx input; then
        usermod -a -G input "$NAME"
        say "added $NAME to the input group (keyboard-wedge barcode scanners)"
    fi
fi

# ------------------------------------------------------------------------------- directories

for dir in "$OPT" "$OPT/doc" "$ETC" "$(dirname "$UNIT")" "$(dirname "$MODULES")" \
    "$(dirname "$RULES")" "$(dirname "$LINK")"; do
    [ -d "$dir" ] || install -d -m 0755 "$dir"
done
if [ -d "$STATE" ]; then
    # Never touched: it holds the buffer, possibly with events not yet delivered.
    if [ -e "$STATE/buffer.db" ]; then
        say "keeping the buffer $STATE/buffer.db ($(wc -c <"$STATE/buffer.db") bytes)"
    fi
else
    install -d -m 0750 "$STATE"
    [ "$REAL" = no ] || chown "$NAME:$NAME" "$STATE"
    say "created $STATE (the buffer's directory)"
fi

# ------------------------------------------------------------------------- program (virtualenv)

py_version() { "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null; }

if [ -x "$VENV/bin/python" ] && [ "$(py_version "$VENV/bin/python")" = "$(py_version "$PYTHON")" ]
then
    say "upgrading the virtualenv $VENV"
else
    if [ -e "$VENV" ]; then
        # An OS upgrade changed or removed the Python the old virtualenv was made with.
        say "recreating $VENV: its Python is gone or differs from $PYTHON"
        rm -rf "$VENV"
    fi
    "$PYTHON" -m venv "$VENV"
    say "created the virtualenv $VENV"
fi
# The virtualenv links to $PYTHON: the service user must be able to run it (a Python under
# /root, e.g. from pyenv, is not). Debian's /usr/bin/python3 always is.
if [ "$REAL" = yes ] && command -v runuser >/dev/null 2>&1 &&
    ! (cd / && runuser -u "$NAME" -- "$VENV/bin/python" -c '') 2>/dev/null; then
    rm -rf "$VENV"
    die "the user $NAME cannot run $PYTHON (through $VENV/bin/python):" \
        "use a Python that every user may run, e.g. --python /usr/bin/python3"
fi

# pip builds inside the tree it installs from (build/, *.egg-info): build from a clean copy so
# that the checkout stays clean and no stale build/lib file can slip into the install.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM
mkdir "$tmp/src"
(cd "$SRC" && tar --exclude=./.git --exclude=./.venv --exclude=./build --exclude='*.egg-info' \
    --exclude=__pycache__ --exclude=./.mypy_cache --exclude=./.pytest_cache \
    --exclude=./.ruff_cache --exclude=./.hypothesis -cf - .) | tar -C "$tmp/src" -xf -

if [ -n "$WHEELS" ]; then
    say "installing $SRC with its dependencies from $WHEELS (offline)"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade \
        --no-index --find-links "$WHEELS" "$tmp/src" ||
        die "pip failed: $WHEELS must hold wheels of every dependency, of setuptools" \
            "and of wheel (docs/deploy.md, 'Installing without internet')"
else
    say "installing $SRC with its dependencies (pip; needs the package index)"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade "$tmp/src" ||
        die "pip failed (no internet? then use --wheels DIR, see docs/deploy.md)"
fi
version=$("$VENV/bin/$NAME" --version) || die "$VENV/bin/$NAME does not run"
say "installed $version"
# The command for technicians; points at the real location even under --prefix.
ln -sfn "/opt/$NAME/venv/bin/$NAME" "$LINK"

# ------------------------------------------------------------------ unit, udev, modules, docs

install -m 0644 "$SRC/deploy/edge-agent.service" "$UNIT"
install -m 0644 "$SRC/deploy/edge-agent-modules.conf" "$MODULES"
install -m 0644 "$SRC/docs/deploy.md" "$OPT/doc/deploy.md"
say "installed $UNIT and $MODULES"
if [ -e "$RULES" ]; then
    say "keeping $RULES (site-specific)"
else
    install -m 0644 "$SRC/deploy/$UDEV_RULES" "$RULES"
    say "installed the udev rule examples $RULES"
fi

# ---------------------------------------------------------------------------- configuration

# The newest example is always there to compare with; agent.yaml itself is never replaced.
install -m 0644 "$SRC/$EXAMPLE" "$ETC/agent.yaml.example"
if [ -e "$CONFIG" ]; then
    say "keeping $CONFIG"
else
    install -m 0640 "$SRC/$EXAMPLE" "$CONFIG"
    [ "$REAL" = no ] || chown "root:$NAME" "$CONFIG"
    say "created $CONFIG from $EXAMPLE: edit it (every line marked CHANGE)"
fi
unedited=no
cmp -s "$CONFIG" "$SRC/$EXAMPLE" && unedited=yes

# The web page writes agent.yaml (temp file + rename, agent.yaml.bak, agent.yaml.apply.json)
# only where the unit lets it: the drop-in opens /etc/edge-agent in ProtectSystem=strict, and
# the directory becomes group edge-agent, group-writable and sticky (mode 1775: the agent may
# replace the files it owns, agent.yaml among them, never root's TLS keys or password hash).
case $WEB_ADMIN in
    yes)
        install -d -m 0755 "$(dirname "$DROPIN")"
        install -m 0644 "$SRC/deploy/$WEB_DROPIN" "$DROPIN"
        chmod 1775 "$ETC"
        if [ "$REAL" = yes ]; then
            chgrp "$NAME" "$ETC"
            chown "$NAME:$NAME" "$CONFIG"
        fi
        say "web admin: installed $DROPIN; $ETC is writable for the service (Apply, save to config)"
        ;;
    no)
        rm -f "$DROPIN"
        rmdir "$(dirname "$DROPIN")" 2>/dev/null || true
        chmod 0755 "$ETC"
        if [ "$REAL" = yes ]; then
            chgrp root "$ETC"
            chown "root:$NAME" "$CONFIG"
        fi
        say "web admin: $ETC is read-only for the service (the page cannot write agent.yaml)"
        ;;
    *)
        if [ -e "$DROPIN" ]; then
            say "keeping $DROPIN (web admin may write $ETC; --no-web-admin removes it)"
        fi
        ;;
esac

# Check it as the service user when possible: that also proves the service may read it.
check_config() {
    if [ "$REAL" = yes ] && command -v runuser >/dev/null 2>&1; then
        (cd / && runuser -u "$NAME" -- "$VENV/bin/$NAME" check-config -c "$CONFIG")
    else
        "$VENV/bin/$NAME" check-config -c "$CONFIG"
    fi
}
rc=0
check_config >"$tmp/check" 2>&1 || rc=$?
case $rc in
    0) say "$(cat "$tmp/check")" ;;
    2)
        cat "$tmp/check" >&2
        warn "$CONFIG is not valid: edge-agent is NOT (re)started."
        warn "Fix it, check it with: $NAME check-config -c /etc/$NAME/agent.yaml"
        warn "then start it with:    sudo systemctl enable --now $NAME  (or run this script again)"
        ;;
    *)
        cat "$tmp/check" >&2
        die "'$NAME check-config' failed with exit code $rc: the installation is broken"
        ;;
esac

# ------------------------------------------------------------------------------------ systemd

if [ "$SYSTEMD" = no ]; then
    say "not calling systemctl (--no-systemd or --prefix)"
elif [ ! -d /run/systemd/system ]; then
    warn "systemd is not running here: nothing enabled or started"
else
    # Register the serial drivers' device groups now, as modules-load.d will at every boot.
    modprobe -a usbserial cdc_acm 2>/dev/null ||
        warn "could not load usbserial/cdc_acm: USB readers may be refused until the next boot"
    udevadm control --reload 2>/dev/null || warn "udevadm control --reload failed"
    systemctl daemon-reload
    if [ "$rc" -ne 0 ]; then
        :  # said above
    elif [ "$unedited" = yes ]; then
        say "not started yet: $CONFIG is still the example. Edit it, then:"
        say "  $NAME check-config -c /etc/$NAME/agent.yaml && sudo systemctl enable --now $NAME"
    else
        systemctl enable --quiet "$NAME"
        # restart, not start: an upgrade must replace the running old version.
        systemctl restart "$NAME" ||
            die "$NAME did not start; see: journalctl -u $NAME -n 50 --no-pager"
        say "$NAME is running: systemctl status $NAME; journalctl -u $NAME -f"
    fi
fi

[ "$rc" -eq 0 ] || exit 2
say "done"
