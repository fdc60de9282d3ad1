import { describe, expect, it } from 'vitest';
import { HubError } from '../../src/hub-emulator/errors.js';
import { deviceTwinView, documentSize, newTwin, patchDesired, patchReported, patchTags, twinEtag } from '../../src/hub-emulator/twin.js';

describe('twin documents', () => {
  it("sizes documents by IoT Hub's rule", () => {
    expect(documentSize({ ab: 'xyz' })).toBe(5);
    expect(documentSize({ n: 1, b: true, o: { k: 'v' } })).toBe(1 + 8 + 1 + 4 + 1 + 1 + 1);
  });

  it('merges, deletes nested nulls, and never stores a null', () => {
    let t = newTwin();
    t = patchReported(t, { a: { b: 1, c: { d: null, e: 2 } } });
    expect(deviceTwinView(t).reported).toEqual({ a: { b: 1, c: { e: 2 } }, $version: 2 });
    t = patchReported(t, { a: { c: null } });
    expect(deviceTwinView(t).reported).toEqual({ a: { b: 1 }, $version: 3 });
    expect(t.reported.metadata.a).toMatchObject({ b: { $lastUpdated: expect.any(String) } });
    expect((t.reported.metadata.a as Record<string, unknown>).c).toBeUndefined();
  });

  it('changes the etag with every change and leaves the old twin untouched', () => {
    const t0 = newTwin();
    const t1 = patchDesired(t0, { x: 1 });
    expect(twinEtag(t1)).not.toBe(twinEtag(t0));
    expect(t0.desired.values).toEqual({});
    expect(t1.desired.metadata.$lastUpdatedVersion).toBe(2);
  });

  it('refuses bad property names, deep nesting and oversize documents with ArgumentInvalid', () => {
    const t = newTwin();
    for (const patch of [{ 'a.b': 1 }, { 'a b': 1 }, { $x: 1 }, { __proto__x: 1, ['__proto__']: 1 }]) {
      expect(() => patchReported(t, JSON.parse(JSON.stringify(patch)))).toThrow(HubError);
    }
    let deep: Record<string, unknown> = { v: 1 };
    for (let i = 0; i < 10; i++) deep = { n: deep };
    expect(() => patchReported(t, deep as never)).toThrow('deeper');
    expect(() => patchTags(t, { big: 'x'.repeat(8 * 1024) })).toThrow('limit');
    expect(() => patchTags(t, { fits: 'x'.repeat(8 * 1024 - 10) })).not.toThrow();
  });

  it('ignores $version and $metadata echoed back in a patch', () => {
    const t = patchDesired(newTwin(), { $version: 99, $metadata: {}, keep: 1 } as never);
    expect(deviceTwinView(t).desired).toEqual({ keep: 1, $version: 2 });
  });
});
