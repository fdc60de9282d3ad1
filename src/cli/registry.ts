import type { CommandEntry } from './command.js';

/**
 * Every subcommand: its words, its line in the list, and its module, loaded only when it runs, so
 * that `piota simulate reboot` or `piota status` on a Pi does not pay for the hub emulator's imports.
 * Add a command by adding its entry here.
 */
export const commands: CommandEntry[] = [
  { path: ['daemon'], summary: 'run the device agent (systemd ExecStart)', load: async () => (await import('./daemon.js')).daemonCommand },
  { path: ['status'], summary: 'the local picture: slots, versions, current update, last result', load: async () => (await import('./status.js')).statusCommand },
  { path: ['trigger'], summary: 'start an update on a device and follow it to its result', load: async () => (await import('./trigger.js')).triggerCommand },
  { path: ['demo'], summary: 'the whole update loop on this machine, nothing to configure', load: async () => (await import('./demo.js')).demoCommand },
  { path: ['hub', 'start'], summary: 'run the local IoT Hub emulator', load: async () => (await import('./hub-start.js')).hubStartCommand },
  { path: ['hub', 'device', 'add'], summary: 'register a device with the emulator and print its connection string', load: async () => (await import('./hub-device-add.js')).hubDeviceAddCommand },
  { path: ['simulate'], summary: 'a simulated Raspberry Pi running the daemon (A/B slots, tryboot, reboots)', load: async () => (await import('./simulate.js')).simulateCommand },
  { path: ['simulate', 'reboot'], summary: "the simulated Pi's reboot command (what its daemon runs instead of systemctl reboot)", load: async () => (await import('./simulate.js')).simulateRebootCommand },
  { path: ['bundle', 'keygen'], summary: 'make an ed25519 key pair for signing bundles', load: async () => (await import('./bundle-keygen.js')).bundleKeygen },
  { path: ['bundle', 'create'], summary: 'make a signed (or unsigned) firmware bundle from image files', load: async () => (await import('./bundle-create.js')).bundleCreate },
  { path: ['bundle', 'sign'], summary: 'add a signature to a bundle', load: async () => (await import('./bundle-sign.js')).bundleSign },
  { path: ['bundle', 'verify'], summary: 'check a bundle: signature, compatibility and every hash', load: async () => (await import('./bundle-verify.js')).bundleVerify },
  { path: ['bundle', 'info'], summary: "print a bundle's manifest", load: async () => (await import('./bundle-info.js')).bundleInfo },
  { path: ['bundle', 'diff'], summary: 'predict what a device running OLD downloads for NEW (adaptive updates)', load: async () => (await import('./bundle-diff.js')).bundleDiff },
  { path: ['provision'], summary: 'first boot: move the connection string dropped on the bootconfig partition to the data partition', load: async () => (await import('./provision.js')).provisionCommand },
  { path: ['image', 'convert'], summary: 'turn a Raspberry Pi OS image into an A/B tryboot image with piota installed', load: async () => (await import('./image-convert.js')).imageConvertCommand },
  { path: ['image', 'inspect'], summary: 'check an image: layout, slots, autoboot.txt, piota and its config, and what is wrong', load: async () => (await import('./image-inspect.js')).imageInspectCommand },
  { path: ['image', 'bundle'], summary: "the signed update bundle of one slot of an A/B image (its boot and root partitions)", load: async () => (await import('./image-bundle.js')).imageBundleCommand },
  { path: ['config', 'check'], summary: "check a config or connection string file with the daemon's own rules", load: async () => (await import('./config-check.js')).configCheckCommand },
  { path: ['rollout', 'start'], summary: 'roll a release out to a fleet in waves (IoT Hub jobs), halting by itself on failures', load: async () => (await import('./rollout-start.js')).rolloutStartCommand },
  { path: ['rollout', 'status'], summary: 'a rollout per wave and overall: results, failure rate, failed and offline devices', load: async () => (await import('./rollout-status.js')).rolloutStatusCommand },
  { path: ['rollout', 'run'], summary: "drive a rollout as its controller (takes over a dead controller's rollout)", load: async () => (await import('./rollout-run.js')).rolloutRunCommand },
  { path: ['rollout', 'pause'], summary: 'pause a rollout: no further wave starts', load: async () => (await import('./rollout-control.js')).rolloutPauseCommand },
  { path: ['rollout', 'continue'], summary: 'continue a paused rollout', load: async () => (await import('./rollout-control.js')).rolloutContinueCommand },
  { path: ['rollout', 'abort'], summary: 'abort a rollout: cancel its jobs and the updates still waiting', load: async () => (await import('./rollout-control.js')).rolloutAbortCommand },
];
