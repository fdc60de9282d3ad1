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
#   --autoboot-file PATH     autoboot.txt on the mounted boot-config partition; another path than
#                            /boot/bootconfig/autoboot.txt gets unit drop-ins for piota.service
#                            (write access) and piota-trial-guard.service (the path)
#   --trusted-key FILE       a bundle-signing public key (PEM); repeat for several (a key rotation);
#                            copied to /etc/piota/keys/<key id>.pub and replaces the configured list
#   --hub-ca FILE            the CA (PEM) that signed the IoT Hub's certificate, for a hub with a private
#                            CA: copied to /etc/piota/hub-ca.pem and set as hubCaFile
#   --download-ca FILE       an extra CA (PEM) for bundle downloads (a mirror with a private CA): copied to
#                            /etc/piota/download-ca.pem and set as downloadCaFile
#   --maintenance-window W   when updates may apply: JSON {"cron":"0 2 * * *","durationMinutes":120,
#                            "timeZone":"Europe/Berlin"}, or 'none' to apply at once
# The config is checked with the daemon's own rules (piota config check) before it replaces the old.
# Device
#   --state-dir DIR          state directory on the shared data partition (the config's
#                            stateDir; default /data/piota)
#   --connection-string CS   the device's IoT Hub connection string, stored in
#                            <state dir>/connection-string (0600); '-' reads it from stdin,
#                            which keeps it out of the process list and shell history; checked
#                            with piota config check --connection-string (HostName, DeviceId and
#                            SharedAccessKey; no x509=true, SharedAccessSignature or ModuleId)
#   --allow-state-on-rootfs  accept a state directory on the root filesystem (a Pi without A/B
#                            slots, for trying piota out: an A/B update would erase it)
#   --no-start               enable the service but do not (re)start it now
#   --no-enable              leave enabling the service to the caller (piota image convert enables
#                            every unit of the package's preset)
# Other
#   --uninstall              stop, disable and remove the package (config and state are kept)
#   --purge                  with --uninstall: delete the config and the state directory too
#   --root DIR               act on the system mounted at DIR (an image being prepared; DIR needs
#                            its own dpkg database for --deb) instead of this one
# Paths (--state-dir, --autoboot-file, and the config's stateDir and boot.autobootFile) must be
# absolute, without whitespace, control characters, quotes, backslashes, '%' or '..'.
set -euo pipefail
# Byte-wise pattern matching: [[:cntrl:]] and [[:space:]] mean the ASCII classes whatever the locale.
export LC_ALL=C

die() { echo "install.sh: $*" >&2; exit 1; }
note() { echo "install.sh: $*"; }

