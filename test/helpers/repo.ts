// The repository on disk, for tests that read its sources and docs rather than run them.

import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root, with a trailing slash. */
export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** Every `.ts` source under `dir` (relative to the repository root), recursively, as sorted
 * repository-relative paths such as `src/session/peer.ts`. */
export function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(REPO_ROOT, dir))) {
    const rel = `${dir}/${name}`;
    if (statSync(join(REPO_ROOT, rel)).isDirectory()) out.push(...sourceFiles(rel));
    else if (name.endsWith('.ts') && !name.endsWith('.d.ts')) out.push(rel);
  }
  return out.sort();
}
