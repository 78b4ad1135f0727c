// The shape of the code, held by its imports. The core/telemetry boundary: src/ records through
// @opentelemetry/api only and receives a Meter; only telemetry/ touches the SDK and exporters, and
// nothing uses the global meter provider. Inside src/, each folder is one concept and the arrows
// between them point one way (docs/architecture.md, "Folders and the rules between them").

import { readFileSync } from 'node:fs';
import { join, posix } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT, sourceFiles } from './helpers/repo.js';

interface Source {
  file: string;
  text: string;
}

const read = (dir: string): Source[] =>
  sourceFiles(dir).map((file) => ({ file, text: readFileSync(join(REPO_ROOT, file), 'utf8') }));
const SRC = read('src');
const TELEMETRY = read('telemetry');

/** Static import and re-export specifiers (type-only ones included: they still tie modules). */
function imports(text: string): string[] {
  return [...text.matchAll(/^\s*(?:import|export)\s[^'"]*?from\s+['"]([^'"]+)['"]/gm)].map((m) => m[1]!);
}

/** A relative specifier resolved to a repository path (`src/session/peer.ts`); other specifiers as they are. */
function target(file: string, spec: string): string {
  if (!spec.startsWith('.')) return spec;
  return posix.normalize(posix.join(posix.dirname(file), spec)).replace(/\.js$/, '.ts');
}

/** The folder of a src/ file: `protocol`, `session`, … or `` for the files at the top of src/. */
function folderOf(path: string): string {
  const parts = path.split('/');
  return parts.length > 2 && parts[0] === 'src' ? parts[1]! : '';
}

function edges(sources: Source[]): { from: string; to: string }[] {
  return sources.flatMap(({ file, text }) => imports(text).map((spec) => ({ from: file, to: target(file, spec) })));
}

describe('architecture', () => {
  it('src/ imports only @opentelemetry/api, ws, node built-ins, its own modules (and acme-client in src/tls/autocert.ts)', () => {
    for (const { from, to } of edges(SRC)) {
      const allowed =
        to === '@opentelemetry/api' ||
        to === 'ws' ||
        to.startsWith('node:') ||
        (to.startsWith('src/') && !to.includes('..')) ||
        // The composition root wires telemetry into the core; nothing else may.
        (from === 'src/main.ts' && to === 'telemetry/index.ts') ||
        // The ACME client library, behind the autocert module only.
        (from === 'src/tls/autocert.ts' && to === 'acme-client') ||
        // The NATS client, behind the cluster engine only (itself loaded only dynamically).
        (from === 'src/cluster/nats-engine.ts' && (to === '@nats-io/transport-node' || to === '@nats-io/kv'));
      expect(allowed, `${from} imports ${to}`).toBe(true);
    }
  });

  it('src/protocol/ (the wire format) imports nothing else of ours', () => {
    for (const { from, to } of edges(SRC.filter((s) => folderOf(s.file) === 'protocol'))) {
      expect(to.startsWith('node:') || to.startsWith('src/protocol/'), `${from} imports ${to}`).toBe(true);
    }
  });

  it('src/metrics/ imports only @opentelemetry/api, node built-ins and the close-code table', () => {
    for (const { from, to } of edges(SRC.filter((s) => folderOf(s.file) === 'metrics'))) {
      const allowed =
        to === '@opentelemetry/api' ||
        to.startsWith('node:') ||
        to.startsWith('src/metrics/') ||
        to === 'src/protocol/close-codes.ts';
      expect(allowed, `${from} imports ${to}`).toBe(true);
    }
  });

  it('the HTTP edge never imports sessions', () => {
    for (const { from, to } of edges(SRC.filter((s) => folderOf(s.file) === 'http'))) {
      expect(to.startsWith('src/session/'), `${from} imports ${to}`).toBe(false);
    }
  });

  it('only src/main.ts imports config, tls and telemetry (config may read feature types)', () => {
    for (const { from, to } of edges(SRC)) {
      const folder = folderOf(to);
      if (folder !== 'config' && folder !== 'tls' && !to.startsWith('telemetry/')) continue;
      const allowed = from === 'src/main.ts' || folderOf(from) === folder;
      expect(allowed, `${from} imports ${to}`).toBe(true);
    }
  });

  it('nothing outside src/cluster/nats-engine.ts imports the NATS client, and nothing at all does so statically from outside src/cluster/', () => {
    for (const { file, text } of [...SRC, ...TELEMETRY]) {
      const natsImports = [
        ...text.matchAll(/(?:from\s+|import\s*\(\s*|require\s*\(\s*)['"](@nats-io\/[^'"]+|nats)['"]/g),
      ];
      if (file === 'src/cluster/nats-engine.ts') continue;
      expect(
        natsImports.map((m) => m[1]),
        `${file} imports the NATS client`,
      ).toEqual([]);
    }
  });

  it('src/cluster/ is imported by nothing but src/cluster/ itself and a dynamic import() in src/main.ts', () => {
    for (const { from, to } of edges(SRC)) {
      if (folderOf(to) !== 'cluster') continue;
      expect(folderOf(from), `${from} statically imports ${to}`).toBe('cluster');
    }
    const dynamic = SRC.flatMap(({ file, text }) =>
      [...text.matchAll(/import\(\s*['"]([^'"]+)['"]\s*\)/g)].map((m) => ({ file, to: target(file, m[1]!) })),
    );
    const intoCluster = dynamic.filter((d) => folderOf(d.to) === 'cluster');
    expect(intoCluster).toEqual([{ file: 'src/main.ts', to: 'src/cluster/index.ts' }]);
  });

  it('there is no import circle in src/ (type-only imports count)', () => {
    const graph = new Map<string, string[]>();
    for (const { from, to } of edges(SRC)) if (to.startsWith('src/')) graph.set(from, [...(graph.get(from) ?? []), to]);
    const state = new Map<string, 'open' | 'done'>();
    const circles: string[] = [];
    const visit = (node: string, path: string[]): void => {
      if (state.get(node) === 'done') return;
      if (state.get(node) === 'open') {
        circles.push([...path.slice(path.indexOf(node)), node].join(' -> '));
        return;
      }
      state.set(node, 'open');
      for (const next of graph.get(node) ?? []) visit(next, [...path, node]);
      state.set(node, 'done');
    };
    for (const { file } of SRC) visit(file, []);
    expect(circles).toEqual([]);
  });

  it('telemetry/ reads from src/ only the logger type and the leaf HTTP limits file, which imports nothing', () => {
    for (const { from, to } of edges(TELEMETRY)) {
      if (!to.startsWith('src/')) continue;
      expect(['src/log.ts', 'src/http/limits.ts'].includes(to), `${from} imports ${to}`).toBe(true);
    }
    expect(edges(SRC.filter((s) => s.file === 'src/http/limits.ts'))).toEqual([]);
  });

  it('nothing touches the global meter provider', () => {
    for (const { file, text } of [...SRC, ...TELEMETRY]) {
      expect(text, file).not.toMatch(/setGlobalMeterProvider|metrics\.getMeter\(|metrics\.getMeterProvider\(/);
    }
  });
});
