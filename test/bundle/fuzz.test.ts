import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { BundleError, type BundleErrorCode } from '../../src/bundle/errors.js';
import { MANIFEST_OFFSET, PREAMBLE_LENGTH, decodePreamble, encodeSignatureArea, signedMessage } from '../../src/bundle/format.js';
import { loadPrivateKey, signMessage } from '../../src/bundle/keys.js';
import { readVerifiedHeader, verifyChunks, type VerifiedHeader } from '../../src/bundle/verifier.js';
import { device, imageBytes, makeBundle, pieces, workspace, type Made, type Workspace } from './fixtures.js';

/*
 * Property-based fuzzing of the streaming verifier: mutated bundles, fed in random pieces, go
 * through readVerifiedHeader + verifyChunks and into bounded in-memory partitions, as the daemon
 * does it. Whatever the bytes, the verifier may only fail with a BundleError of a verifier code,
 * may only yield bytes equal to the original image at that offset (nothing before its hash holds),
 * and may never yield a chunk that would pass the end of its partition.
 *
 * Replay a failure with FUZZ_SEED=<the printed seed> (fast-check also prints the failing case).
 */
const SEED = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : 20261129;
if (!Number.isSafeInteger(SEED)) throw new Error(`FUZZ_SEED must be a whole number, got ${JSON.stringify(process.env.FUZZ_SEED)}`);
const RUNS = 1000;

/** The codes a verifier may fail with on hostile bytes; the rest would mean it was misused. */
const VERIFIER_CODES: BundleErrorCode[] = [
  'malformed', 'unsupportedFormat', 'truncated', 'unsigned', 'untrustedKey', 'signatureInvalid', 'incompatible', 'downgrade', 'hashMismatch',
];

type Region = 'preamble' | 'signatures' | 'manifest' | 'chunks';
type Mutation =
  | { kind: 'flip'; region: Region; at: number; bit: number }
  | { kind: 'truncate'; region: Region; at: number }
  | { kind: 'insert'; region: Region; at: number; bytes: Uint8Array }
  | { kind: 'overwrite'; region: Region; at: number; bytes: Uint8Array };

/** A change to one value of the manifest's JSON (the bundle re-laid around it), so the schema checks see valid JSON. */
type ManifestEdit = { pick: number } & ({ op: 'set'; value: unknown } | { op: 'delete' } | { op: 'nudge'; delta: number });

interface Case {
  bundle: number;
  edits: ManifestEdit[];
  mutations: Mutation[];
  /** Re-sign the (changed) header with the trusted key, as a key holder could: the changes reach the parser and the chunk logic. */
  resign: boolean;
  /** Piece sizes the stream is cut into, cycled. */
  cuts: number[];
  /** Resume at this chunk (mod chunk count + 1), as a restarted download does with a Range request. */
  resumeAt: number | null;
}

let ws: Workspace;
const bundles: { made: Made; headerLength: number }[] = [];

beforeAll(async () => {
  ws = await workspace();
  const gzip = await makeBundle(ws, 'gzip', { rootfs: imageBytes(20_000, 3), boot: imageBytes(9_000, 4) });
  const plain = await makeBundle(ws, 'plain', { rootfs: imageBytes(12_500, 5) }, { compression: 'none' });
  for (const made of [gzip, plain]) {
    bundles.push({ made, headerLength: MANIFEST_OFFSET + decodePreamble(made.bytes.subarray(0, PREAMBLE_LENGTH)).manifestLength });
  }
});
afterAll(() => ws.remove());

