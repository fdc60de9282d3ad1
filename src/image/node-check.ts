import { gunzipSync } from 'node:zlib';
import { ImageError } from './image-error.js';
import { isInstalled, majorOf, parseStanzas } from './dpkg-status.js';
import { readText, type RootReader } from './root-reader.js';

export const MIN_NODE_MAJOR = 20;

export interface NodeFound {
  version: string;
  /** How it was found: the dpkg database, or the package's files (a root unpacked without dpkg). */
  source: string;
}

/**
 * The Node.js an image's root carries, decided from package metadata only, so that it works for
 * any architecture without running the image's node: the dpkg database's `nodejs` (or a package
 * that Provides it), else, in a root unpacked without dpkg, /usr/bin/node with the version at the
 * top of the package's changelog.
 */
export async function findNode(root: RootReader): Promise<NodeFound | undefined> {
  const status = parseStanzas((await readText(root, '/var/lib/dpkg/status')) ?? '');
  for (const s of status.filter(isInstalled)) {
    if (s.get('Package') === 'nodejs') return { version: s.get('Version') ?? '?', source: 'dpkg status: nodejs' };
  }
  for (const s of status.filter(isInstalled)) {
    const m = /(?:^|,)\s*nodejs\s*\(=\s*([^)\s]+)\s*\)/.exec(s.get('Provides') ?? '');
    if (m) return { version: m[1]!, source: `dpkg status: ${s.get('Package')} (Provides: nodejs)` };
  }
  const hasNode = (await root.read('/usr/bin/node')) !== undefined || (await root.readlink('/usr/bin/node')) !== undefined;
  if (!hasNode) return undefined;
  const changelog = await root.read('/usr/share/doc/nodejs/changelog.Debian.gz');
  if (!changelog) return { version: 'unknown', source: 'usr/bin/node (no package metadata)' };
  const first = gunzipSync(changelog).toString('utf8').split('\n')[0] ?? '';
  const m = /^nodejs \(([^)]+)\)/.exec(first);
  return { version: m?.[1] ?? 'unknown', source: 'usr/share/doc/nodejs/changelog.Debian.gz' };
}

/** The reason the root cannot run piota, or undefined when its Node.js is new enough. */
export function nodeProblem(found: NodeFound | undefined): string | undefined {
  const hint = `piota needs Node.js ${MIN_NODE_MAJOR} or newer in the image: add it with --install-deb (the nodejs package and its dependencies, for the image's architecture)`;
  if (!found) return `no Node.js in the image; ${hint}`;
  const major = majorOf(found.version);
  if (!(major >= MIN_NODE_MAJOR)) return `Node.js ${found.version} in the image (${found.source}) is older than ${MIN_NODE_MAJOR} or unknown; ${hint}`;
  return undefined;
}

export async function requireNode(root: RootReader): Promise<NodeFound> {
  const found = await findNode(root);
  const problem = nodeProblem(found);
  if (problem) throw new ImageError('refused', problem);
  return found!;
}
