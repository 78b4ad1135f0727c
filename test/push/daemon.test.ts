// Push wakes through the built daemon (`node dist/src/main.js`): PYRYCODE_RELAY_FCM_CREDENTIALS with
// a generated RSA key, the endpoint env vars pointing at fake Google servers on loopback, a real
// binary waking a token; the boot refusals of the endpoint env vars; push off without credentials;
// and the shutdown order (drain, then the waker cancels what is in flight).

import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CANCELLED_TEXT } from '../../src/push/fcm.js';
import { tokenFingerprint } from '../../src/push/waker.js';
import { cleanEnv, runDaemon, type RunningDaemon, withDaemon } from '../helpers/daemon.js';
import { httpGet } from '../helpers/http.js';
import { binaryHeaders, TestClient } from '../helpers/relays.js';
import { sampleValue } from '../helpers/scrape.js';
import {
  ACCESS_TOKEN,
  type FakeGoogle,
  FCM_FREE_TEXT,
  MESSAGE_NAME,
  startFakeGoogle,
  testKey,
  verifyAssertion,
} from '../helpers/fake-fcm.js';
import { waitFor } from '../helpers/wait.js';

const DEVICE_TOKEN = 'DEVICE-TOKEN-MARKER-daemon:APA91b';
const OUTCOMES = ['dropped', 'send_failed', 'sent', 'token_fetch_failed', 'unregistered'];

let g: FakeGoogle;
const clients: TestClient[] = [];

beforeEach(async () => {
  g = await startFakeGoogle();
});
afterEach(async () => {
  for (const c of clients.splice(0)) c.ws.terminate();
  await g.close();
});

interface Line {
  level: string;
  msg: string;
  [key: string]: unknown;
}

function jsonLines(stderr: string): Line[] {
  return stderr
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as Line);
}

function expectNoSecrets(stderr: string): void {
  for (const s of [DEVICE_TOKEN, 'DEVICE-TOKEN-MARKER', ACCESS_TOKEN, FCM_FREE_TEXT, ...g.key.pemBodyLines]) {
    expect(stderr.includes(s), `daemon stderr contains ${s.slice(0, 24)}`).toBe(false);
  }
}

const daemons = withDaemon();

/** The daemon with push configured by `env`, JSON logs, serving /healthz. */
function startPushDaemon(env: Record<string, string>): Promise<RunningDaemon> {
  return daemons.start(['--shutdown-timeout', '2s', '--log-format', 'json'], { env });
}

async function wakeFrom(port: number, serverId: string): Promise<TestClient> {
  const binary = new TestClient(`ws://127.0.0.1:${port}/v1/server`, binaryHeaders(serverId));
  clients.push(binary);
  await binary.open();
  // The claim completes right after the open; a wake before it would be read after it anyway.
  binary.send(JSON.stringify({ push_wake: { platform: 'fcm', token: DEVICE_TOKEN } }));
  return binary;
}

