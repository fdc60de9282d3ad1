import type { Command } from './command.js';
import { daemonCommand } from './daemon.js';
import { statusCommand } from './status.js';
import { bundleCreate } from './bundle-create.js';
import { bundleInfo } from './bundle-info.js';
import { bundleKeygen } from './bundle-keygen.js';
import { bundleSign } from './bundle-sign.js';
import { bundleVerify } from './bundle-verify.js';
import { hubStartCommand } from './hub-start.js';
import { hubDeviceAddCommand } from './hub-device-add.js';
import { simulateCommand, simulateRebootCommand } from './simulate.js';
import { triggerCommand } from './trigger.js';

/**
 * Every subcommand, one module each. Add a command by importing its module here.
 * (Kept apart from main.ts so that the list is the one place that changes.)
 */
export const commands: Command[] = [
  daemonCommand,
  statusCommand,
  bundleKeygen,
  bundleCreate,
  bundleSign,
  bundleVerify,
  bundleInfo,
  hubStartCommand,
  hubDeviceAddCommand,
  simulateCommand,
  simulateRebootCommand,
  triggerCommand,
];
