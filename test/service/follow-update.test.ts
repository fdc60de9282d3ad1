import { describe, it, expect } from 'vitest';
import { resultOfStatus, triggerAndFollow, type FollowEvent, type HubService } from '../../src/service/follow-update.js';

/**
 * A hub port whose device answers like Microsoft's Node sample: a string, no updateId, then one
 * twin status per poll (the fake of our own small HubService port; the real SDK path is in
 * test/e2e/trigger-sample-device.test.ts).
 */
function sampleHub(statuses: string[], before: string | null = null): HubService & { polls: number } {
  let current: string | null = before;
  const twin = () => (current === null ? {} : { iothubDM: { firmwareUpdate: { status: current } } });
  const hub = {
    polls: 0,
    async invokeMethod() {
      return { status: 200, payload: 'Firmware update started.' };
    },
    async reportedProperties() {
      // The first read is trigger's snapshot before invoking; each later one sees the next status.
      if (hub.polls > 0 && statuses.length > 0) current = statuses.shift()!;
      hub.polls++;
      return twin();
    },
  };
  return hub;
}

async function follow(hub: HubService) {
  const events: FollowEvent[] = [];
  const result = await triggerAndFollow(hub, {
    deviceId: 'ms-sample',
    payload: { fwPackageUri: 'https://localhost/fw.bin' },
    timeoutMs: 5_000,
    sleep: async () => undefined,
    onEvent: (e) => events.push(e),
  });
  return { result, statuses: events.flatMap((e) => (e.event === 'status' ? [e.status] : [])) };
}

describe('the statuses that end an update', () => {
  it.each([
    ['applyComplete', 'applyComplete'],
    ['downloadFailed', 'downloadFailed'],
    ['applyFailed', 'applyFailed'],
    // Microsoft's Node sample, in the case of each of its versions.
    ['apply firmware image complete', 'applyComplete'],
    ['Apply firmware image complete', 'applyComplete'],
    ['Download image failed', 'downloadFailed'],
    ['download image failed', 'downloadFailed'],
    ['Apply image failed', 'applyFailed'],
    ['apply image failed', 'applyFailed'],
  ])('%j ends it as %s', (status, result) => {
    expect(resultOfStatus(status)).toBe(result);
  });

  it.each(['waiting', 'downloading', 'download complete', 'applying', 'rebooting-soon', '', 'constructor', '__proto__', 'toString', 'complete'])(
    '%j does not',
    (status) => {
      expect(resultOfStatus(status)).toBeNull();
    },
  );
});

describe('trigger following a device that runs Microsoft\'s Node sample', () => {
  it('ends on "apply firmware image complete" with exit 0', async () => {
    const hub = sampleHub(['downloading', 'download complete', 'applying', 'apply firmware image complete', 'never read']);
    const { result, statuses } = await follow(hub);
    expect(result).toMatchObject({ result: 'applyComplete', exitCode: 0, updateId: null });
    expect(statuses).toEqual(['downloading', 'download complete', 'applying', 'apply firmware image complete']);
  });

  it.each([
    [['downloading', 'Download image failed'], 'downloadFailed'],
    [['downloading', 'download complete', 'applying', 'Apply image failed'], 'applyFailed'],
  ])('ends on %j as %s with exit 1, naming the status it saw', async (sequence, ended) => {
    const { result, statuses } = await follow(sampleHub([...sequence, 'never read']));
    expect(statuses).toEqual(sequence);
    expect(result).toMatchObject({ result: ended, exitCode: 1, error: null });
    expect(result.message).toBe(`${ended} (no reason given, reported as "${sequence.at(-1)}")`);
  });

  it('does not take the previous update\'s sample result, still on the twin, for this one\'s', async () => {
    const hub = sampleHub(['apply firmware image complete', 'downloading', 'Download image failed'], 'apply firmware image complete');
    const { result, statuses } = await follow(hub);
    expect(statuses).toEqual(['downloading', 'Download image failed']);
    expect(result.result).toBe('downloadFailed');
  });
});