describe('daemon with push on', () => {
  it('wakes through FCM with the key from PYRYCODE_RELAY_FCM_CREDENTIALS and counts it', async () => {
    const { d, port, metricsPort } = await startPushDaemon({
      PYRYCODE_RELAY_FCM_CREDENTIALS: g.key.json, // token_uri = the fake token server
      PYRYCODE_RELAY_FCM_ENDPOINT: g.fcm.url,
    });
    try {
      // Boot: push on, all five cells at 0, placed in the reference's sorted order.
      let scrape = (await httpGet(`http://127.0.0.1:${metricsPort}/metrics`)).body;
      for (const o of OUTCOMES) expect(sampleValue(scrape, `pyrycode_relay_push_wakes_total{outcome="${o}"}`)).toBe(0);
      const at = (name: string): number => scrape.indexOf(`# HELP ${name} `);
      expect(at('pyrycode_relay_grace_expiries_total')).toBeLessThan(at('pyrycode_relay_push_wakes_total'));
      expect(at('pyrycode_relay_push_wakes_total')).toBeLessThan(at('pyrycode_relay_register_failures_total'));
      expect(d.stderr()).not.toContain('push off');

      await wakeFrom(port, 'srv-daemon-push');
      await d.waitStderr('"msg":"push_wake_sent"', 10_000);

      expect(g.sends()).toHaveLength(1);
      expect(g.sends()[0]!.body).toBe(`{"message":{"token":"${DEVICE_TOKEN}","android":{"priority":"HIGH"}}}`);
      expect(g.sends()[0]!.headers['authorization']).toBe(`Bearer ${ACCESS_TOKEN}`);
      expect(g.token.requests).toHaveLength(1);
      expect(g.tokenForms()[0]!.get('grant_type')).toBe('urn:ietf:params:oauth:grant-type:jwt-bearer');
      const jwt = verifyAssertion(g.tokenForms()[0]!.get('assertion')!, g.key.publicKeyPem);
      expect(jwt.signatureValid).toBe(true);
      expect(jwt.header['alg']).toBe('RS256');
      expect(jwt.claims).toMatchObject({
        iss: g.key.credentials.clientEmail,
        scope: 'https://www.googleapis.com/auth/firebase.messaging',
        aud: g.tokenUrl,
      });

      const sent = jsonLines(d.stderr()).find((l) => l.msg === 'push_wake_sent');
      expect(sent).toMatchObject({
        level: 'INFO',
        server_id: 'srv-daemon-push',
        token_fp: tokenFingerprint(DEVICE_TOKEN),
        fcm_message_id: MESSAGE_NAME,
      });
      scrape = (await httpGet(`http://127.0.0.1:${metricsPort}/metrics`)).body;
      expect(sampleValue(scrape, 'pyrycode_relay_push_wakes_total{outcome="sent"}')).toBe(1);
      for (const o of OUTCOMES.filter((x) => x !== 'sent')) {
        expect(sampleValue(scrape, `pyrycode_relay_push_wakes_total{outcome="${o}"}`)).toBe(0);
      }

      d.child.kill('SIGTERM');
      expect(await d.waitExit(10_000)).toEqual({ code: 0, signal: null });
      expectNoSecrets(d.stderr());
    } finally {
      await d.stop();
    }
  });

  it('SIGTERM: the drain completes, then the stalled send is cancelled (send_failed, one line) and the daemon exits 0', async () => {
    // The key names Google's token endpoint; PYRYCODE_RELAY_FCM_TOKEN_URL sends the request to the
    // fake instead, and the JWT audience stays the key's token_uri.
    const key = testKey('https://oauth2.googleapis.com/token');
    g.fcm.handler = (_r, res) => g.fcm.stall(res);
    const { d, port } = await startPushDaemon({
      PYRYCODE_RELAY_FCM_CREDENTIALS: key.json,
      PYRYCODE_RELAY_FCM_ENDPOINT: `${g.fcm.url}/`,
      PYRYCODE_RELAY_FCM_TOKEN_URL: g.tokenUrl,
    });
    try {
      await wakeFrom(port, 'srv-daemon-shut');
      await waitFor(() => g.fcm.stalled.length === 1, 10_000, 'the send to stall at FCM');
      const jwt = verifyAssertion(g.tokenForms()[0]!.get('assertion')!, key.publicKeyPem);
      expect(jwt.signatureValid).toBe(true);
      expect(jwt.claims['aud']).toBe('https://oauth2.googleapis.com/token');

      d.child.kill('SIGTERM');
      expect(await d.waitExit(10_000)).toEqual({ code: 0, signal: null });
      const log = jsonLines(d.stderr());
      const msgs = log.map((l) => l.msg);
      const failed = log.filter((l) => l.msg === 'push_wake_send_failed');
      expect(failed).toHaveLength(1);
      expect(failed[0]).toMatchObject({
        level: 'WARN',
        server_id: 'srv-daemon-shut',
        token_fp: tokenFingerprint(DEVICE_TOKEN),
        err: CANCELLED_TEXT,
      });
      expect(msgs.indexOf('shutdown complete')).toBeGreaterThan(-1);
      expect(msgs.indexOf('push_wake_send_failed')).toBeGreaterThan(msgs.indexOf('shutdown complete'));
      expect(msgs).not.toContain('push_wake_sent');
      expectNoSecrets(d.stderr());
    } finally {
      await d.stop();
    }
  });
});

