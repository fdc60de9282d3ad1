export { BootError, SLOTS, inactiveSlot, type Slot, type BootBackend } from './backend.js';
export { parseAutoboot, serializeAutoboot, AUTOBOOT_LENGTH, type AutobootConfig } from './autoboot.js';
export { readAutoboot, writeAutoboot } from './autoboot-file.js';
export { readBootloaderValue, encodeBootloaderValue } from './device-tree.js';
export { runRebootCommand } from './reboot-command.js';
export { TrybootBackend, type TrybootOptions } from './tryboot.js';