// A fraction of the region: mostly uniform, sometimes at its edges (fast-check's bias). Not
// fc.double, whose values crowd near 0 (it picks doubles evenly by their bits, not their values).
const unit = fc.integer({ min: 0, max: 2 ** 30 - 1 }).map((n) => n / 2 ** 30);
const at = fc.oneof({ arbitrary: fc.noBias(unit), weight: 3 }, { arbitrary: unit, weight: 1 });
const bytes = fc.uint8Array({ minLength: 1, maxLength: 64 });
function mutationIn(...regions: Region[]): fc.Arbitrary<Mutation> {
  const region = fc.constantFrom(...regions);
  return fc.oneof(
    { arbitrary: fc.record({ kind: fc.constant('flip' as const), region, at, bit: fc.integer({ min: 0, max: 7 }) }), weight: 3 },
    { arbitrary: fc.record({ kind: fc.constant('overwrite' as const), region, at, bytes }), weight: 3 },
    { arbitrary: fc.record({ kind: fc.constant('insert' as const), region, at, bytes }), weight: 2 },
    { arbitrary: fc.record({ kind: fc.constant('truncate' as const), region, at }), weight: 1 },
  );
}
const edgeValue = fc.constantFrom<unknown>(
  -1, 0, 1, 0.5, 4095, 4096, 8192, 2 ** 31, 2 ** 32, Number.MAX_SAFE_INTEGER, 2 ** 53, 1e308, '', 'none', 'gzip', 'rootfs', 'boot',
  'constructor', 'raspberrypi5', '1.0\n', 'a'.repeat(100), [], {}, null, true,
);
const edit: fc.Arbitrary<ManifestEdit> = fc.oneof(
  fc.record({ pick: fc.nat(), op: fc.constant('set' as const), value: fc.oneof(edgeValue, fc.jsonValue({ maxDepth: 2 })) }),
  fc.record({ pick: fc.nat(), op: fc.constant('delete' as const) }),
  fc.record({ pick: fc.nat(), op: fc.constant('nudge' as const), delta: fc.integer({ min: -5000, max: 5000 }).filter((d) => d !== 0) }),
);
const common = {
  bundle: fc.integer({ min: 0, max: 1 }),
  cuts: fc.array(fc.integer({ min: 1, max: 6000 }), { minLength: 1, maxLength: 6 }),
  resumeAt: fc.option(fc.nat({ max: 20 }), { nil: null }),
};
const noEdits = fc.constant<ManifestEdit[]>([]);
const anyRegion = mutationIn('preamble', 'signatures', 'manifest', 'chunks');
/**
 * Four kinds of case, so each layer of the verifier gets its share: bytes changed anywhere; bytes
 * changed only in the chunks (the header holds, chunks are yielded, then one fails); the manifest's
 * JSON edited and re-signed (the schema and chunk rules face valid JSON under a good signature);
 * header bytes changed and re-signed (the parser faces broken text under a good signature).
 */
const fuzzCase: fc.Arbitrary<Case> = fc.oneof(
  fc.record({ ...common, edits: noEdits, mutations: fc.array(anyRegion, { minLength: 1, maxLength: 3 }), resign: fc.constant(false) }),
  fc.record({ ...common, edits: noEdits, mutations: fc.array(mutationIn('chunks'), { minLength: 1, maxLength: 2 }), resign: fc.constant(false) }),
  fc.record({ ...common, edits: fc.array(edit, { minLength: 1, maxLength: 2 }), mutations: fc.array(mutationIn('chunks'), { maxLength: 1 }), resign: fc.constant(true) }),
  fc.record({ ...common, edits: noEdits, mutations: fc.array(mutationIn('preamble', 'manifest'), { minLength: 1, maxLength: 2 }), resign: fc.constant(true) }),
);

/** Every value in a JSON tree, as [container, key] (the root excluded), in a stable order. */
function slotsOf(node: unknown, out: [Record<string, unknown> | unknown[], string | number][] = []) {
  const children: [string | number, unknown][] = Array.isArray(node)
    ? node.map((v, i) => [i, v])
    : node !== null && typeof node === 'object' ? Object.entries(node) : [];
  for (const [key, value] of children) {
    out.push([node as Record<string, unknown>, key]);
    slotsOf(value, out);
  }
  return out;
}

/** Applies the edits to the manifest's JSON and lays the bundle out again: same chunks, the new manifest (space-padded). */
function editManifest(original: Buffer, headerLength: number, edits: ManifestEdit[]): Buffer {
  if (edits.length === 0) return original;
  const manifest = JSON.parse(original.subarray(MANIFEST_OFFSET, headerLength).toString('utf8')) as unknown;
  for (const e of edits) {
    const slots = slotsOf(manifest);
    const [container, key] = slots[e.pick % slots.length];
    const values = container as Record<string | number, unknown>;
    if (e.op === 'set') values[key] = e.value;
    else if (e.op === 'nudge') values[key] = typeof values[key] === 'number' ? (values[key] as number) + e.delta : e.delta;
    else if (Array.isArray(container)) container.splice(key as number, 1);
    else delete values[key];
  }
  const text = Buffer.from(JSON.stringify(manifest), 'utf8');
  const length = Math.max(text.length, headerLength - MANIFEST_OFFSET);
  const preamble = Buffer.from(original.subarray(0, PREAMBLE_LENGTH));
  preamble.writeUInt32BE(length, 12);
  const padded = Buffer.alloc(length, ' ');
  text.copy(padded);
  return Buffer.concat([preamble, original.subarray(PREAMBLE_LENGTH, MANIFEST_OFFSET), padded, original.subarray(headerLength)]);
}

