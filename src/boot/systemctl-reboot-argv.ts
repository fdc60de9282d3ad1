/**
 * systemctl's two ways of passing the reboot argument (the string the Pi firmware reads, `0 tryboot`):
 *
 * - legacy: `systemctl reboot "0 tryboot"` (a positional argument). systemd 252 accepts it with a
 *   deprecation warning; systemd 253 and later refuse it with "Too many arguments." and do not reboot.
 * - current: `systemctl reboot "--reboot-argument=0 tryboot"`, accepted since systemd 246, so by every
 *   Raspberry Pi OS piota runs on (bookworm: 252, trixie: 257).
 *
 * `/etc/piota/config.json` is a conffile and keeps the legacy argv across upgrades, so the legacy form
 * is recognised here and rewritten rather than left to fail at the reboot of every update.
 */

/** The option that carries the reboot argument (systemd >= 246). */
export const REBOOT_ARGUMENT_OPTION = '--reboot-argument';

/** `systemctl` by name or by any path to it (/usr/bin/systemctl, /bin/systemctl, ...). */
export function isSystemctl(program: string): boolean {
  return program === 'systemctl' || (program.startsWith('/') && program.endsWith('/systemctl'));
}

/**
 * The current form of a legacy `systemctl reboot ARG` argv, or undefined when `argv` is not exactly
 * that (anything else runs as configured). Only the plain three-word form is rewritten: with options
 * mixed in, telling a positional argument from an option's value would mean re-implementing
 * systemctl's option parser.
 */
export function currentRebootArgv(argv: readonly string[]): string[] | undefined {
  if (argv.length !== 3) return undefined;
  const [program, verb, argument] = argv;
  if (!isSystemctl(program) || verb !== 'reboot') return undefined;
  if (argument === '' || argument.startsWith('-')) return undefined;
  return [program, verb, `${REBOOT_ARGUMENT_OPTION}=${argument}`];
}

/** Whether systemctl's stderr says it does not know the option (systemd < 246). */
export function rejectsRebootArgumentOption(stderr: string): boolean {
  return /unrecognized option/i.test(stderr) && stderr.includes(REBOOT_ARGUMENT_OPTION);
}

/** Whether a failed systemctl reboot failed on a positional argument (systemd >= 253). */
export function rejectsPositionalArgument(argv: readonly string[], stderr: string): boolean {
  return argv.length > 0 && isSystemctl(argv[0]) && argv.includes('reboot') && /Too many arguments/i.test(stderr);
}
