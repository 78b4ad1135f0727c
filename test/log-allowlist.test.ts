// Log hygiene (docs/operations.md, "Keys"): every logged key is in the closed allowlist LOG_KEYS,
// and tokens, payloads, the User-Agent and push tokens never reach a log line.

import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import ts from 'typescript';
import { afterEach, describe, expect, it } from 'vitest';
import { REPO_ROOT } from './helpers/daemon.js';
import {
  connectBinary,
  connectPhone,
  phoneConnId,
  startRelay,
  TestClient,
  upgradeStatus,
  type TestRelay,
} from './helpers/relay.js';
import { sleep, waitFor } from './helpers/wait.js';
import { createLogger, LOG_KEYS, type LogFields } from '../src/log.js';

let relay: TestRelay | undefined;
afterEach(async () => {
  await relay?.close();
  relay = undefined;
});

// ---- (1) static scan ----

function tsFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...tsFiles(path));
    else if (name.endsWith('.ts') && !name.endsWith('.d.ts')) out.push(path);
  }
  return out;
}

interface Finding {
  where: string;
  key: string;
}

interface ScanResult {
  calls: number;
  keys: Finding[];
  /** Non-literal keys (spread, computed) and unresolvable field arguments. */
  problems: string[];
}

const LOG_METHODS = new Set(['info', 'warn', 'error']);

function isLoggerReceiver(expr: ts.Expression): boolean {
  if (ts.isIdentifier(expr)) return /^(log|logger)$/i.test(expr.text);
  if (ts.isPropertyAccessExpression(expr)) return /^(log|logger)$/i.test(expr.name.text);
  if (ts.isCallExpression(expr)) return ts.isIdentifier(expr.expression) && expr.expression.text === 'createLogger';
  return false;
}

