import type { Command } from './command.js';
import { hubStartCommand } from './hub-start.js';
import { hubDeviceAddCommand } from './hub-device-add.js';

/**
 * Every subcommand, one module each. Add a command by importing its module here.
 * (Kept apart from main.ts so that the list is the one place that changes.)
 */
export const commands: Command[] = [
  hubStartCommand,
  hubDeviceAddCommand,
];
