// The bundle concern's public surface: the daemon, the demo and the CLI import from here.
export { BundleError, type BundleErrorCode } from './errors.js';
export { generateKeyPair, keyIdOf, loadPrivateKey, loadPublicKey, type GeneratedKeyPair } from './keys.js';
export { createBundle, type CreateBundleOptions, type CreatedBundle } from './create.js';
export { signBundle, type SignedBundle } from './sign.js';
export { readBundleFileHeader, type BundleFileHeader } from './inspect.js';
export {
  verifyHeader,
  readVerifiedHeader,
  verifyChunks,
  type DeviceTrust,
  type VerifiedChunk,
  type VerifiedHeader,
  type VerifyPolicy,
} from './verifier.js';
export type { BundleManifest, ChunkInfo, Compression, PayloadInfo } from './manifest.js';
export { DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE, MAX_MANIFEST_LENGTH, MIN_CHUNK_SIZE } from './format.js';
export { verifyBundleFile } from './verify-file.js';
