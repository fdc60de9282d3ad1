import { describe, expect, it } from 'vitest';
import { parseQuery } from '../../src/hub-emulator/query.js';
import type { JsonObject } from '../../src/hub-emulator/twin.js';

const twins: JsonObject[] = [
  { deviceId: 'a', tags: { site: 'n', n: 3 }, properties: { reported: { v: '1.0' } } },
  { deviceId: 'b', tags: { site: 's', n: 5 }, properties: { reported: {} } },
  { deviceId: "o'neil", tags: {}, properties: { reported: { v: '2.0' } } },
];
const ids = (q: string) => twins.filter(parseQuery(q)).map((t) => t.deviceId as string);

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

  it('refuses what it does not understand, naming it', () => {
    expect(() => parseQuery('SELECT deviceId FROM devices')).toThrow('SELECT * only');
    expect(() => parseQuery('SELECT * FROM devices.modules')).toThrow();
    expect(() => parseQuery('SELECT * FROM devices WHERE')).toThrow();
    expect(() => parseQuery("SELECT * FROM devices WHERE a = 'x' LIMIT 3")).toThrow("unexpected 'LIMIT'");
    expect(() => parseQuery('DROP devices')).toThrow('expected SELECT');
  });
});
