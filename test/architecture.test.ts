// The core/telemetry boundary: src/ records through @opentelemetry/api only and receives a Meter;
// only telemetry/ touches the SDK and exporters, and nothing uses the global meter provider.

import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = new URL('..', import.meta.url).pathname;

function sources(dir: string): { file: string; text: string }[] {
  return readdirSync(join(ROOT, dir))
    .filter((f) => f.endsWith('.ts'))
    .map((f) => ({ file: `${dir}/${f}`, text: readFileSync(join(ROOT, dir, f), 'utf8') }));
}

function imports(text: string): string[] {
  return [...text.matchAll(/^\s*(?:import|export)\s[^'"]*?from\s+['"]([^'"]+)['"]/gm)].map((m) => m[1]!);
}

describe('architecture', () => {
  it('src/ imports only @opentelemetry/api, ws, node built-ins, its own modules (and acme-client in autocert.ts)', () => {
    for (const { file, text } of sources('src')) {
      for (const spec of imports(text)) {
        const allowed =
          spec === '@opentelemetry/api' ||
          spec === 'ws' ||
          spec.startsWith('node:') ||
          spec.startsWith('./') ||
          // The composition root wires telemetry into the core; nothing else may.
          (file === 'src/main.ts' && spec === '../telemetry/index.js') ||
          // The ACME client library, behind the autocert module only.
          (file === 'src/autocert.ts' && spec === 'acme-client');
        expect(allowed, `${file} imports ${spec}`).toBe(true);
      }
    }
  });

  it('nothing touches the global meter provider', () => {
    for (const { file, text } of [...sources('src'), ...sources('telemetry')]) {
      expect(text, file).not.toMatch(/setGlobalMeterProvider|metrics\.getMeter\(|metrics\.getMeterProvider\(/);
    }
  });
});
