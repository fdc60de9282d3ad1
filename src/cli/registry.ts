import type { Command } from './command.js';
import { simulateCommand, simulateRebootCommand } from './simulate.js';

/**
 * Every subcommand, one module each. Add a command by importing its module here.
 * (Kept apart from main.ts so that the list is the one place that changes.)
 */
export const commands: Command[] = [
  simulateCommand,
  simulateRebootCommand,
];