/** Applies the mutations in order; a region's bounds come from the original layout, clamped to what is left. */
function mutate(original: Buffer, headerLength: number, mutations: Mutation[]): Buffer {
  const bounds: Record<Region, [number, number]> = {
    preamble: [0, PREAMBLE_LENGTH],
    signatures: [PREAMBLE_LENGTH, MANIFEST_OFFSET],
    manifest: [MANIFEST_OFFSET, headerLength],
    chunks: [headerLength, original.length],
  };
  let b = Buffer.from(original);
  for (const m of mutations) {
    const [from, to] = bounds[m.region];
    const end = Math.min(to, b.length);
    if (end <= from) continue;
    const pos = from + Math.floor(m.at * (end - from));
    if (m.kind === 'flip') b[pos] ^= 1 << m.bit;
    else if (m.kind === 'truncate') b = b.subarray(0, pos);
    else if (m.kind === 'insert') b = Buffer.concat([b.subarray(0, pos), m.bytes, b.subarray(pos)]);
    else Buffer.from(m.bytes).copy(b, pos);
  }
  return b;
}

/** What a key holder could do: sign whatever header the bytes now carry (when the preamble still reads). */
function resign(b: Buffer, made: Made): Buffer {
  let manifestLength: number;
  try {
    manifestLength = decodePreamble(b.subarray(0, PREAMBLE_LENGTH)).manifestLength;
  } catch {
    return b;
  }
  if (b.length < MANIFEST_OFFSET + manifestLength) return b;
  const preamble = b.subarray(0, PREAMBLE_LENGTH);
  const manifest = b.subarray(MANIFEST_OFFSET, MANIFEST_OFFSET + manifestLength);
  const signature = signMessage(loadPrivateKey(made.key.privateKeyPem), signedMessage(preamble, manifest));
  const out = Buffer.from(b);
  encodeSignatureArea([{ keyId: made.key.keyId, signature }]).copy(out, PREAMBLE_LENGTH);
  return out;
}

interface Outcome {
  error?: BundleError;
  yielded: number;
  /** The daemon's partition check refused the verified header (a payload it has no partition for, or too large). */
  refused?: string;
}

