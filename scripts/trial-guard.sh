#!/bin/sh
# Ends a tryboot trial that nobody ended: run late in every boot (piota-trial-guard.timer), it
# reboots the board when this is a trial boot of a slot that was never committed. piota commits a
# healthy trial or reboots an unhealthy one itself; this guard is for the trial whose piota cannot
# start at all (a crash at start-up, a broken Node), which systemd would restart forever. A plain
# reboot is enough: the firmware then boots autoboot.txt's [all] slot, the committed one.
# Deliberately no Node and nothing of piota's: it must work when they do not.
#
#   trial-guard.sh [--autoboot FILE] [--device-tree DIR] [--reboot-command CMD] [--dry-run]
#
# --autoboot FILE        the tryboot autoboot.txt (default $PIOTA_AUTOBOOT_FILE, which the unit sets,
#                        else /boot/bootconfig/autoboot.txt)
# --device-tree DIR      the bootloader's values (default /sys/firmware/devicetree/base/chosen/bootloader,
#                        which /proc/device-tree/chosen/bootloader links to on a Pi)
# --reboot-command CMD   run through sh -c to reboot (default "systemctl reboot")
# --dry-run              say what would happen, never reboot
# Exit 0: nothing to do, or the reboot was asked for. Non-zero: an input could not be read or
# made no sense, or the reboot command failed. On any doubt it never reboots: a needless reboot
# of a committed slot is worse than a trial that waits for a person.
set -u

# The unit sets PIOTA_AUTOBOOT_FILE; install.sh --autoboot-file changes it with a drop-in.
autoboot=${PIOTA_AUTOBOOT_FILE:-/boot/bootconfig/autoboot.txt}
devicetree=/sys/firmware/devicetree/base/chosen/bootloader
reboot_command='systemctl reboot'
dry_run=0

say() { echo "piota-trial-guard: $*" >&2; }
fail() { say "$*; not rebooting"; exit 1; }
usage_error() { say "$*"; exit 2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --autoboot) [ $# -ge 2 ] || usage_error "--autoboot needs a file"; autoboot="$2"; shift 2 ;;
    --device-tree) [ $# -ge 2 ] || usage_error "--device-tree needs a directory"; devicetree="$2"; shift 2 ;;
    --reboot-command) [ $# -ge 2 ] || usage_error "--reboot-command needs a command"; reboot_command="$2"; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) sed -n '9,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) usage_error "unknown option '$1' (see --help)" ;;
  esac
done

# One of the firmware's values: exactly 4 bytes, a big-endian unsigned integer. Bytes through
# od -tu1 rather than od --endian, so busybox's od would do as well as coreutils'.
read_u32() {
  path="$devicetree/$1"
  [ -r "$path" ] || fail "cannot read the bootloader's $1 ($path)"
  bytes=$(od -An -v -tu1 "$path" 2>/dev/null) || fail "cannot read the bootloader's $1 ($path)"
  set -- $bytes
  [ $# -eq 4 ] || fail "$path holds $# bytes, expected a 4-byte big-endian number"
  echo $(( ($1 << 24) + ($2 << 16) + ($3 << 8) + $4 ))
}

tryboot=$(read_u32 tryboot) || exit 1
if [ "$tryboot" -eq 0 ]; then
  say "not a trial boot (tryboot=0): nothing to do"
  exit 0
fi
booted=$(read_u32 partition) || exit 1
if [ "$booted" -lt 1 ] || [ "$booted" -gt 255 ]; then
  fail "the bootloader's partition is $booted, not a partition number (1-255)"
fi

# [all] boot_partition, the committed slot. Lines before any section belong to [all] (as in
# config.txt); [tryboot] only names the slot on trial; comments and blank lines are skipped.
# A section or a line this parser does not understand, or boot_partition twice, is doubt.
[ -r "$autoboot" ] || fail "cannot read $autoboot"
committed=$(awk -v src="$autoboot" '
  function bad(msg) { print src " line " NR ": " msg > "/dev/stderr"; failed = 1; exit 1 }
  BEGIN { section = "all"; found = "" }
  {
    line = $0
    sub(/\r$/, "", line); gsub(/^[ \t]+|[ \t]+$/, "", line)
    if (line == "" || line ~ /^#/) next
    if (line ~ /^\[.*\]$/) {
      section = substr(line, 2, length(line) - 2)
      if (section != "all" && section != "tryboot") bad("section [" section "] is not one of [all] and [tryboot]")
      next
    }
    if (line !~ /^[a-z_]+=/) bad("expected name=value or [section], got \"" line "\"")
    if (section != "all" || line !~ /^boot_partition=/) next
    value = substr(line, length("boot_partition=") + 1)
    if (value !~ /^[0-9]+$/ || length(value) > 3) bad("boot_partition must be a whole number, got \"" value "\"")
    if (found != "") bad("boot_partition set twice in [all]")
    found = value + 0
  }
  END {
    if (failed) exit 1
    if (found == "") { print src ": [all] has no boot_partition" > "/dev/stderr"; exit 1 }
    print found
  }
' "$autoboot" 2>&1) || fail "cannot tell the committed slot: $committed"
if [ "$committed" -lt 1 ] || [ "$committed" -gt 255 ]; then
  fail "$autoboot: [all] boot_partition $committed is not a partition number (1-255)"
fi

if [ "$booted" -eq "$committed" ]; then
  say "trial boot of partition $booted, which is committed in $autoboot: nothing to do"
  exit 0
fi

say "trial boot of partition $booted was never committed ($autoboot [all] boot_partition=$committed): rebooting into partition $committed"
if [ "$dry_run" = 1 ]; then
  say "dry run: would run '$reboot_command'"
  exit 0
fi
sh -c "$reboot_command" || { say "'$reboot_command' failed (exit $?)"; exit 1; }
exit 0
