import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { workspace, type Workspace } from './fixtures.js';

// A 1 GiB sparse image (no disk used) streamed through create and verify in a child process of
// its own, so that its peak RSS measures the bundle code and nothing else the test runner holds.
const dist = (path: string) => fileURLToPath(new URL(`../../dist/${path}`, import.meta.url));
const GiB = 1024 * 1024 * 1024;
const MiB = 1024 * 1024;

const child = `
const { createBundle, generateKeyPair, readVerifiedHeader, verifyChunks } = await import(${JSON.stringify(dist('bundle/index.js'))});
const { main } = await import(${JSON.stringify(dist('cli/main.js'))});
const { createReadStream, writeFileSync } = await import('node:fs');
const [image, out, pub] = process.argv.slice(1);
const peak = () => process.resourceUsage().maxRSS * 1024;
const before = peak();
const key = generateKeyPair();
writeFileSync(pub, key.publicKeyPem);
let t = Date.now();
await createBundle({ out, version: '1', compatible: ['m'], payloads: [{ name: 'rootfs', file: image }], chunkSize: 1 << 20, signingKeys: [key.privateKeyPem] });
const createMs = Date.now() - t;
const afterCreate = peak();
t = Date.now();
const header = await readVerifiedHeader(createReadStream(out), { trustedKeys: [key.publicKeyPem], model: 'm', securityVersion: 0 });
let bytes = 0;
for await (const c of verifyChunks(header, header.rest)) bytes += c.data.length;
const verifyMs = Date.now() - t;
const afterVerify = peak();
const cliExit = await main(['bundle', 'verify', out, '--pubkey', pub, '--model', 'm']);
console.log(JSON.stringify({ before, afterCreate, afterVerify, afterCli: peak(), bytes, createMs, verifyMs, cliExit, bundleSize: header.bundleSize }));
`;

let ws: Workspace;
beforeAll(async () => {
  ws = await workspace();
});
afterAll(() => ws.remove());

describe('a 1 GiB sparse image', () => {
  it('streams through create, the verifier and bundle verify with flat memory', () => {
    execFileSync('truncate', ['-s', '1G', ws.path('big.img')]);
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', child, ws.path('big.img'), ws.path('big.bundle'), ws.path('big.pub')], {
      encoding: 'utf8',
      timeout: 55_000,
    });
    expect(r.status, r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^ok: .*1024 chunks verified/);
    const m = JSON.parse(lines[1]);
    const growth = (at: number) => Math.round((at - m.before) / MiB);
    console.log(
      `1 GiB sparse: create ${m.createMs} ms, verify ${m.verifyMs} ms, bundle ${m.bundleSize} bytes; ` +
        `peak RSS growth over ${Math.round(m.before / MiB)} MiB: create ${growth(m.afterCreate)} MiB, verifier ${growth(m.afterVerify)} MiB, bundle verify ${growth(m.afterCli)} MiB`,
    );
    expect(m.bytes).toBe(GiB);
    expect(m.cliExit).toBe(0);
    // Buffering the image would take over 1024 MiB; the chunked path holds a few 1 MiB chunks.
    expect(m.afterCli - m.before).toBeLessThan(150 * MiB);
  });
});
