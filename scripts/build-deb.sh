#!/usr/bin/env bash
# Builds piota_<version>_all.deb with dpkg-deb: the compiled program and its production
# dependencies in /usr/lib/piota, /usr/bin/piota, the systemd unit, /etc/piota/config.json
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
mkdir -p "$lib" "$root/usr/bin" "$root/usr/lib/systemd/system" "$root/etc/piota" \
  "$root/usr/share/doc/piota" "$root/DEBIAN"

# The program: what `npm run build` produced (JavaScript only: no maps pointing at absent
# sources, no earlier .deb), the entry point and package.json (which --version reads).
cp package.json package-lock.json config.example.json "$lib/"
mkdir -p "$lib/bin"
cp bin/piota.js "$lib/bin/piota.js"
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
cp systemd/piota.service "$root/usr/lib/systemd/system/piota.service"
cp config.example.json "$root/etc/piota/config.json"
cp README.md "$root/usr/share/doc/piota/README.md"
[ -f docs/raspberry-pi.md ] && cp docs/raspberry-pi.md "$root/usr/share/doc/piota/raspberry-pi.md"
cat >"$root/usr/share/doc/piota/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: piota
License: $(node -p 'require("./package.json").license')
Comment: bundled npm dependencies are under /usr/lib/piota/node_modules, each with its licence.
EOF

# Maintainer scripts. Enabling works without a running systemd (it only makes the
# multi-user.target.wants symlink), so an image built in a chroot boots with piota enabled;
# starting and stopping happen only when systemd runs.
cat >"$root/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
  if command -v systemctl >/dev/null 2>&1; then
    systemctl enable piota.service >/dev/null 2>&1 || echo "piota: could not enable piota.service" >&2
  fi
  if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
    # The unit starts only once the device is provisioned (ConditionPathExists= on the
    # connection string), so this is harmless on a fresh install.
    systemctl restart piota.service || echo "piota: piota.service did not start; see journalctl -u piota" >&2
  fi
fi
exit 0
EOF
cat >"$root/DEBIAN/prerm" <<'EOF'
#!/bin/sh
set -e
case "$1" in
  remove|upgrade|deconfigure)
    if [ -d /run/systemd/system ]; then systemctl stop piota.service || true; fi ;;
esac
exit 0
EOF
cat >"$root/DEBIAN/postrm" <<'EOF'
#!/bin/sh
set -e
case "$1" in
  remove|purge)
    if command -v systemctl >/dev/null 2>&1; then systemctl disable piota.service >/dev/null 2>&1 || true; fi
    # disable leaves the symlink when the unit file is already gone: remove it by hand.
    rm -f /etc/systemd/system/multi-user.target.wants/piota.service
    if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi ;;
esac
if [ "$1" = purge ]; then
  # The fleet config and the device's state (its connection string included). A stateDir other
  # than the default is not known here (the config is already gone): remove it by hand.
  rm -rf /etc/piota /data/piota
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
chmod 0755 "$lib/bin/piota.js" "$root/DEBIAN/postinst" "$root/DEBIAN/prerm" "$root/DEBIAN/postrm"

mkdir -p "$out"
deb="$(cd "$out" && pwd)/piota_${debversion}_all.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >&2
echo "$deb"
