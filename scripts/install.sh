#!/usr/bin/env bash
# Installs piota on a Raspberry Pi (run as root). Safe to run again: what is already right is kept.
#
#   install.sh --deb piota_X_all.deb [fleet config flags] [--connection-string CS|-]
#   install.sh --uninstall [--purge]
#
# Package
#   --deb FILE               install or upgrade this package (a local config.json is kept)
#   --force-depends          install although the Debian package nodejs (>= 20) is missing
#                            (Node.js installed another way, e.g. from a tarball)
# Fleet config (/etc/piota/config.json; without these flags an existing config is kept)
#   --model NAME             the model bundles must be compatible with (e.g. raspberrypi5)
#   --slot-a SPEC            partitions of slot A, e.g. boot=/dev/mmcblk0p2,rootfs=/dev/mmcblk0p5
#   --slot-b SPEC            partitions of slot B
#   --boot-backend NAME      tryboot
#   --boot-partitions A,B    boot partition numbers of the slots for autoboot.txt, e.g. 2,3
#   --autoboot-file PATH     autoboot.txt on the mounted boot-config partition
#   --trusted-key FILE       a bundle-signing public key (PEM); repeat for several; copied to
#                            /etc/piota/keys/ and replaces the configured list
# Device
#   --state-dir DIR          state directory on the shared data partition (the config's
#                            stateDir; default /data/piota)
#   --connection-string CS   the device's IoT Hub connection string, stored in
#                            <state dir>/connection-string (0600); '-' reads it from stdin,
#                            which keeps it out of the process list and shell history
#   --allow-state-on-rootfs  accept a state directory on the root filesystem (a Pi without A/B
#                            slots, for trying piota out: an A/B update would erase it)
#   --no-start               enable the service but do not (re)start it now
# Other
#   --uninstall              stop, disable and remove the package (config and state are kept)
#   --purge                  with --uninstall: delete the config and the state directory too
#   --root DIR               act on the system mounted at DIR (an image being prepared; DIR needs
#                            its own dpkg database for --deb) instead of this one
set -euo pipefail

die() { echo "install.sh: $*" >&2; exit 1; }
note() { echo "install.sh: $*"; }

root=""
deb=""
force_depends=0
state_dir=""
cs=""
cs_given=0
allow_rootfs=0
start=1
uninstall=0
purge=0
keys=()
export PIOTA_SET_MODEL="" PIOTA_SET_SLOT_A="" PIOTA_SET_SLOT_B="" PIOTA_SET_BOOT_BACKEND="" \
  PIOTA_SET_BOOT_PARTITIONS="" PIOTA_SET_AUTOBOOT_FILE="" PIOTA_SET_TRUSTED_KEYS="" PIOTA_SET_STATE_DIR=""
fleet_flags=0

need_value() { [ $# -ge 2 ] && [ -n "$2" ] || die "$1 needs a value (see --help)"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --deb) need_value "$@"; deb="$2"; shift 2 ;;
    --force-depends) force_depends=1; shift ;;
    --model) need_value "$@"; PIOTA_SET_MODEL="$2"; fleet_flags=1; shift 2 ;;
    --slot-a) need_value "$@"; PIOTA_SET_SLOT_A="$2"; fleet_flags=1; shift 2 ;;
    --slot-b) need_value "$@"; PIOTA_SET_SLOT_B="$2"; fleet_flags=1; shift 2 ;;
    --boot-backend) need_value "$@"; PIOTA_SET_BOOT_BACKEND="$2"; fleet_flags=1; shift 2 ;;
    --boot-partitions) need_value "$@"; PIOTA_SET_BOOT_PARTITIONS="$2"; fleet_flags=1; shift 2 ;;
    --autoboot-file) need_value "$@"; PIOTA_SET_AUTOBOOT_FILE="$2"; fleet_flags=1; shift 2 ;;
    --trusted-key) need_value "$@"; keys+=("$2"); fleet_flags=1; shift 2 ;;
    --state-dir) need_value "$@"; state_dir="$2"; PIOTA_SET_STATE_DIR="$2"; fleet_flags=1; shift 2 ;;
    --connection-string) need_value "$@"; cs="$2"; cs_given=1; shift 2 ;;
    --allow-state-on-rootfs) allow_rootfs=1; shift ;;
    --no-start) start=0; shift ;;
    --uninstall) uninstall=1; shift ;;
    --purge) purge=1; shift ;;
    --root) need_value "$@"; root="${2%/}"; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
