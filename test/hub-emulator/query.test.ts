import { describe, expect, it } from 'vitest';
import { compileQuery, parseCondition } from '../../src/hub-emulator/query.js';
import type { JsonObject } from '../../src/hub-emulator/twin.js';

const twins: JsonObject[] = [
  { deviceId: 'a', tags: { site: 'n', n: 3 }, properties: { reported: { v: '1.0', piota: { state: 'idle' } } }, configurations: { 'cfg-1': { status: 'Applied' } } },
  { deviceId: 'b', tags: { site: 's', n: 5 }, properties: { reported: { piota: { state: 'failed' } } } },
  { deviceId: "o'neil", tags: {}, properties: { reported: { v: '2.0', piota: { state: 'idle' } } } },
];
const run = (q: string) => {
  const query = compileQuery(q);
  return query.shape(twins.filter(query.filter));
};
const ids = (q: string) => run(q).map((t) => t.deviceId as string);

describe('device queries', () => {
  it('filters with comparisons, AND before OR, parentheses, IS_DEFINED', () => {
    expect(ids('SELECT * FROM devices')).toEqual(['a', 'b', "o'neil"]);
    expect(ids("select * from devices where tags.site = 'n'")).toEqual(['a']);
    expect(ids('SELECT * FROM devices WHERE tags.n >= 4')).toEqual(['b']);
    expect(ids("SELECT * FROM devices WHERE tags.site = 's' OR tags.site = 'n' AND tags.n > 4")).toEqual(['b']);
    expect(ids("SELECT * FROM devices WHERE (tags.site = 's' OR tags.site = 'n') AND tags.n > 4")).toEqual(['b']);
    expect(ids('SELECT * FROM devices WHERE IS_DEFINED(properties.reported.v)')).toEqual(['a', "o'neil"]);
    expect(ids("SELECT * FROM devices WHERE deviceId = 'o''neil'")).toEqual(["o'neil"]);
    expect(ids("SELECT * FROM devices WHERE properties.reported.v != '1.0'")).toEqual(["o'neil"]);
  });

  it('IN, NOT IN and NOT, where a missing property is neither true nor false', () => {
    expect(ids("SELECT * FROM devices WHERE deviceId IN ['a', 'b']")).toEqual(['a', 'b']);
    expect(ids("SELECT * FROM devices WHERE tags.site NOT IN ['n']")).toEqual(['b']);
    expect(ids("SELECT * FROM devices WHERE NOT (tags.site = 'n')")).toEqual(['b']);
    expect(ids('SELECT * FROM devices WHERE NOT IS_DEFINED(tags.site)')).toEqual(["o'neil"]);
    expect(ids("SELECT * FROM devices WHERE tags.site = 'x' OR NOT (properties.reported.piota.state = 'idle')")).toEqual(['b']);
  });

  it('paths with [[...]] segments, as configuration metrics write them', () => {
    expect(ids("SELECT * FROM devices WHERE configurations.[[cfg-1]].status = 'Applied'")).toEqual(['a']);
  });

  it('projections, COUNT() and GROUP BY', () => {
    expect(run("SELECT deviceId, tags.site AS s FROM devices WHERE tags.n > 0")).toEqual([
      { deviceId: 'a', s: 'n' },
      { deviceId: 'b', s: 's' },
    ]);
    expect(run("SELECT COUNT() AS n FROM devices WHERE properties.reported.piota.state = 'idle'")).toEqual([{ n: 2 }]);
    expect(run('SELECT COUNT() AS n FROM devices WHERE tags.n > 100')).toEqual([{ n: 0 }]);
    expect(run('SELECT properties.reported.piota.state AS state, COUNT() AS n FROM devices GROUP BY properties.reported.piota.state')).toEqual([
      { state: 'idle', n: 2 },
      { state: 'failed', n: 1 },
    ]);
  });

  it('devices.jobs rows, with devices.jobs. paths', () => {
    const rows: JsonObject[] = [
      { deviceId: 'a', jobId: 'j1', status: 'completed' },
      { deviceId: 'b', jobId: 'j2', status: 'failed' },
    ];
    const q = compileQuery("SELECT * FROM devices.jobs WHERE devices.jobs.jobId = 'j2'");
    expect(q.source).toBe('devices.jobs');
    expect(rows.filter(q.filter).map((r) => r.deviceId)).toEqual(['b']);
  });

  it('conditions alone, as jobs and configurations take them', () => {
    expect(twins.filter(parseCondition("tags.site = 'n' OR deviceId IN ['b']")).map((t) => t.deviceId)).toEqual(['a', 'b']);
    expect(twins.filter(parseCondition('*'))).toHaveLength(3);
    expect(() => parseCondition("tags.site = 'n' ORDER", 'queryCondition')).toThrow("queryCondition: unexpected 'ORDER'");
  });

  it('refuses what it does not understand, naming it', () => {
    expect(() => compileQuery('SELECT * FROM devices.modules')).toThrow('FROM devices and FROM devices.jobs only');
    expect(() => compileQuery('SELECT * FROM devices WHERE')).toThrow();
    expect(() => compileQuery("SELECT * FROM devices WHERE a = 'x' LIMIT 3")).toThrow("unexpected 'LIMIT'");
    expect(() => compileQuery('DROP devices')).toThrow('expected SELECT');
    expect(() => compileQuery("SELECT * FROM devices WHERE deviceId IN ('a')")).toThrow('square brackets');
    expect(() => compileQuery('SELECT deviceId, COUNT() FROM devices')).toThrow('GROUP BY');
    expect(() => compileQuery('SELECT deviceId, COUNT() FROM devices GROUP BY tags.site')).toThrow("'deviceId' is neither");
  });
});
