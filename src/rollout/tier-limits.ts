/**
 * IoT Hub's operation throttles for one unit of each standard tier, from Microsoft's "IoT Hub quotas
 * and throttling" page. Rates are per second (a per-minute limit divided by 60). The rollout paces
 * itself below these, leaving room for the other programs using the same hub.
 */
export type Tier = 'S1' | 'S2' | 'S3';

/** The classes of calls the rollout makes, each throttled on its own by IoT Hub. */
export type OperationClass = 'query' | 'twinRead' | 'twinUpdate' | 'identity' | 'jobOperation' | 'jobDeviceOperation' | 'method' | 'configuration';

export interface TierLimits {
  /** Calls per second, by class. */
  perSecond: Record<OperationClass, number>;
  /** How many jobs may run at once on the hub. */
  concurrentJobs: number;
}

export const TIER_LIMITS: Record<Tier, TierLimits> = {
  S1: {
    perSecond: { query: 20 / 60, twinRead: 100, twinUpdate: 50, identity: 100 / 60, jobOperation: 100 / 60, jobDeviceOperation: 10, method: 20, configuration: 20 / 60 },
    concurrentJobs: 1,
  },
  S2: {
    perSecond: { query: 20 / 60, twinRead: 100, twinUpdate: 50, identity: 100 / 60, jobOperation: 100 / 60, jobDeviceOperation: 10, method: 60, configuration: 20 / 60 },
    concurrentJobs: 5,
  },
  S3: {
    perSecond: { query: 1000 / 60, twinRead: 500, twinUpdate: 250, identity: 5000 / 60, jobOperation: 5000 / 60, jobDeviceOperation: 50, method: 3000, configuration: 20 / 60 },
    concurrentJobs: 10,
  },
};

export function parseTier(raw: string): Tier {
  const t = raw.toUpperCase();
  if (t === 'S1' || t === 'S2' || t === 'S3') return t;
  throw new Error(`--tier '${raw}' must be S1, S2 or S3`);
}