done
[ "$(id -u)" = 0 ] || die "run as root (sudo $0 ...)"
[ "$purge" = 0 ] || [ "$uninstall" = 1 ] || die "--purge goes with --uninstall"
if [ -n "$root" ]; then
  [ -d "$root" ] || die "--root $root: no such directory"
  root="$(cd "$root" && pwd)"
  [ "$root" != / ] || root=""
fi

# The connection string is checked before anything changes.
if [ "$cs_given" = 1 ]; then
  if [ "$cs" = - ]; then IFS= read -r cs || [ -n "$cs" ] || die "--connection-string -: nothing on stdin"; fi
  cs="${cs%$'\r'}"
  missing=()
  for field in HostName DeviceId; do
    [[ ";$cs;" == *";$field="[^\;]* ]] || missing+=("$field")
  done
  [[ ";$cs;" == *";SharedAccessKey="[^\;]* || ";$cs;" == *";x509=true;"* ]] || missing+=("SharedAccessKey")
  [ ${#missing[@]} = 0 ] || die "--connection-string: not a device connection string (missing ${missing[*]}; expected HostName=...;DeviceId=...;SharedAccessKey=...)"
fi

config="$root/etc/piota/config.json"
systemd_running=0
if [ -z "$root" ] && [ -d /run/systemd/system ]; then systemd_running=1; fi
systemctl_root=()
[ -z "$root" ] || systemctl_root=(--root="$root")
dpkg_root=()
[ -z "$root" ] || dpkg_root=(--root="$root")
dropin_dir="$root/etc/systemd/system/piota.service.d"

# Reads one top-level string field of the config (empty when absent).
config_field() {
  node -e 'const c = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")); const v = c[process.argv[2]]; process.stdout.write(typeof v === "string" ? v : "")' "$config" "$1"
}

# --- Node.js ------------------------------------------------------------------------------------
node_help="Raspberry Pi OS trixie: sudo apt install nodejs (Node 20). Bookworm ships Node 18: add NodeSource's apt repository (https://github.com/nodesource/distributions, node_20.x or newer) and sudo apt install nodejs."
command -v node >/dev/null || die "Node.js 20 or newer is required and 'node' is not installed. $node_help"
node_version="$(node -p 'process.versions.node')"
if [ "${node_version%%.*}" -lt 20 ]; then
  die "Node.js $node_version found ($(command -v node)); piota needs 20 or newer. $node_help"
fi
if [ -n "$root" ] && [ ! -e "$root/usr/bin/node" ]; then
  die "$root/usr/bin/node is missing: install nodejs (20+) in that system first. $node_help"
fi

# --- Uninstall ----------------------------------------------------------------------------------
if [ "$uninstall" = 1 ]; then
  configured_state=""
  [ -f "$config" ] && configured_state="$(config_field stateDir || true)"
  [ -n "$state_dir" ] || state_dir="${configured_state:-/data/piota}"
  if [ "$systemd_running" = 1 ]; then systemctl stop piota.service 2>/dev/null || true; fi
  systemctl "${systemctl_root[@]}" disable piota.service >/dev/null 2>&1 || true
  rm -rf "$dropin_dir"
  status="$(dpkg-query "${dpkg_root[@]}" -W -f='${Status}' piota 2>/dev/null || true)"
  if [ -n "$status" ] && [[ "$status" != *not-installed ]]; then
    if [ "$purge" = 1 ]; then dpkg "${dpkg_root[@]}" --purge piota; else dpkg "${dpkg_root[@]}" --remove piota; fi
  else
    note "the piota package is not installed"
  fi
  if [ "$systemd_running" = 1 ]; then systemctl daemon-reload || true; fi
  if [ "$purge" = 1 ]; then
    rm -rf "$root/etc/piota"
    # Never a whole partition: only a directory at least two levels down (/data/piota).
    if [[ "$state_dir" =~ ^/[^/]+/.+ ]]; then
      rm -rf "$root$state_dir"
    elif [ -e "$root$state_dir" ]; then
      note "not deleting state directory $state_dir (too close to /): remove what is piota's by hand"
    fi
    note "piota removed; its configuration and state ($state_dir) deleted"
  else
    note "piota removed; kept /etc/piota and $state_dir (install.sh --uninstall --purge deletes them)"
  fi
  exit 0
fi

# --- Package ------------------------------------------------------------------------------------
if [ -n "$deb" ]; then
  [ -f "$deb" ] || die "--deb $deb: no such file"
  package="$(dpkg-deb -f "$deb" Package 2>/dev/null)" || die "--deb $deb: not a Debian package"
  [ "$package" = piota ] || die "--deb $deb: this is the package '$package', not piota"
  if [ -n "$root" ] && [ ! -f "$root/var/lib/dpkg/status" ]; then
    die "--root $root has no dpkg database (var/lib/dpkg/status): install the package from inside that system"
  fi
  dpkg_flags=(--force-confold)
  nodejs_pkg="$(dpkg-query "${dpkg_root[@]}" -W -f='${Status} ${Version}' nodejs 2>/dev/null || true)"
  if ! { [[ "$nodejs_pkg" == "install ok installed "* ]] && dpkg --compare-versions "${nodejs_pkg##* }" ge 20; }; then
    if [ "$force_depends" = 1 ]; then
      note "the Debian package nodejs (>= 20) is not installed; installing anyway (--force-depends): dpkg will list piota's dependency as broken"
      dpkg_flags+=(--force-depends)
    else
      die "the package needs the Debian package nodejs (>= 20), which is not installed (Node.js $node_version here came from elsewhere). $node_help Or pass --force-depends to install anyway."
    fi
  fi
  note "installing $deb"
  DEBIAN_FRONTEND=noninteractive dpkg "${dpkg_root[@]}" "${dpkg_flags[@]}" -i "$deb" </dev/null
elif [ ! -e "$root/usr/lib/piota/bin/piota.js" ]; then
  die "piota is not installed: give the package with --deb piota_<version>_all.deb"
fi

# --- Fleet config -------------------------------------------------------------------------------
if [ ${#keys[@]} -gt 0 ]; then
  mkdir -p "$root/etc/piota/keys"
  installed=()
  for key in "${keys[@]}"; do
    [ -f "$key" ] || die "--trusted-key $key: no such file"
    node -e 'require("crypto").createPublicKey(require("fs").readFileSync(process.argv[1]))' "$key" 2>/dev/null \
      || die "--trusted-key $key: not a PEM public key (expected the .pub from piota bundle keygen)"
    dest="/etc/piota/keys/$(basename "$key")"
    if [ "$(readlink -f "$key")" != "$(readlink -f "$root$dest")" ]; then install -m 0644 "$key" "$root$dest"; fi
    installed+=("$dest")
  done
  PIOTA_SET_TRUSTED_KEYS="$(printf '%s\n' "${installed[@]}")"
fi
if [ "$fleet_flags" = 1 ]; then
  base="$config"
  [ -f "$base" ] || base="$root/usr/lib/piota/config.example.json"
  [ -f "$base" ] || die "no config to start from ($config or the package's config.example.json)"
  # Edits the JSON with the flags, validating each, and replaces the file atomically.
  node - "$base" "$config" <<'EOF' || exit 1
const fs = require('fs');
const path = require('path');
const [base, target] = process.argv.slice(2);
const fail = (m) => { process.stderr.write(`install.sh: ${m}\n`); process.exit(1); };
let c;
try { c = JSON.parse(fs.readFileSync(base, 'utf8')); } catch (e) { fail(`${base}: not valid JSON (${e.message})`); }
const env = process.env;
const slot = (flag, spec) => {
  const parts = {};
  for (const item of spec.split(',')) {
    const m = /^([a-z][a-z0-9_-]*)=(\/\S+)$/.exec(item.trim());
    if (!m) fail(`${flag} ${spec}: expected PART=/dev/...[,PART=/dev/...], e.g. boot=/dev/mmcblk0p2,rootfs=/dev/mmcblk0p5`);
    parts[m[1]] = m[2];
  }
  return parts;
};
if (env.PIOTA_SET_MODEL) {
  if (!/^[A-Za-z0-9._-]+$/.test(env.PIOTA_SET_MODEL)) fail(`--model ${env.PIOTA_SET_MODEL}: letters, digits, '.', '_' and '-' only`);
  c.model = env.PIOTA_SET_MODEL;
}
if (env.PIOTA_SET_SLOT_A || env.PIOTA_SET_SLOT_B) c.slots = { ...(c.slots ?? {}) };
if (env.PIOTA_SET_SLOT_A) c.slots.A = slot('--slot-a', env.PIOTA_SET_SLOT_A);
if (env.PIOTA_SET_SLOT_B) c.slots.B = slot('--slot-b', env.PIOTA_SET_SLOT_B);
if (env.PIOTA_SET_BOOT_BACKEND || env.PIOTA_SET_BOOT_PARTITIONS || env.PIOTA_SET_AUTOBOOT_FILE) c.boot = { ...(c.boot ?? {}) };
if (env.PIOTA_SET_BOOT_BACKEND) {
  if (env.PIOTA_SET_BOOT_BACKEND !== 'tryboot') fail(`--boot-backend ${env.PIOTA_SET_BOOT_BACKEND}: the backends are: tryboot`);
  c.boot.backend = env.PIOTA_SET_BOOT_BACKEND;
}
if (env.PIOTA_SET_BOOT_PARTITIONS) {
  const m = /^([1-9][0-9]?),([1-9][0-9]?)$/.exec(env.PIOTA_SET_BOOT_PARTITIONS);
  if (!m || m[1] === m[2]) fail(`--boot-partitions ${env.PIOTA_SET_BOOT_PARTITIONS}: expected two different partition numbers A,B, e.g. 2,3`);
  c.boot.bootPartitions = { A: Number(m[1]), B: Number(m[2]) };
}
if (env.PIOTA_SET_AUTOBOOT_FILE) {
  if (!env.PIOTA_SET_AUTOBOOT_FILE.startsWith('/')) fail(`--autoboot-file ${env.PIOTA_SET_AUTOBOOT_FILE}: must be an absolute path`);
  c.boot.autobootFile = env.PIOTA_SET_AUTOBOOT_FILE;
}
if (env.PIOTA_SET_STATE_DIR) {
  if (!/^\/[^/]+\/./.test(env.PIOTA_SET_STATE_DIR)) fail(`--state-dir ${env.PIOTA_SET_STATE_DIR}: must be an absolute path at least two levels deep, e.g. /data/piota`);
  c.stateDir = env.PIOTA_SET_STATE_DIR.replace(/\/+$/, '');
}
if (env.PIOTA_SET_TRUSTED_KEYS) c.trustedKeys = env.PIOTA_SET_TRUSTED_KEYS.split('\n').filter(Boolean);
const text = JSON.stringify(c, null, 2) + '\n';
fs.mkdirSync(path.dirname(target), { recursive: true });
let old = null;
try { old = fs.readFileSync(target, 'utf8'); } catch { /* first config */ }
if (old === text) { console.log(`install.sh: ${target} already as asked`); process.exit(0); }
const tmp = `${target}.${process.pid}.tmp`;
const fd = fs.openSync(tmp, 'w', 0o644);
fs.writeSync(fd, text); fs.fsyncSync(fd); fs.closeSync(fd);
fs.renameSync(tmp, target);
const dfd = fs.openSync(path.dirname(target), 'r'); fs.fsyncSync(dfd); fs.closeSync(dfd);
console.log(`install.sh: wrote ${target}`);
EOF
elif [ -f "$config" ]; then
  note "keeping the existing $config"
else
  die "$config is missing: give the fleet config flags (see --help)"
fi
node -e 'JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"))' "$config" 2>/dev/null \
  || die "$config is not valid JSON: fix it or rewrite it with the fleet config flags"

# --- State directory ----------------------------------------------------------------------------
configured_state="$(config_field stateDir)"
state_dir="${configured_state:-/data/piota}"
[[ "$state_dir" =~ ^/[^/]+/. ]] || die "stateDir $state_dir in $config: must be an absolute path at least two levels deep"

# The state directory must survive an A/B update: not on the root filesystem, not on a slot.
probe="$root$state_dir"
while [ ! -e "$probe" ]; do probe="$(dirname "$probe")"; done
probe="$(readlink -f "$probe")"
if [ "$(stat -L -c %d "$probe")" = "$(stat -L -c %d "${root:-/}/")" ]; then
  if [ "$allow_rootfs" = 1 ]; then
    note "warning: state directory $state_dir is on the root filesystem (--allow-state-on-rootfs): an A/B update would erase it"
  else
    die "state directory $state_dir is on the root filesystem, which an A/B update replaces: mount the shared data partition there first (e.g. at /data, see docs/raspberry-pi.md), or pass --allow-state-on-rootfs on a Pi without A/B slots"
  fi
fi
source_dev="$(findmnt -n -o SOURCE --target "$probe" 2>/dev/null || true)"
if [ -n "$source_dev" ]; then
  slot_devices="$(node -e 'const c = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")); for (const s of Object.values(c.slots ?? {})) for (const d of Object.values(s ?? {})) console.log(d)' "$config")"
  while read -r dev; do
    [ -n "$dev" ] || continue
    if [ "$dev" = "$source_dev" ] || [ "$(readlink -f "$dev")" = "$(readlink -f "$source_dev")" ]; then
      die "state directory $state_dir is on $source_dev, a slot partition in $config: use the shared data partition"
    fi
  done <<<"$slot_devices"
fi
install -d -m 0700 "$root$state_dir"

# --- Connection string --------------------------------------------------------------------------
cs_file="$root$state_dir/connection-string"
if [ "$cs_given" = 1 ]; then
  if [ -f "$cs_file" ] && [ "$(cat "$cs_file")" = "$cs" ]; then
    note "$state_dir/connection-string already holds this connection string"
  else
    tmp="$(umask 077 && mktemp "$root$state_dir/.connection-string.XXXXXX")"
    printf '%s' "$cs" >"$tmp"
    chmod 0600 "$tmp"
    sync "$tmp"
    mv -f "$tmp" "$cs_file"
    sync "$root$state_dir"
    note "stored the connection string in $state_dir/connection-string (mode 0600)"
  fi
  chmod 0600 "$cs_file"
elif [ ! -f "$cs_file" ]; then
  note "warning: no connection string yet: the service starts once $state_dir/connection-string exists (install.sh --connection-string -)"
fi

# --- Service ------------------------------------------------------------------------------------
# The unit assumes /data/piota; another state directory needs its own write path and condition.
if [ "$state_dir" != /data/piota ]; then
  mkdir -p "$dropin_dir"
  cat >"$dropin_dir/state-dir.conf" <<EOF
# Written by install.sh: the state directory is $state_dir.
[Unit]
ConditionPathExists=
ConditionPathExists=$state_dir/connection-string
[Service]
ReadWritePaths=-$state_dir
EOF
  note "wrote $dropin_dir/state-dir.conf for $state_dir"
else
  rm -f "$dropin_dir/state-dir.conf"
  rmdir "$dropin_dir" 2>/dev/null || true
fi
systemctl "${systemctl_root[@]}" enable piota.service >/dev/null 2>&1 || die "could not enable piota.service"
note "piota.service is enabled"
if [ "$systemd_running" = 1 ] && [ "$start" = 1 ]; then
  systemctl daemon-reload
  systemctl restart piota.service || die "piota.service did not start: journalctl -u piota -b"
fi

cat <<EOF

piota is installed. Check it with:
  systemctl status piota                      running, and the last log lines
  journalctl -u piota -b -o cat               this boot's log (JSON lines; -p warning: problems only)
  piota status                                slots, versions, the current update
Configuration: /etc/piota/config.json (fleet-wide), device state: $state_dir
EOF
