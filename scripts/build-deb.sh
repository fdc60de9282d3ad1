#!/usr/bin/env bash
# Builds piota_<version>_all.deb with dpkg-deb: the compiled program and its production
# dependencies in /usr/lib/piota, /usr/bin/piota, the systemd units (the agent, first-boot
# provisioning, and the trial guard with its timer) and their preset, /etc/piota/config.json
# (a conffile) and the maintainer scripts. Pure JavaScript, so one package serves every Pi.
#
#   scripts/build-deb.sh [--out DIR] [--no-build]
#
# --out DIR    where the .deb goes (default: dist/)
# --no-build   reuse dist/ as it is (npm run build already ran)
# Prints the path of the .deb on the last line of stdout.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
out="$repo/dist"
build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="${2:?--out needs a directory}"; shift 2 ;;
    --no-build) build=0; shift ;;
    -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-deb.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
for tool in dpkg-deb npm node; do
  command -v "$tool" >/dev/null || { echo "build-deb.sh: $tool is required" >&2; exit 1; }
done

cd "$repo"
version="$(node -p 'require("./package.json").version')"
# A Debian version must start with a digit and use no '-' (that would be a Debian revision);
# semver pre-releases (1.2.0-rc.1) become 1.2.0~rc.1, which sorts before 1.2.0 as intended.
debversion="${version//-/\~}"
if ! [[ "$debversion" =~ ^[0-9][A-Za-z0-9.+~]*$ ]]; then
  echo "build-deb.sh: package.json version '$version' cannot be a Debian version" >&2
  exit 1
fi

if [ "$build" = 1 ]; then npm run build >&2; fi
[ -f dist/cli/main.js ] || { echo "build-deb.sh: dist/cli/main.js missing (run npm run build)" >&2; exit 1; }

stage="$(mktemp -d "${TMPDIR:-/tmp}/piota-deb.XXXXXX")"
trap 'rm -rf "$stage"' EXIT
root="$stage/root"
lib="$root/usr/lib/piota"
mkdir -p "$lib" "$root/usr/bin" "$root/usr/lib/systemd/system" "$root/usr/lib/systemd/system-preset" "$root/etc/piota" \
  "$root/usr/share/doc/piota" "$root/DEBIAN"

# The program: what `npm run build` produced (JavaScript only: no maps pointing at absent
# sources, no earlier .deb), the entry point and package.json (which --version reads).
cp package.json package-lock.json config.example.json "$lib/"
mkdir -p "$lib/bin"
cp bin/piota.js "$lib/bin/piota.js"
# The installer rides along, for provisioning a device whose image already carries piota.
cp scripts/install.sh "$lib/install.sh"
# The trial guard is a shell script on purpose: it must work when Node or piota does not.
cp scripts/trial-guard.sh "$lib/trial-guard.sh"
(cd dist && find . -name '*.js' -type f) | while read -r f; do
  mkdir -p "$lib/dist/$(dirname "$f")"
  cp "dist/$f" "$lib/dist/$f"
done

# Production dependencies, installed from the lock file exactly as npm would for a user.
# Nothing is compiled: --ignore-scripts, and the build fails below if any native addon appears.
(cd "$lib" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --prefer-offline --loglevel=error >&2)
rm -f "$lib/package-lock.json" "$lib/node_modules/.package-lock.json"
native="$(find "$lib/node_modules" -name '*.node' -type f | head -n 5)"
if [ -n "$native" ]; then
  echo "build-deb.sh: native addons would make this package architecture-specific:" >&2
  echo "$native" >&2
  exit 1
fi
# What a running program never reads: type declarations, source maps, TypeScript sources, docs
# (licences stay). Halves the installed size.
find "$lib/node_modules" -type f \( -name '*.map' -o -name '*.d.ts' -o -name '*.d.mts' -o -name '*.d.cts' \
  -o -name '*.ts' -o -iname '*.md' \) ! -iname 'licen[cs]e*' -delete
rm -rf "$lib/node_modules/@types"
find "$lib/node_modules" -type d -empty -delete

ln -s ../lib/piota/bin/piota.js "$root/usr/bin/piota"
for unit in piota.service piota-provision.service piota-trial-guard.service piota-trial-guard.timer; do
  cp "systemd/$unit" "$root/usr/lib/systemd/system/$unit"
done
# Every unit postinst enables, for `systemctl preset` and image builders (piota image convert).
cp systemd/80-piota.preset "$root/usr/lib/systemd/system-preset/80-piota.preset"
cp config.example.json "$root/etc/piota/config.json"
cp README.md "$root/usr/share/doc/piota/README.md"
[ -f docs/raspberry-pi.md ] && cp docs/raspberry-pi.md "$root/usr/share/doc/piota/raspberry-pi.md"
cat >"$root/usr/share/doc/piota/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: piota
License: $(node -p 'require("./package.json").license')
Comment: bundled npm dependencies are under /usr/lib/piota/node_modules, each with its licence.
EOF

