import type { RolloutDefinition } from './definition.js';
import type { RolloutHub } from './hub-port.js';
import { cumulativeWaveSizes } from './plan.js';
import type { RecordStore, StoredRecord } from './record-store.js';
import { RECORD_TAG, type RolloutRecord } from './record.js';

/**
 * Creates a rollout: counts the devices matching the target now (the waves' shares are of this
 * count, frozen in the record), lays out the waves, and writes the record. No device is touched
 * until a controller starts the first wave.
 */
export async function createRollout(hub: RolloutHub, store: RecordStore, definition: RolloutDefinition, now: Date): Promise<StoredRecord> {
  const matching = (await hub.queryTwins(definition.target)).filter((t) => t.tags[RECORD_TAG] === undefined);
  const sizes = cumulativeWaveSizes(definition.waves, matching.length);
  const record: RolloutRecord = {
    schema: 1,
    definition,
    createdAt: now.toISOString(),
    targetedDevices: matching.length,
    state: 'running',
    reason: null,
    waves: sizes.map((cumulativeSize, i) => ({ wave: i + 1, cumulativeSize, devices: 0, stage: 'pending', jobId: null, configurationId: null, startedAt: null, endedAt: null, endReason: null })),
    decisions: [{ at: now.toISOString(), what: 'created', why: `${matching.length} device(s) match ${definition.target}; waves reach ${sizes.join(', ')} of them` }],
    controller: null,
    cleanedUp: false,
  };
  return store.create(record);
}