describe('daemon with push off', () => {
  it('credentials unset: "push off" is logged, the family is absent, wakes are refused', async () => {
    const { d, port, metricsPort } = await startPushDaemon({ PYRYCODE_RELAY_FCM_ENDPOINT: g.fcm.url });
    try {
      expect(
        jsonLines(d.stderr()).find((l) => l.msg === 'push off: PYRYCODE_RELAY_FCM_CREDENTIALS unset'),
      ).toMatchObject({
        level: 'INFO',
      });
      expect((await httpGet(`http://127.0.0.1:${metricsPort}/metrics`)).body).not.toContain('push_wakes');
      await wakeFrom(port, 'srv-daemon-off');
      await d.waitStderr('"msg":"binary_forwarder_push_wake_dropped"', 10_000);
      expect(jsonLines(d.stderr()).find((l) => l.msg === 'binary_forwarder_push_wake_dropped')).toMatchObject({
        server_id: 'srv-daemon-off',
        err: 'push off',
      });
      expect(g.token.requests).toHaveLength(0);
      expect(g.fcm.requests).toHaveLength(0);
      d.child.kill('SIGTERM');
      expect(await d.waitExit(10_000)).toEqual({ code: 0, signal: null });
      expectNoSecrets(d.stderr());
    } finally {
      await d.stop();
    }
  });
});

describe('endpoint env vars at boot', () => {
  const WITHHELD = 'not an absolute http:// or https:// URL without user info, query or fragment (value withheld)';

  it.each<[string, string, string]>([
    ['PYRYCODE_RELAY_FCM_ENDPOINT', 'not a url', 'not a url'],
    ['PYRYCODE_RELAY_FCM_ENDPOINT', 'ftp://fcm.example', 'fcm.example'],
    ['PYRYCODE_RELAY_FCM_ENDPOINT', 'https://user:SECRET-MARKER@fcm.example', 'SECRET-MARKER'],
    ['PYRYCODE_RELAY_FCM_ENDPOINT', 'https://fcm.example/?key=SECRET-MARKER', 'SECRET-MARKER'],
    ['PYRYCODE_RELAY_FCM_ENDPOINT', '', '"value":""'],
    ['PYRYCODE_RELAY_FCM_TOKEN_URL', '/token', '/token'],
    ['PYRYCODE_RELAY_FCM_TOKEN_URL', 'https://oauth.example/token#SECRET-MARKER', 'SECRET-MARKER'],
  ])('%s=%j -> exit 2, value withheld', async (envVar, value, mustNotContain) => {
    const res = await runDaemon(
      ['--insecure-listen', '127.0.0.1:1', '--log-format', 'json'],
      cleanEnv({ PYRYCODE_RELAY_FCM_CREDENTIALS: g.key.json, [envVar]: value }),
    );
    expect(res.code).toBe(2);
    const log = jsonLines(res.stderr);
    expect(log).toHaveLength(1);
    expect(log[0]).toEqual({
      time: expect.any(String),
      level: 'ERROR',
      msg: 'refusing to start: invalid env-var config',
      env_var: envVar,
      reason: WITHHELD,
    });
    expect(res.stderr).not.toContain(mustNotContain);
    expectNoSecrets(res.stderr);
  });

  it('an invalid endpoint is refused even with push off', async () => {
    const res = await runDaemon(
      ['--insecure-listen', '127.0.0.1:1'],
      cleanEnv({ PYRYCODE_RELAY_FCM_ENDPOINT: 'nope' }),
    );
    expect(res.code).toBe(2);
    expect(res.stderr).toContain('env_var=PYRYCODE_RELAY_FCM_ENDPOINT');
  });

  it('a key whose token_uri is not an http(s) URL (and no override) -> exit 2 on the credentials var', async () => {
    const key = testKey('file:///etc/SECRET-MARKER');
    const res = await runDaemon(
      ['--insecure-listen', '127.0.0.1:1', '--log-format', 'json'],
      cleanEnv({ PYRYCODE_RELAY_FCM_CREDENTIALS: key.json }),
    );
    expect(res.code).toBe(2);
    expect(jsonLines(res.stderr)[0]).toMatchObject({
      msg: 'refusing to start: invalid env-var config',
      env_var: 'PYRYCODE_RELAY_FCM_CREDENTIALS',
    });
    expect(res.stderr).not.toContain('SECRET-MARKER');
    expectNoSecrets(res.stderr);
  });

  it('--help lists both env vars', async () => {
    const res = await runDaemon(['--help']);
    expect(res.code).toBe(0);
    expect(res.stdout).toContain('PYRYCODE_RELAY_FCM_ENDPOINT');
    expect(res.stdout).toContain('PYRYCODE_RELAY_FCM_TOKEN_URL');
  });
});