# Paths go into systemd drop-ins and into rm -rf: only plain ones. A newline would add a directive,
# '%' is a systemd specifier, whitespace separates list items, quotes and backslashes are unquoted
# by systemd, '..' walks out of a directory the purge guard means to stay in. Prints the canonical
# form: absolute, no '.' or empty components, no trailing '/'.
canonical_path() { # WHAT PATH
  local what="$1" path="$2" shown part out=""
  shown="$(printf '%q' "$path")"
  [[ "$path" != *[[:cntrl:]]* ]] || die "$what $shown: a control character (a line break?) in a path"
  [[ "$path" != *[[:space:]]* ]] || die "$what $shown: whitespace in a path"
  [[ "$path" != *%* ]] || die "$what $path: '%' in a path (systemd would read it as a specifier)"
  [[ "$path" != *[\\\"\']* ]] || die "$what $path: a quote or backslash in a path"
  [[ "$path" == /* ]] || die "$what $path: must be an absolute path"
  local parts
  IFS=/ read -r -a parts <<<"$path"
  for part in "${parts[@]}"; do
    case "$part" in
      ''|.) ;;
      ..) die "$what $path: '..' in a path" ;;
      *) out="$out/$part" ;;
    esac
  done
  printf '%s\n' "${out:-/}"
}

# Directories piota.service cannot see whatever a drop-in says (ProtectHome=, PrivateTmp=).
check_visible() { # WHAT PATH
  case "$2/" in
    /home/*|/root/*|/run/user/*|/tmp/*|/var/tmp/*) die "$1 $2: hidden from the service by its sandbox (ProtectHome=, PrivateTmp=): use a path elsewhere" ;;
  esac
}

# A state directory at least two levels down (/data/piota): never a whole partition, for --purge.
check_state_dir() { # WHAT PATH (canonical)
  [[ "$2" =~ ^/[^/]+/[^/]+ ]] || die "$1 $2: must be an absolute path at least two levels deep, e.g. /data/piota"
  check_visible "$1" "$2"
}

# autoboot.txt's directory becomes writable for piota.service: never / or a system directory.
check_autoboot_file() { # WHAT PATH (canonical)
  case "$(dirname "$2")" in
    /|/bin|/boot|/dev|/etc|/lib|/proc|/run|/sbin|/sys|/usr|/var)
      die "$1 $2: must be on the mounted boot-config partition (e.g. /boot/bootconfig/autoboot.txt), not directly in $(dirname "$2"), which the service would then be allowed to write" ;;
  esac
  check_visible "$1" "$2"
}

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
  PIOTA_SET_BOOT_PARTITIONS="" PIOTA_SET_AUTOBOOT_FILE="" PIOTA_SET_TRUSTED_KEYS="" PIOTA_SET_STATE_DIR="" \
  PIOTA_SET_HUB_CA_FILE="" PIOTA_SET_DOWNLOAD_CA_FILE="" PIOTA_SET_MAINTENANCE_WINDOW=""
hub_ca=""
download_ca=""
enable=1
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
    --autoboot-file) need_value "$@"; PIOTA_SET_AUTOBOOT_FILE="$(canonical_path --autoboot-file "$2")" || exit 1
      check_autoboot_file --autoboot-file "$PIOTA_SET_AUTOBOOT_FILE"; fleet_flags=1; shift 2 ;;
    --trusted-key) need_value "$@"; keys+=("$2"); fleet_flags=1; shift 2 ;;
    --hub-ca) need_value "$@"; hub_ca="$2"; PIOTA_SET_HUB_CA_FILE=/etc/piota/hub-ca.pem; fleet_flags=1; shift 2 ;;
    --download-ca) need_value "$@"; download_ca="$2"; PIOTA_SET_DOWNLOAD_CA_FILE=/etc/piota/download-ca.pem; fleet_flags=1; shift 2 ;;
    --maintenance-window) need_value "$@"; PIOTA_SET_MAINTENANCE_WINDOW="$2"; fleet_flags=1; shift 2 ;;
    --no-enable) enable=0; shift ;;
    --state-dir) need_value "$@"; state_dir="$(canonical_path --state-dir "$2")" || exit 1
      check_state_dir --state-dir "$state_dir"; PIOTA_SET_STATE_DIR="$state_dir"; fleet_flags=1; shift 2 ;;
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

# The connection string is read now; piota checks it (check_connection_string) before the config
# or the state directory changes.
if [ "$cs_given" = 1 ] && [ "$cs" = - ]; then
  IFS= read -r cs || [ -n "$cs" ] || die "--connection-string -: nothing on stdin"
fi
cs="${cs%$'\r'}"

config="$root/etc/piota/config.json"
systemd_running=0
if [ -z "$root" ] && [ -d /run/systemd/system ]; then systemd_running=1; fi
systemctl_root=()
[ -z "$root" ] || systemctl_root=(--root="$root")
dpkg_root=()
[ -z "$root" ] || dpkg_root=(--root="$root")
dropin_dir="$root/etc/systemd/system/piota.service.d"
guard_dropin_dir="$root/etc/systemd/system/piota-trial-guard.service.d"
default_autoboot=/boot/bootconfig/autoboot.txt
piota_js="$root/usr/lib/piota/bin/piota.js"

# Reads string fields of the config, dotted paths like boot.autobootFile ('slots' stands for every
# slot partition's device), each value ended by a NUL (a value may hold a newline; empty when absent).
config_fields() {
  node -e '
    const c = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    const get = (p) => p.split(".").reduce((o, k) => (o && typeof o === "object" ? o[k] : undefined), c);
    for (const p of process.argv.slice(2)) {
      const values = p === "slots" ? Object.values(c.slots ?? {}).flatMap((s) => Object.values(s ?? {})) : [get(p)];
      for (const v of values) process.stdout.write((typeof v === "string" ? v : "") + "\0");
    }' "$config" "$@"
}

# The installed piota, run by this node (also for --root: it is pure JavaScript).
run_piota() { node "$piota_js" "$@"; }

# `piota config check` on FILE: the daemon's own validator. SHOWN names the file in the message,
# which goes to stderr; returns non-zero when the file is refused.
check_config() { # FILE SHOWN
  local err
  err="$(run_piota config check "$1" 2>&1 >/dev/null)" && return 0
  err="${err//"$1"/"$2"}"
  echo "install.sh: ${err:-piota config check $2 failed}; nothing changed" >&2
  return 1
}

# The device connection string, with the rule the daemon uses (piota config check --connection-string).
check_connection_string() {
  local err
  err="$(printf '%s' "$cs" | run_piota config check --connection-string - 2>&1 >/dev/null)" && return 0
  die "--connection-string: ${err#connection string -: }"
}

# The key id of a public key file (sha256 over its SPKI DER, first 16 bytes in hex: the id bundles
# name their signers by, docs/bundle-format.md), computed by the installed piota's own code, which
# also refuses what piota would refuse as a trusted key (a private key, a non-ed25519 key).
key_id() { # FILE
  node --input-type=module -e '
    const [keys, file] = process.argv.slice(1);
    const { pathToFileURL } = await import("node:url");
    const { loadPublicKey, keyIdOf } = await import(pathToFileURL(keys).href);
    const fs = await import("node:fs");
    try { process.stdout.write(keyIdOf(loadPublicKey(fs.readFileSync(file), file))); }
    catch (e) { process.stderr.write(e.message + "\n"); process.exit(2); }
  ' "$root/usr/lib/piota/dist/bundle/keys.js" "$1"
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
  [ -f "$config" ] && configured_state="$(config_fields stateDir | tr -d '\0' || true)"
  [ -n "$state_dir" ] || state_dir="${configured_state:-/data/piota}"
  # A hand-edited stateDir ('/data/..') must not take more than piota's directory with it.
  purge_state=0
  if canonical="$( (canonical_path stateDir "$state_dir") 2>/dev/null)" && [[ "$canonical" =~ ^/[^/]+/[^/]+ ]]; then
    state_dir="$canonical"
    purge_state=1
  fi
  if [ "$systemd_running" = 1 ]; then systemctl stop piota.service 2>/dev/null || true; fi
  systemctl "${systemctl_root[@]}" disable piota.service >/dev/null 2>&1 || true
  rm -rf "$dropin_dir" "$guard_dropin_dir"
  status="$(dpkg-query "${dpkg_root[@]}" -W -f='${Status}' piota 2>/dev/null || true)"
  if [ -n "$status" ] && [[ "$status" != *not-installed ]]; then
    if [ "$purge" = 1 ]; then dpkg "${dpkg_root[@]}" --purge piota; else dpkg "${dpkg_root[@]}" --remove piota; fi
  else
    note "the piota package is not installed"
  fi
  if [ "$systemd_running" = 1 ]; then systemctl daemon-reload || true; fi
  if [ "$purge" = 1 ]; then
    rm -rf "$root/etc/piota"
    # Never a whole partition: only a plain directory at least two levels down (/data/piota).
    if [ "$purge_state" = 1 ]; then
      rm -rf "$root$state_dir"
      note "piota removed; its configuration and state ($state_dir) deleted"
    else
      note "piota removed and its configuration deleted; not deleting the state directory $(printf '%q' "$state_dir") (not a plain path at least two levels below /): remove what is piota's by hand"
    fi
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
elif [ ! -e "$piota_js" ]; then
  die "piota is not installed: give the package with --deb piota_<version>_all.deb"
fi

# --- Fleet config -------------------------------------------------------------------------------
[ "$cs_given" = 0 ] || check_connection_string
# Keys are stored by key id, so two files that are both called piota.pub (each from its own
# `piota bundle keygen`) stay two keys. Every key is checked before any is copied.
declare -A key_file_of=()
key_ids=()
for key in "${keys[@]}"; do
  [ -f "$key" ] || die "--trusted-key $key: no such file"
  id="$(key_id "$key" 2>&1)" || die "--trusted-key $id (expected the .pub from piota bundle keygen)"
  if [ -n "${key_file_of[$id]:-}" ]; then
    die "--trusted-key $key: the same key as --trusted-key ${key_file_of[$id]} (key id $id); give each key once"
  fi
  key_file_of[$id]="$key"
  key_ids+=("$id")
done
# A CA file must be a PEM certificate (what the daemon hands to TLS); it is copied after the check.
for ca in "$hub_ca" "$download_ca"; do
  [ -n "$ca" ] || continue
  [ -f "$ca" ] || die "CA file $ca: no such file"
  grep -q -- '-----BEGIN CERTIFICATE-----' "$ca" || die "CA file $ca: not a PEM certificate (no BEGIN CERTIFICATE line)"
done
if [ ${#key_ids[@]} -gt 0 ]; then
  PIOTA_SET_TRUSTED_KEYS="$(printf '/etc/piota/keys/%s.pub\n' "${key_ids[@]}")"
fi
candidate="$config.install-new"
rm -f "$candidate"
if [ "$fleet_flags" = 1 ]; then
  base="$config"
  [ -f "$base" ] || base="$root/usr/lib/piota/config.example.json"
  [ -f "$base" ] || die "no config to start from ($config or the package's config.example.json)"
  # Edits the JSON with the flags into a candidate file (only when something changes); the
  # values' rules are the daemon's, checked below with piota config check.
  node - "$base" "$config" "$candidate" <<'EOF' || exit 1
const fs = require('fs');
const path = require('path');
const [base, target, candidate] = process.argv.slice(2);
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
if (env.PIOTA_SET_BOOT_BACKEND) c.boot.backend = env.PIOTA_SET_BOOT_BACKEND;
if (env.PIOTA_SET_BOOT_PARTITIONS) {
  const m = /^(\d+),(\d+)$/.exec(env.PIOTA_SET_BOOT_PARTITIONS);
  if (!m) fail(`--boot-partitions ${env.PIOTA_SET_BOOT_PARTITIONS}: expected two partition numbers A,B, e.g. 2,3`);
  c.boot.bootPartitions = { A: Number(m[1]), B: Number(m[2]) };
}
if (env.PIOTA_SET_AUTOBOOT_FILE) c.boot.autobootFile = env.PIOTA_SET_AUTOBOOT_FILE;
if (env.PIOTA_SET_STATE_DIR) c.stateDir = env.PIOTA_SET_STATE_DIR;
if (env.PIOTA_SET_HUB_CA_FILE) c.hubCaFile = env.PIOTA_SET_HUB_CA_FILE;
if (env.PIOTA_SET_DOWNLOAD_CA_FILE) c.downloadCaFile = env.PIOTA_SET_DOWNLOAD_CA_FILE;
if (env.PIOTA_SET_MAINTENANCE_WINDOW === 'none') c.maintenanceWindow = null;
else if (env.PIOTA_SET_MAINTENANCE_WINDOW) {
  try { c.maintenanceWindow = JSON.parse(env.PIOTA_SET_MAINTENANCE_WINDOW); }
  catch { fail(`--maintenance-window ${env.PIOTA_SET_MAINTENANCE_WINDOW}: expected JSON such as {"cron":"0 2 * * *","durationMinutes":120,"timeZone":"Europe/Berlin"}, or none`); }
}
if (env.PIOTA_SET_TRUSTED_KEYS) c.trustedKeys = env.PIOTA_SET_TRUSTED_KEYS.split('\n').filter(Boolean);
const text = JSON.stringify(c, null, 2) + '\n';
let old = null;
try { old = fs.readFileSync(target, 'utf8'); } catch { /* first config */ }
if (old === text) { console.log(`install.sh: ${target} already as asked`); process.exit(0); }
fs.mkdirSync(path.dirname(target), { recursive: true });
const fd = fs.openSync(candidate, 'w', 0o644);
fs.writeSync(fd, text); fs.fsyncSync(fd); fs.closeSync(fd);
EOF
elif [ -f "$config" ]; then
  note "keeping the existing $config"
else
  die "$config is missing: give the fleet config flags (see --help)"
fi
# The daemon's own validator decides, before anything is replaced or enabled.
if [ -f "$candidate" ]; then
  check_config "$candidate" "$config" || { rm -f "$candidate"; exit 1; }
else
  check_config "$config" "$config" || exit 1
fi
if [ ${#key_ids[@]} -gt 0 ]; then
  mkdir -p "$root/etc/piota/keys"
  for id in "${key_ids[@]}"; do
    dest="$root/etc/piota/keys/$id.pub"
    if ! cmp -s "${key_file_of[$id]}" "$dest"; then install -m 0644 "${key_file_of[$id]}" "$dest"; fi
    note "trusted key ${key_file_of[$id]}: key id $id, /etc/piota/keys/$id.pub"
  done
fi
for pair in "$hub_ca:hub-ca.pem" "$download_ca:download-ca.pem"; do
  ca="${pair%:*}"
  [ -n "$ca" ] || continue
  mkdir -p "$root/etc/piota"
  if ! cmp -s "$ca" "$root/etc/piota/${pair##*:}"; then install -m 0644 "$ca" "$root/etc/piota/${pair##*:}"; fi
  note "CA $ca: /etc/piota/${pair##*:}"
done
if [ -f "$candidate" ]; then
  mv -f "$candidate" "$config"
  sync "$(dirname "$config")"
  note "wrote $config"
fi

# --- State directory ----------------------------------------------------------------------------
# One node for all three: stateDir, boot.autobootFile, then every slot partition's device.
mapfile -d '' -t fields < <(config_fields stateDir boot.autobootFile slots)
[ ${#fields[@]} -ge 2 ] || die "cannot read $config"
state_dir="$(canonical_path "stateDir in $config:" "${fields[0]:-/data/piota}")" || exit 1
check_state_dir "stateDir in $config:" "$state_dir"
autoboot_file="$(canonical_path "boot.autobootFile in $config:" "${fields[1]}")" || exit 1
check_autoboot_file "boot.autobootFile in $config:" "$autoboot_file"

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
  for dev in "${fields[@]:2}"; do
    [ -n "$dev" ] || continue
    if [ "$dev" = "$source_dev" ] || [ "$(readlink -f "$dev")" = "$(readlink -f "$source_dev")" ]; then
      die "state directory $state_dir is on $source_dev, a slot partition in $config: use the shared data partition"
    fi
  done
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
fi
# Another autoboot.txt: piota.service may write its directory (a first write goes through a temporary
# file beside it), and the trial guard reads that file (PIOTA_AUTOBOOT_FILE, see trial-guard.sh).
if [ "$autoboot_file" != "$default_autoboot" ]; then
  mkdir -p "$dropin_dir" "$guard_dropin_dir"
  cat >"$dropin_dir/autoboot-file.conf" <<EOF
# Written by install.sh: autoboot.txt is $autoboot_file (boot.autobootFile).
[Service]
ReadWritePaths=-$(dirname "$autoboot_file")
EOF
  cat >"$guard_dropin_dir/autoboot-file.conf" <<EOF
# Written by install.sh: autoboot.txt is $autoboot_file (boot.autobootFile in /etc/piota/config.json).
[Service]
Environment=PIOTA_AUTOBOOT_FILE=$autoboot_file
EOF
  note "wrote $dropin_dir/autoboot-file.conf and $guard_dropin_dir/autoboot-file.conf for $autoboot_file"
else
  rm -f "$dropin_dir/autoboot-file.conf" "$guard_dropin_dir/autoboot-file.conf"
fi
rmdir "$dropin_dir" "$guard_dropin_dir" 2>/dev/null || true
if [ "$enable" = 1 ]; then
  systemctl "${systemctl_root[@]}" enable piota.service >/dev/null 2>&1 || die "could not enable piota.service"
  note "piota.service is enabled"
fi
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
