import { join } from 'node:path';
import { readStateFile, StateFileError, writeStateFile } from '../os/state-file.js';

const SCHEMA = 1;

interface FloorFile {
  minimum: number;
  raisedAt: string;
  /** Which bundle version raised it, for a person reading the file. */
  raisedBy: string;
}

/**
 * The anti-rollback floor: the lowest bundle security version this device accepts. It only ever
 * rises, and lives in a file of its own (`<stateDir>/security-floor.json`) outside the slots and
 * outside state.json, so neither a rollback of the image nor a state reset lowers it. It starts at
 * the fleet config's `minSecurityVersion` (the image's seed) and rises to each committed bundle's.
 */
export class SecurityFloor {
  readonly path: string;
  private minimum = 0;

  private constructor(stateDir: string) {
    this.path = join(stateDir, 'security-floor.json');
  }

  /**
   * Reads the floor: the highest of the file, the config's seed and the slot records piota wrote.
   * A damaged file cannot lower it below those; it is rewritten at the next raise.
   */
  static async load(stateDir: string, seeds: number[], onDamaged: (message: string) => void): Promise<SecurityFloor> {
    const floor = new SecurityFloor(stateDir);
    let stored = 0;
    try {
      stored = (await readStateFile(floor.path, Infinity, validateFloor))?.minimum ?? 0;
    } catch (err) {
      if (!(err instanceof StateFileError)) throw err;
      onDamaged(err.message);
    }
    floor.minimum = Math.max(stored, ...seeds.filter((s) => Number.isSafeInteger(s) && s >= 0));
    if (floor.minimum > stored) await floor.write('the seed').catch(() => undefined);
    return floor;
  }

  get current(): number {
    return this.minimum;
  }

  /** Raises the floor to `to` (never lowers it); durable when it resolves. */
  async raise(to: number, by: string): Promise<void> {
    if (to <= this.minimum) return;
    this.minimum = to;
    await this.write(by);
  }

  private async write(by: string): Promise<void> {
    const data: FloorFile = { minimum: this.minimum, raisedAt: new Date().toISOString(), raisedBy: by };
    await writeStateFile(this.path, SCHEMA, data, { mode: 0o644, mkdirs: true });
  }
}

function validateFloor(data: unknown): FloorFile {
  const d = data as FloorFile;
  if (typeof d !== 'object' || d === null || !Number.isSafeInteger(d.minimum) || d.minimum < 0) {
    throw new Error('minimum: expected a whole number >= 0');
  }
  return d;
}
