import { describe, it, expect } from 'vitest';
import { fstatSync } from 'node:fs';
import { PassThrough } from 'node:stream';
import { createLogger, stdoutIsJournal, syslogPriority } from '../../src/os/logger.js';

function collect(): { stream: PassThrough; lines: () => string[] } {
  const stream = new PassThrough();
  let text = '';
  stream.setEncoding('utf8').on('data', (chunk: string) => {
    text += chunk;
  });
  return { stream, lines: () => text.split('\n').filter((l) => l !== '') };
}

describe('createLogger', () => {
  it('writes plain JSON lines outside the journal', async () => {
    const out = collect();
    const log = createLogger({ destination: out.stream, name: 'test', journal: false });
    log.info({ updateId: 'u1' }, 'hello');
    await new Promise((r) => setImmediate(r));
    const [line] = out.lines();
    expect(line.startsWith('{')).toBe(true);
    const entry = JSON.parse(line);
    expect(entry).toMatchObject({ level: 30, name: 'test', msg: 'hello', updateId: 'u1' });
    expect(Number.isNaN(Date.parse(entry.time))).toBe(false);
  });

  it('prefixes every line with the syslog priority journald reads, one prefix per line', async () => {
    const out = collect();
    const log = createLogger({ destination: out.stream, journal: true, level: 'trace' });
    log.trace('t');
    log.debug('d');
    log.info('i');
    log.warn('w\nsecond line');
    log.error('e');
    log.fatal('f');
    log.child({ part: 'hub' }).warn('from a child');
    await new Promise((r) => setImmediate(r));
    const lines = out.lines();
    expect(lines.map((l) => l.slice(0, 3))).toEqual(['<7>', '<7>', '<6>', '<4>', '<3>', '<2>', '<4>']);
    // What journald keeps after stripping the prefix is the JSON line itself.
    expect(JSON.parse(lines[3].slice(3)).msg).toBe('w\nsecond line');
    expect(JSON.parse(lines[6].slice(3)).part).toBe('hub');
  });

  it('respects the level', async () => {
    const out = collect();
    const log = createLogger({ destination: out.stream, level: 'warn', journal: false });
    log.info('quiet');
    log.warn('loud');
    await new Promise((r) => setImmediate(r));
    expect(out.lines().map((l) => JSON.parse(l).msg)).toEqual(['loud']);
  });

  it('keeps secrets out of the log at any depth, in messages, bindings and errors', async () => {
    const out = collect();
    const log = createLogger({ destination: out.stream, journal: false });
    const cs = 'HostName=hub.example.net;DeviceId=pi-1;SharedAccessKey=S3cr3tKeyAAAA=';
    log.info({
      connectionString: cs,
      config: { hub: { sharedAccessKey: 'S3cr3tKeyBBBB', deviceId: 'pi-1' }, list: [{ password: 'hunter2' }] },
      fwPackageUri: 'https://acct.blob.core.windows.net/fw/a.bundle?sv=2022-11-02&se=2030&sig=S3cr3tSigCCCC%3D',
      sas: 'SharedAccessSignature sr=hub%2Fdevices%2Fpi-1&sig=S3cr3tSigDDDD&se=1',
      authorization: 'Bearer S3cr3tEEEE',
    }, `connecting with ${cs}`);
    log.child({ serviceConnectionString: 'HostName=h;SharedAccessKeyName=o;SharedAccessKey=S3cr3tFFFF' }).warn('child');
    log.error({ err: new Error(`open failed for ${cs}`) }, 'failed');
    log.error(new Error('token sig=S3cr3tGGGG rejected'));
    await new Promise((r) => setImmediate(r));
    const text = out.lines().join('\n');
    expect(text).not.toMatch(/S3cr3t|hunter2/);
    const [first, child, failed, bare] = out.lines().map((l) => JSON.parse(l));
    expect(first.connectionString).toBe('[redacted]');
    expect(first.config.hub).toEqual({ sharedAccessKey: '[redacted]', deviceId: 'pi-1' });
    expect(first.fwPackageUri).toBe('https://acct.blob.core.windows.net/fw/a.bundle?sv=2022-11-02&se=2030&sig=[redacted]');
    expect(first.msg).toContain('HostName=hub.example.net;DeviceId=pi-1;SharedAccessKey=[redacted]');
    expect(child.serviceConnectionString).toBe('[redacted]');
    expect(failed.err.type).toBe('Error');
    expect(failed.err.message).toContain('SharedAccessKey=[redacted]');
    expect(failed.err.stack).toContain('logger.test.ts');
    expect(bare.msg).toBe('token sig=[redacted] rejected');
  });
});

describe('syslogPriority', () => {
  it('maps pino levels to sd-daemon.h priorities', () => {
    expect([10, 20, 30, 35, 40, 50, 60].map(syslogPriority)).toEqual([7, 7, 6, 6, 4, 3, 2]);
  });
});

describe('stdoutIsJournal', () => {
  it('is true only when JOURNAL_STREAM names the device and inode of stdout', () => {
    const st = fstatSync(1);
    expect(stdoutIsJournal({ JOURNAL_STREAM: `${st.dev}:${st.ino}` })).toBe(true);
    expect(stdoutIsJournal({ JOURNAL_STREAM: `${st.dev}:${st.ino + 1}` })).toBe(false);
    expect(stdoutIsJournal({})).toBe(false);
  });
});
