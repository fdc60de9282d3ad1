import { describe, it, expect } from 'vitest';
import { reportedProperties } from '../../src/agent/reported-properties.js';
import { stateWith, updateIn } from './fakes/ports.js';

const facts = { agentVersion: '0.2.0', model: 'raspberrypi4-64', bootedSlot: 'A' as const, committedSlot: 'A' as const, runningVersion: '1.0.0', applyAt: null, securityFloor: 0, clock: null };
const sas = 'https://acct.blob.core.windows.net/fw/fw-2.0.0.piota?sv=2024-05-04&se=2026-12-01&sig=S3CR3T%2Bkey';

describe('the reported properties keep secrets off the twin', () => {
  it('reports the URI without its query, and masks a signature quoted in an error message', () => {
    const state = stateWith(updateIn('downloadFailed', { fwPackageUri: sas, error: { code: 'downloadError', message: `${sas} changed on the server; SharedAccessKey=abc` } }));
    const fu = (reportedProperties(state, facts).iothubDM as { firmwareUpdate: { fwPackageUri: string; error: { message: string } } }).firmwareUpdate;
    expect(fu.fwPackageUri).toBe('https://acct.blob.core.windows.net/fw/fw-2.0.0.piota?[redacted]');
    expect(JSON.stringify(fu)).not.toContain('S3CR3T');
    expect(JSON.stringify(fu)).not.toContain('abc');
    expect(fu.error.message).toContain('changed on the server');
  });
});