/** One case, the daemon's way: header, partition check, chunks into the partitions. Non-BundleErrors escape. */
async function runCase(c: Case, stats: Record<string, number>, chunksOf: typeof verifyChunks = verifyChunks): Promise<Outcome> {
  const { made, headerLength } = bundles[c.bundle];
  let input = mutate(editManifest(made.bytes, headerLength, c.edits), headerLength, c.mutations);
  if (c.resign) input = resign(input, made);
  // Partitions of the images' sizes, in memory.
  const partitions = new Map(Object.entries(made.images).map(([name, image]) => [name, Buffer.alloc(image.length)]));
  let yielded = 0;
  let from = 0;
  let header: VerifiedHeader | undefined;
  try {
    header = await readVerifiedHeader(pieces(input, c.cuts), device(made.key));
    for (const p of header.manifest.payloads) {
      const partition = partitions.get(p.name);
      if (!partition || p.imageSize > partition.length) {
        await header.rest.return();
        stats.refusedByPartitions = (stats.refusedByPartitions ?? 0) + 1;
        return { yielded, refused: p.name };
      }
    }
    const chunkCount = header.manifest.chunks.length;
    from = c.resumeAt === null ? 0 : c.resumeAt % (chunkCount + 1);
    let source: AsyncIterable<Uint8Array> = header.rest;
    if (from > 0) {
      await header.rest.return();
      const offset = from < chunkCount ? header.manifest.chunks[from].bundleOffset : header.bundleSize;
      source = pieces(input.subarray(offset), c.cuts);
    }
    for await (const chunk of chunksOf(header, source, from)) {
      yielded++;
      const partition = partitions.get(chunk.payload)!;
      const end = chunk.imageOffset + chunk.data.length;
      expect(Number.isSafeInteger(chunk.imageOffset) && chunk.imageOffset >= 0, `chunk ${chunk.index} offset ${chunk.imageOffset}`).toBe(true);
      expect(end, `chunk ${chunk.index} of ${chunk.payload} ends past its partition`).toBeLessThanOrEqual(partition.length);
      // Never a byte the signed hash does not vouch for: every yielded byte is the original's.
      const expected = made.images[chunk.payload].subarray(chunk.imageOffset, end);
      expect(chunk.data.equals(expected), `chunk ${chunk.index} of ${chunk.payload} at ${chunk.imageOffset} differs from the image`).toBe(true);
      chunk.data.copy(partition, chunk.imageOffset);
    }
  } catch (err) {
    if (!(err instanceof BundleError)) throw err;
    stats[err.code] = (stats[err.code] ?? 0) + 1;
    if (err.message.startsWith('manifest: ')) stats.schemaRefused = (stats.schemaRefused ?? 0) + 1;
    if (header) stats.headerAccepted = (stats.headerAccepted ?? 0) + 1;
    if (yielded > 0) stats.failedAfterYield = (stats.failedAfterYield ?? 0) + 1;
    expect(VERIFIER_CODES, `${err.code}: ${err.message}`).toContain(err.code);
    expect(err.message.length).toBeGreaterThan(10);
    return { error: err, yielded };
  }
  stats.accepted = (stats.accepted ?? 0) + 1;
  // Accepted from the start: each partition holds exactly its image. (A resumed run wrote only the tail.)
  if (from === 0) {
    for (const [name, p] of partitions) expect(p.equals(made.images[name]), `partition ${name} after an accepted bundle`).toBe(true);
  }
  return { yielded };
}

describe('fuzzing the streaming verifier', () => {
  it(`holds its properties over ${RUNS} mutated bundles in random pieces (seed ${SEED})`, async () => {
    console.log(`bundle fuzz: seed ${SEED} (replay with FUZZ_SEED=${SEED})`);
    const stats: Record<string, number> = {};
    await fc.assert(
      fc.asyncProperty(fuzzCase, async (c) => {
        await runCase(c, stats);
      }),
      { seed: SEED, numRuns: RUNS },
    );
    console.log(`bundle fuzz outcomes: ${JSON.stringify(stats)}`);
    // Each layer got its share: the preamble and signature checks, the manifest schema under a good
    // signature, chunks yielded before one failed, whole bundles accepted (a change in an unused
    // signature slot, a manifest edit that keeps it valid, a resumed tail).
    for (const [outcome, least] of Object.entries({
      malformed: 100, unsupportedFormat: 10, signatureInvalid: 20, truncated: 30, hashMismatch: 50,
      schemaRefused: 50, headerAccepted: 100, failedAfterYield: 50, accepted: 30,
    })) {
      expect(stats[outcome] ?? 0, outcome).toBeGreaterThanOrEqual(least);
    }
  }, 60_000);

  describe('the harness fails a verifier that breaks a property', () => {
    const intact: Case = { bundle: 0, edits: [], mutations: [], resign: false, cuts: [777], resumeAt: null };
    async function* tampered(header: VerifiedHeader, source: AsyncIterable<Uint8Array>, from?: number) {
      for await (const chunk of verifyChunks(header, source, from)) {
        if (chunk.index === 3) chunk.data[100] ^= 1;
        yield chunk;
      }
    }
    async function* overrunning(header: VerifiedHeader, source: AsyncIterable<Uint8Array>, from?: number) {
      for await (const chunk of verifyChunks(header, source, from)) {
        const last = chunk.index === header.manifest.payloads[0].chunkCount - 1;
        yield last ? { ...chunk, data: Buffer.concat([chunk.data, Buffer.alloc(1)]) } : chunk;
      }
    }

    it('accepts the real verifier on the intact bundle', async () => {
      expect(await runCase(intact, {})).toEqual({ yielded: 8 });
    });

    it('a yielded byte that differs from the image', async () => {
      await expect(runCase(intact, {}, tampered)).rejects.toThrow(/chunk 3 of rootfs at 12288 differs/);
    });

    it('a chunk past the end of its partition', async () => {
      await expect(runCase(intact, {}, overrunning)).rejects.toThrow(/chunk 4 of rootfs ends past its partition/);
    });
  });
});
