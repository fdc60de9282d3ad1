/**
 * What the rollout needs of IoT Hub, and nothing more: twins (query, read, patch with an etag),
 * a device identity for the record, method jobs and their per-device results, direct methods, and
 * automatic device configurations. `iothub-port.ts` implements it over azure-iothub; the unit
 * tests use a fake of this port.
 */

export interface DeviceTwin {
  deviceId: string;
  etag?: string;
  tags: Record<string, unknown>;
  desired: Record<string, unknown>;
  reported: Record<string, unknown>;
  connectionState?: string;
}

export interface TwinPatch {
  tags?: Record<string, unknown>;
  properties?: { desired?: Record<string, unknown> };
}

export type JobStatus = 'queued' | 'scheduled' | 'running' | 'completed' | 'failed' | 'cancelled' | 'unknown';

export interface JobInfo {
  jobId: string;
  status: JobStatus;
  /** deviceJobStatistics, when the hub gives them: that each method was answered, nothing more. */
  stats?: { deviceCount: number; succeededCount: number; failedCount: number; pendingCount: number; runningCount: number };
  failureReason?: string;
}

/** One device's line in a job: `SELECT * FROM devices.jobs WHERE devices.jobs.jobId = '…'`. */
export interface JobDeviceResult {
  deviceId: string;
  /** pending/scheduled/running/completed/failed/cancelled, as the hub says. */
  status: string;
  /** The device's method answer, for a completed method call. */
  methodStatus?: number;
  methodPayload?: unknown;
  /** Why the hub could not call the method (e.g. DeviceNotOnline after connectTimeoutInSeconds). */
  errorCode?: string;
  errorMessage?: string;
}

export interface MethodCall {
  methodName: string;
  payload: unknown;
  responseTimeoutInSeconds: number;
  /** How long IoT Hub waits for a disconnected device to connect (0..300). */
  connectTimeoutInSeconds: number;
}

export interface ConfigurationSpec {
  id: string;
  targetCondition: string;
  priority: number;
  labels: Record<string, string>;
  desiredPatch: Record<string, unknown>;
  /** Metric name → query (`SELECT deviceId FROM devices WHERE …`). */
  metrics: Record<string, string>;
}

/** A configuration as the hub reports it: its metrics are counted by the hub, not by the rollout. */
export interface ConfigurationInfo {
  id: string;
  targetCondition: string;
  /** Metric name → devices its query returns. */
  metrics: Record<string, number>;
  /** targetedCount, appliedCount. */
  systemMetrics: Record<string, number>;
}

export interface RolloutHub {
  /** Every twin matching the condition (all pages); null condition: every device. */
  queryTwins(condition: string | null): Promise<DeviceTwin[]>;
  getTwin(deviceId: string): Promise<DeviceTwin>;
  /** Merges the patch; with an etag, fails with `preconditionFailed` if the twin changed. */
  updateTwin(deviceId: string, patch: TwinPatch, etag?: string): Promise<DeviceTwin>;
  /** Registers a device identity; fails with `exists` if it is registered already. */
  createDevice(deviceId: string): Promise<void>;
  scheduleMethodJob(jobId: string, queryCondition: string, call: MethodCall, maxExecutionTimeInSeconds: number): Promise<void>;
  /** The job, or null if the hub has no job of that id. */
  getJob(jobId: string): Promise<JobInfo | null>;
  cancelJob(jobId: string): Promise<void>;
  jobDeviceResults(jobId: string): Promise<JobDeviceResult[]>;
  invokeMethod(deviceId: string, call: MethodCall): Promise<{ status: number; payload: unknown }>;
  addConfiguration(spec: ConfigurationSpec): Promise<void>;
  /** The configuration, or null if the hub has none of that id. */
  getConfiguration(id: string): Promise<ConfigurationInfo | null>;
  removeConfiguration(id: string): Promise<void>;
}

export type HubFailureKind = 'throttled' | 'preconditionFailed' | 'notFound' | 'exists' | 'offline' | 'unauthorized' | 'unreachable' | 'other';

/** A hub call that failed, sorted into what the controller does about it. */
export class HubCallError extends Error {
  override name = 'HubCallError';
  constructor(
    readonly kind: HubFailureKind,
    message: string,
    readonly status?: number,
    /** IoT Hub's error code (ThrottlingException, PreconditionFailed, DeviceNotOnline, …). */
    readonly code?: string,
  ) {
    super(message);
  }
}

export function isHubFailure(err: unknown, kind: HubFailureKind): boolean {
  return err instanceof HubCallError && err.kind === kind;
}
