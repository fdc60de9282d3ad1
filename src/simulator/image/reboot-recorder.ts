/**
 * How the reboot argument leaves the container. piota runs `systemctl reboot
 * --reboot-argument="0 tryboot"` as on a Pi: systemctl writes it to /run/systemd/reboot-param,
 * where a Pi's systemd-shutdown hands it to reboot(2) and the firmware reads it. A container's
 * /run is gone when systemd-nspawn exits (status 133), so this unit of the rig's, stopped late in
 * the shutdown, copies the file to a directory the rig binds from the host. piota's code path is
 * the same as on a Pi; the unit lives in /run/systemd/system (a bind, never written to the image).
 */
export const RECORDER_UNIT = 'piota-sim-reboot-param.service';
/** Inside the container: the host directory the argument is copied to. */
export const RECORDER_GUEST_DIR = '/run/piota-sim';
export const RECORDED_FILE = 'reboot-param';

/**
 * The unit that copies the reboot argument to `dir`/`file` when the system stops. Default
 * dependencies: stopped by shutdown.target, after systemctl has written the argument; before `dir`
 * is unmounted (RequiresMountsFor).
 */
export function recorderUnit(dir: string, file: string): string {
  return `[Unit]
Description=piota: hands the reboot argument to the simulated firmware
RequiresMountsFor=${dir}

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/true
ExecStop=/bin/sh -c 'if [ -e /run/systemd/reboot-param ]; then cat /run/systemd/reboot-param > ${dir}/${file}; fi'
`;
}

export const recorderUnitText = recorderUnit(RECORDER_GUEST_DIR, RECORDED_FILE);

/** The firmware's reading of the argument: "0 tryboot" (or "tryboot") asks for a one-time trial. */
export function asksForTryboot(argument: string | undefined): boolean {
  return argument !== undefined && argument.trim().split(/\s+/).includes('tryboot');
}
