/**
 * The boot partition's files for A/B tryboot: one boot image for both slots, whose config.txt
 * picks each slot's command line by the partition it was loaded from (`[boot_partition=N]`), so
 * an update's boot payload can go to either slot. Pure text functions, shared by convert and
 * inspect.
 */

/** Kernel arguments of Raspberry Pi OS's first-boot root resize, which would grow the wrong partition. */
const RESIZE_ARGS = [
  /^resize$/, // trixie: the initramfs script resize_early grows the root partition
  /^init=\/usr\/lib\/raspberrypi-sys-mods\/firstboot$/, // bookworm
  /^init=\/usr\/lib\/raspi-config\/init_resize\.sh$/, // bullseye and older
];

export const isResizeArg = (arg: string): boolean => RESIZE_ARGS.some((r) => r.test(arg));

export function cmdlineArgs(text: string): string[] {
  return text.split('\n')[0]!.trim().split(/\s+/).filter(Boolean);
}

/** The value of `root=` on a command line, if any. */
export function rootArg(text: string): string | undefined {
  return cmdlineArgs(text)
    .find((a) => a.startsWith('root='))
    ?.slice(5);
}

/**
 * A slot's command line from the image's: root= names the slot's root file system, the resize
 * arguments are gone, and `panic=10` makes a kernel that cannot mount its root reboot (into the
 * committed slot). One line, as the firmware reads only the first.
 */
export function slotCmdline(original: string, rootPartUuid: string): { text: string; removed: string[] } {
  const removed: string[] = [];
  const args = cmdlineArgs(original).filter((a) => {
    if (isResizeArg(a)) removed.push(a);
    return !isResizeArg(a) && !a.startsWith('panic=');
  });
  const root = `root=PARTUUID=${rootPartUuid}`;
  const at = args.findIndex((a) => a.startsWith('root='));
  if (at >= 0) args[at] = root;
  else args.push(root);
  args.push('panic=10');
  return { text: args.join(' ') + '\n', removed };
}

/** The command-line file name of each slot on the boot partition. */
export const CMDLINE_FILE = { A: 'cmdline-a.txt', B: 'cmdline-b.txt' } as const;

const BLOCK_START = '# piota A/B: each slot boots with its own command line (piota image convert)';
const BLOCK_END = '# end of piota A/B';

/** config.txt with the block that picks each slot's cmdline file (replacing an earlier one). */
export function slotConfigTxt(original: string, bootPartitions: { A: number; B: number }): string {
  let text = original;
  const start = text.indexOf(BLOCK_START);
  if (start >= 0) {
    const end = text.indexOf(BLOCK_END, start);
    text = text.slice(0, start) + (end >= 0 ? text.slice(end + BLOCK_END.length).replace(/^\n/, '') : '');
  }
  if (text.length > 0 && !text.endsWith('\n')) text += '\n';
  // [all] first: config.txt's filters add up, so a block after [cm5] would apply to a CM5 only.
  return (
    text +
    [
      BLOCK_START,
      '[all]',
      `[boot_partition=${bootPartitions.A}]`,
      `cmdline=${CMDLINE_FILE.A}`,
      `[boot_partition=${bootPartitions.B}]`,
      `cmdline=${CMDLINE_FILE.B}`,
      '[all]',
      BLOCK_END,
    ].join('\n') +
    '\n'
  );
}

/**
 * Which command-line file the firmware reads when it boots from partition `bootPartition` with
 * this config.txt: the last `cmdline=` in a section that applies ([all], or [boot_partition=N]
 * for this N); other filters ([cm4], [pi5]...) depend on the board and are not counted.
 */
export function effectiveCmdlineFile(configTxt: string, bootPartition: number): string {
  let applies = true;
  let file = 'cmdline.txt';
  for (const raw of configTxt.split('\n')) {
    const line = raw.replace(/#.*/, '').trim();
    const section = /^\[(.*)\]$/.exec(line);
    if (section) {
      const filter = section[1]!.trim();
      const bp = /^boot_partition=(\d+)$/.exec(filter);
      applies = filter === 'all' || (bp !== null && Number(bp[1]) === bootPartition);
      continue;
    }
    const m = /^cmdline=(\S+)$/.exec(line);
    if (m && applies) file = m[1]!;
  }
  return file;
}