# Maintainer scripts, in the shape debhelper's dh_installsystemd generates, using
# deb-systemd-helper from init-system-helpers (Essential on Debian and Raspberry Pi OS): the unit is
# enabled on the first installation, also without a running systemd (so an image built in a chroot
# boots with piota enabled); an administrator's `systemctl disable` survives upgrades; remove masks
# it, purge forgets it. Starting and stopping happen only when systemd runs.
cat >"$root/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e
# The agent, first-boot provisioning, and the timer of the trial guard (its service is started by
# the timer only): the units of /usr/lib/systemd/system-preset/80-piota.preset.
if [ "$1" = configure ] || [ "$1" = abort-upgrade ] || [ "$1" = abort-deconfigure ] || [ "$1" = abort-remove ]; then
  for unit in piota.service piota-provision.service piota-trial-guard.timer; do
    # Removes only the mask deb-systemd-helper made when the package was removed.
    deb-systemd-helper unmask "$unit" >/dev/null || true
    # was-enabled is true for a new installation.
    if deb-systemd-helper --quiet was-enabled "$unit"; then
      deb-systemd-helper enable "$unit" >/dev/null || true
    else
      deb-systemd-helper update-state "$unit" >/dev/null || true
    fi
  done
fi
if [ "$1" = configure ] && [ -d /run/systemd/system ]; then
  systemctl --system daemon-reload >/dev/null || true
  # The unit starts only on a provisioned device (ConditionPathExists= on the connection string),
  # so this is harmless on a fresh install.
  if systemctl --quiet is-enabled piota.service; then
    deb-systemd-invoke restart piota.service >/dev/null || echo "piota: piota.service did not start; see journalctl -u piota" >&2
  fi
  # The trial guard's timer is not started here: it counts from the boot (OnBootSec=), so started
  # late it would elapse at once, and an install is no moment for a reboot. Every trial is a boot,
  # and timers.target starts it then.
fi
exit 0
EOF
cat >"$root/DEBIAN/prerm" <<'EOF'
#!/bin/sh
set -e
if [ -d /run/systemd/system ] && { [ "$1" = remove ] || [ "$1" = upgrade ] || [ "$1" = deconfigure ]; }; then
  deb-systemd-invoke stop piota.service >/dev/null || true
fi
# The trial guard's timer keeps running across an upgrade (postinst does not start it again, see
# there); a removal stops it.
if [ -d /run/systemd/system ] && { [ "$1" = remove ] || [ "$1" = deconfigure ]; }; then
  deb-systemd-invoke stop piota-trial-guard.timer piota-trial-guard.service >/dev/null || true
fi
exit 0
EOF
cat >"$root/DEBIAN/postrm" <<'EOF'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then systemctl --system daemon-reload >/dev/null || true; fi
if [ "$1" = remove ] && [ -x /usr/bin/deb-systemd-helper ]; then
  deb-systemd-helper mask piota.service piota-provision.service piota-trial-guard.timer >/dev/null || true
fi
if [ "$1" = purge ]; then
  if [ -x /usr/bin/deb-systemd-helper ]; then
    deb-systemd-helper purge piota.service piota-provision.service piota-trial-guard.timer >/dev/null || true
    deb-systemd-helper unmask piota.service piota-provision.service piota-trial-guard.timer >/dev/null || true
  fi
  # The fleet config and the device's state (its connection string included). A stateDir other
  # than the default is not known here (the config is already gone): install.sh --uninstall
  # --purge removes it, or remove it by hand.
  rm -rf /etc/piota /data/piota
  # The drop-ins scripts/install.sh writes for another state directory or autoboot.txt (an
  # administrator's own drop-ins beside them stay).
  rm -f /etc/systemd/system/piota.service.d/state-dir.conf /etc/systemd/system/piota.service.d/autoboot-file.conf \
    /etc/systemd/system/piota-trial-guard.service.d/autoboot-file.conf
  rmdir /etc/systemd/system/piota.service.d /etc/systemd/system/piota-trial-guard.service.d 2>/dev/null || true
fi
exit 0
EOF
echo /etc/piota/config.json >"$root/DEBIAN/conffiles"

installed_kb="$(du -sk --exclude=DEBIAN "$root" | cut -f1)"
cat >"$root/DEBIAN/control" <<EOF
Package: piota
Version: $debversion
Architecture: all
Maintainer: piota maintainers <piota@invalid>
Installed-Size: $installed_kb
Depends: nodejs (>= 20)
Recommends: systemd
Section: admin
Priority: optional
Homepage: https://github.com/piota/piota
Description: firmware-update agent for Raspberry Pi fleets on Azure IoT Hub
 A daemon that answers the IoT Hub direct method firmwareUpdate, streams a signed
 image into the inactive A/B slot, verifies it, boots it once with the Pi's tryboot,
 commits it when healthy and reports the result through the device twin.
 Also: the piota command (status, trigger, bundle tooling, a local hub emulator).
EOF

# Normal permissions whatever the umask of the build machine was.
find "$root" -type d -exec chmod 0755 {} +
find "$root" -type f -exec chmod 0644 {} +
chmod 0755 "$lib/bin/piota.js" "$lib/install.sh" "$lib/trial-guard.sh" "$root/DEBIAN/postinst" "$root/DEBIAN/prerm" "$root/DEBIAN/postrm"

mkdir -p "$out"
deb="$(cd "$out" && pwd)/piota_${debversion}_all.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >&2
echo "$deb"