function scanFile(path: string, result: ScanResult, text: string = readFileSync(path, 'utf8')): void {
  const sf = ts.createSourceFile(path, text, ts.ScriptTarget.ES2022, true, ts.ScriptKind.TS);
  const rel = relative(REPO_ROOT, path);
  const where = (node: ts.Node): string => `${rel}:${sf.getLineAndCharacterOfPosition(node.getStart(sf)).line + 1}`;

  // Object-literal initialisers of local consts, to resolve `log.info(event, fields)`.
  const literals = new Map<string, ts.ObjectLiteralExpression[]>();
  const collect = (node: ts.Node): void => {
    if (
      ts.isVariableDeclaration(node) &&
      ts.isIdentifier(node.name) &&
      node.initializer &&
      ts.isObjectLiteralExpression(node.initializer)
    ) {
      const list = literals.get(node.name.text) ?? [];
      list.push(node.initializer);
      literals.set(node.name.text, list);
    }
    ts.forEachChild(node, collect);
  };
  collect(sf);

  const checkObject = (obj: ts.ObjectLiteralExpression): void => {
    for (const prop of obj.properties) {
      if (ts.isShorthandPropertyAssignment(prop)) {
        result.keys.push({ where: where(prop), key: prop.name.text });
      } else if (ts.isPropertyAssignment(prop) && (ts.isIdentifier(prop.name) || ts.isStringLiteral(prop.name))) {
        result.keys.push({ where: where(prop), key: prop.name.text });
      } else {
        result.problems.push(`${where(prop)}: non-literal log key ${prop.getText(sf)}`);
      }
    }
  };

  const visit = (node: ts.Node): void => {
    if (ts.isCallExpression(node) && ts.isPropertyAccessExpression(node.expression)) {
      const method = node.expression.name.text;
      if (LOG_METHODS.has(method) && isLoggerReceiver(node.expression.expression)) {
        result.calls++;
        const fields = node.arguments[1];
        if (fields !== undefined) {
          if (ts.isObjectLiteralExpression(fields)) checkObject(fields);
          else if (ts.isIdentifier(fields) && literals.has(fields.text))
            literals.get(fields.text)!.forEach(checkObject);
          else if (ts.isPropertyAccessExpression(fields) && fields.name.text === 'fields') {
            // outcome.fields / refusal.fields: their literals are checked below (refuse(...), fields: {...}).
          } else result.problems.push(`${where(fields)}: log fields not statically checkable: ${fields.getText(sf)}`);
        }
      }
    }
    // Refusal field objects that reach log.error later: refuse(EVENT, {...}), new Refusal(EVENT, {...}), fields: {...}.
    if (ts.isCallExpression(node) && ts.isIdentifier(node.expression) && node.expression.text === 'refuse') {
      const fields = node.arguments[1];
      if (fields !== undefined && ts.isObjectLiteralExpression(fields)) checkObject(fields);
    }
    if (ts.isNewExpression(node) && ts.isIdentifier(node.expression) && node.expression.text === 'Refusal') {
      const fields = node.arguments?.[1];
      if (fields !== undefined && ts.isObjectLiteralExpression(fields)) checkObject(fields);
    }
    if (
      ts.isPropertyAssignment(node) &&
      ts.isIdentifier(node.name) &&
      node.name.text === 'fields' &&
      ts.isObjectLiteralExpression(node.initializer)
    ) {
      checkObject(node.initializer);
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
}

/** The keys of the allowlist in docs/operations.md, "Keys" (core, then boot/main). */
const SPEC_KEYS = [
  'server_id',
  'conn_id',
  'binary_conn_id',
  'device_name',
  'remote',
  'binary_version',
  'err',
  'path',
  'from',
  'to',
  'close_code',
  'token_fp',
  'fcm_message_id',
  'duration',
  'version',
  'mode',
  'listen',
  'domain',
  'cert_cache',
  'https_proxy_protocol',
  'env_var',
  'reason',
  'fix',
  'value',
  'effective_uid',
  'bypass_env_var',
  'unexpected_ports',
  'expected_ports',
  'addr',
];
const FORBIDDEN_KEYS = [
  'token',
  'user_agent',
  'useragent',
  'headers',
  'header',
  'payload',
  'frame',
  'envelope',
  'push_wake',
  'private_key',
  'access_token',
  'credentials',
  'body',
  'data',
  'message',
];

describe('log key allowlist: static', () => {
  it('every key of every logger call under src/ and telemetry/ is in LOG_KEYS', () => {
    const result: ScanResult = { calls: 0, keys: [], problems: [] };
    for (const dir of ['src', 'telemetry']) for (const file of tsFiles(join(REPO_ROOT, dir))) scanFile(file, result);
    // The scan must actually see the logger calls (guards against a vacuous pass).
    expect(result.calls).toBeGreaterThanOrEqual(30);
    expect(result.keys.length).toBeGreaterThanOrEqual(50);
    expect(result.problems).toEqual([]);
    const outside = result.keys.filter((k) => !LOG_KEYS.has(k.key)).map((k) => `${k.where}: ${k.key}`);
    expect(outside).toEqual([]);
  });

  it('the scanner itself flags unknown, spread and computed keys (no vacuous pass)', () => {
    const result: ScanResult = { calls: 0, keys: [], problems: [] };
    const source = [
      "log.info('a', { server_id: s, token: t });",
      "this.ctx.log.warn('b', { ...extra });",
      "deps.log.error('c', { [name]: v });",
      "const fields = { user_agent: ua }; logger.info('d', fields);",
      "createLogger('text').error('e', { reason });",
      "console.error('not a logger', { whatever: 1 });",
    ].join('\n');
    scanFile(join(REPO_ROOT, 'src', 'synthetic.ts'), result, source);
    expect(result.calls).toBe(5);
    expect(result.keys.map((k) => k.key)).toEqual(['server_id', 'token', 'user_agent', 'reason']);
    expect(result.problems).toHaveLength(2);
  });

  it('LOG_KEYS holds the spec keys and nothing that names a secret or payload', () => {
    for (const key of SPEC_KEYS) expect(LOG_KEYS.has(key), key).toBe(true);
    for (const key of FORBIDDEN_KEYS) expect(LOG_KEYS.has(key), key).toBe(false);
  });
});

// ---- (2) dynamic ----

const UA = 'UA-MARKER-Agent/9.9';
const MARKERS = ['SECRET-TOKEN-MARKER', 'PAYLOAD-MARKER', 'PUSH-TOKEN-MARKER', UA, 'CONFLICT-VERSION-MARKER'];
const ALLOWED_RECORD_KEYS = new Set(['time', 'level', 'msg', ...LOG_KEYS]);

describe('log hygiene: dynamic', () => {
  it('a mixed workload logs only allowlisted keys and never a token, payload, push token or User-Agent', async () => {
    const r = await startRelay({ trustXForwardedFor: true, rateLimitBurst: 3, probeTimeoutMs: 300 });
    relay = r;
    let ip = 0;
    const headers = (extra: Record<string, string> = {}): Record<string, string> => ({
      'User-Agent': UA,
      'X-Forwarded-For': `10.0.0.${++ip}`,
      ...extra,
    });
    const phoneExtra = (extra: Record<string, string> = {}): Record<string, string> =>
      headers({ 'X-Pyrycode-Token': 'SECRET-TOKEN-MARKER', 'X-Pyrycode-Device-Name': 'Pixel 9 (Alice)', ...extra });

    const binary = await connectBinary(r, 'srv-log', headers());
    const p1 = await connectPhone(r, 'srv-log', phoneExtra());
    const id1 = await phoneConnId(p1, binary);
    p1.send('{"secret":"PAYLOAD-MARKER"}');
    expect(await binary.message(2)).toBe(`{"conn_id":"${id1}","frame":{"secret":"PAYLOAD-MARKER"}}`);
    binary.send(`{"conn_id":"${id1}","frame":{"reply":"PAYLOAD-MARKER"}}`);
    expect(await p1.message(1)).toBe('{"reply":"PAYLOAD-MARKER"}');

    // Push wake (push is off): dropped, token never logged.
    binary.send('{"push_wake":{"platform":"fcm","token":"PUSH-TOKEN-MARKER"}}');
    binary.send('{"push_wake":"PUSH-TOKEN-MARKER"}');
    // Malformed envelopes carrying payload bytes.
    const malformed = [
      'PAYLOAD-MARKER not json',
      `{"conn_id":"${id1}","close_code":"PAYLOAD-MARKER","frame":{"x":"PAYLOAD-MARKER"}}`,
      '{"frame":"PAYLOAD-MARKER"}',
      '["PAYLOAD-MARKER"]',
      `{"conn_id":"${id1}","push_wake":"PAYLOAD-MARKER"}`,
      `{"conn_id":"${id1}","frame":{"x":"PAYLOAD-MARKER"}`,
    ];
    for (const m of malformed) binary.send(m);
    await waitFor(
      () => r.logs.filter((l) => l.msg === 'binary_forwarder_unmarshal_err').length === malformed.length,
      3_000,
      'unmarshal_err lines',
    );
    await waitFor(
      () => r.logs.filter((l) => l.msg === 'binary_forwarder_push_wake_dropped').length === 2,
      3_000,
      'push_wake_dropped lines',
    );

    // A phone sending invalid JSON with payload bytes.
    const p2 = await connectPhone(r, 'srv-log', phoneExtra());
    await phoneConnId(p2, binary);
    p2.send('{PAYLOAD-MARKER');
    expect((await p2.waitClose()).code).toBe(1000);

    // Header-gate 400 (no token): answered, but not logged at all.
    const before = r.logs.length;
    const gate = await upgradeStatus(r, '/v1/client', headers({ 'X-Pyrycode-Server': 'srv-log' }));
    expect(gate.status).toBe(400);
    await sleep(50);
    expect(r.logs.slice(before)).toEqual([]);

    // Rate-limited requests keyed by X-Forwarded-For (burst 3): the 4th gets 429 and is logged quoted.
    const limited = { 'User-Agent': UA, 'X-Forwarded-For': '198.51.100.7, 10.9.9.9', 'X-Pyrycode-Server': 'srv-log' };
    for (let i = 0; i < 3; i++) expect((await upgradeStatus(r, '/v1/client', limited)).status).toBe(400);
    expect((await upgradeStatus(r, '/v1/client', limited)).status).toBe(429);
    await waitFor(() => r.logs.find((l) => l.msg === 'rate_limited'), 3_000, 'rate_limited');
    expect(r.logs.find((l) => l.msg === 'rate_limited')).toMatchObject({ level: 'WARN', remote: '"198.51.100.7"' });

    // A phone for an unknown server-id (4404) and a conflicting binary (4409).
    const orphan = new TestClient(`${r.wsUrl}/v1/client`, { 'X-Pyrycode-Server': 'srv-none', ...phoneExtra() });
    expect((await orphan.waitClose()).code).toBe(4404);
    const rival = new TestClient(`${r.wsUrl}/v1/server`, {
      'X-Pyrycode-Server': 'srv-log',
      'X-Pyrycode-Version': 'CONFLICT-VERSION-MARKER',
      ...headers(),
    });
    expect(await rival.waitClose()).toEqual({ code: 4409, reason: 'server-id already claimed' });

    // Close directive with a payload-bearing final frame; a phone that leaves on its own.
    const p3 = await connectPhone(r, 'srv-log', phoneExtra());
    const id3 = await phoneConnId(p3, binary);
    binary.send(`{"conn_id":"${id1}","close_code":4401,"frame":{"bye":"PAYLOAD-MARKER"}}`);
    expect((await p1.waitClose()).code).toBe(4401);
    p3.close(1000);
    await waitFor(() => binary.messages.includes(`{"conn_id":"${id3}","close_code":1000}`), 3_000, 'close notice');

    // Drain, so shutdown/teardown lines are covered too.
    await r.close();

    const seen = new Set(r.logs.map((l) => l.msg));
    for (const event of [
      'server_claimed',
      'phone_registered',
      'binary_forwarder_push_wake_dropped',
      'binary_forwarder_unmarshal_err',
      'phone_forwarder_marshal_err',
      'rate_limited',
      'phone_register_no_server',
      'server_id_conflict',
      'binary_forwarder_phone_closed',
      'phone_unregistered',
      'server_released',
    ])
      expect(seen.has(event), event).toBe(true);
    expect(r.logs.find((l) => l.msg === 'phone_registered')).toMatchObject({ device_name: 'Pixel 9 (Alice)' });

    const badKeys = r.logs.flatMap((l) =>
      Object.keys(l)
        .filter((k) => !ALLOWED_RECORD_KEYS.has(k))
        .map((k) => `${l.msg}: ${k}`),
    );
    expect(badKeys).toEqual([]);
    const text = r.logText();
    for (const marker of MARKERS) expect(text.includes(marker), `log text contains ${marker}`).toBe(false);
  });
});

// ---- text-format escaping (unit) ----

describe('text log format escapes control characters', () => {
  it('a device name with newlines and control characters stays on one line', () => {
    const lines: string[] = [];
    const log = createLogger('text', { write: (line: string) => lines.push(line) });
    const hostile = 'Pixel\nlevel=ERROR msg=forged\r\tx\u0000\u001b[31mend" key=v';
    log.info('phone_registered', {
      server_id: 'srv\nid',
      conn_id: 'client-x',
      device_name: hostile,
      remote: '127.0.0.1',
    });
    expect(lines).toHaveLength(1);
    const line = lines[0]!;
    expect(line.endsWith('\n')).toBe(true);
    const body = line.slice(0, -1);
    expect(body).not.toContain('\n');
    expect(body).not.toContain('\r');
    // biome-ignore lint/suspicious/noControlCharactersInRegex: asserts no control character reached the log
    expect(body).not.toMatch(/[\u0000-\u001f]/);
    expect(body).toMatch(
      /^time=\S+ level=INFO msg=phone_registered server_id="srv\\nid" conn_id=client-x device_name="/,
    );
    expect(body).toContain('device_name="Pixel\\nlevel=ERROR msg=forged\\r\\tx\\u0000\\u001b[31m');
    expect(body).toContain('end\\" key=v" remote=127.0.0.1');
    // Exactly one msg= and one level= (nothing forged).
    expect(body.match(/ level=/g)).toHaveLength(1);
  });

  it('DEL, C1 controls and U+2028/U+2029 are escaped too (Go strconv.Quote escapes every non-printable rune)', () => {
    const lines: string[] = [];
    const log = createLogger('text', { write: (line: string) => lines.push(line) });
    log.info('phone_registered', { device_name: 'a\u007fb\u0085c\u009b31md\u2028e\u2029f' });
    const body = lines[0]!.slice(0, -1);
    const raw = [...body]
      .filter((ch) => /[\u007f-\u009f\u2028\u2029]/.test(ch))
      .map((ch) => `U+${ch.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}`);
    expect(raw, 'non-printable characters left raw in a text log line').toEqual([]);
  });

  it('keys outside the allowlist are dropped at run time', () => {
    const lines: string[] = [];
    const log = createLogger('text', { write: (line: string) => lines.push(line) });
    log.warn('x', { server_id: 's', token: 'SECRET-TOKEN-MARKER', user_agent: 'UA' } as unknown as LogFields);
    expect(lines[0]).toMatch(/^time=\S+ level=WARN msg=x server_id=s\n$/);
    const json: string[] = [];
    createLogger('json', { write: (line: string) => json.push(line) }).warn('x', {
      server_id: 's',
      token: 'SECRET',
    } as unknown as LogFields);
    expect(Object.keys(JSON.parse(json[0]!) as object)).toEqual(['time', 'level', 'msg', 'server_id']);
  });
});
