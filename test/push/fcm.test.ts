// The FCM client (src/push/fcm.ts) against a fake OAuth2 token server and a fake FCM server on loopback:
// the JWT flow, the exact send, token caching, error classification and rendering, timeouts,
// redirects, the 4 KiB reply cap and cancellation. No error text may carry a secret.

import type { ServerResponse } from 'node:http';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  CANCELLED_TEXT,
  FCM_HTTP_TIMEOUT_MS,
  FCM_MAX_REPLY_BYTES,
  FcmCancelledError,
  FcmSendFailedError,
  FcmSender,
  FcmTokenFetchError,
  FcmUnregisteredError,
  TOKEN_REFRESH_MARGIN_MS,
  type FcmOptions,
} from '../../src/push/fcm.js';
import {
  ACCESS_TOKEN,
  type FakeGoogle,
  FakeServer,
  FCM_FREE_TEXT,
  fcmErrorBody,
  json,
  MESSAGE_NAME,
  okToken,
  type RecordedRequest,
  SEND_PATH,
  startFakeGoogle,
  verifyAssertion,
} from '../helpers/fake-fcm.js';
import { freePort } from '../helpers/ports.js';
import { sleep, waitFor } from '../helpers/wait.js';

const DEVICE_TOKEN = 'DEVICE-TOKEN-MARKER:APA91bH-x_y';

let g: FakeGoogle;
let sender: FcmSender | undefined;
let extra: FakeServer[] = [];

beforeEach(async () => {
  g = await startFakeGoogle();
});
afterEach(async () => {
  sender?.close();
  sender = undefined;
  await Promise.all([g.close(), ...extra.map((s) => s.close())]);
  extra = [];
});

function makeSender(over: Partial<FcmOptions> = {}): FcmSender {
  sender = new FcmSender({ credentials: g.key.credentials, endpoint: g.fcm.url, tokenUrl: g.tokenUrl, ...over });
  return sender;
}

const live = (): AbortSignal => new AbortController().signal;

/** The rejection of `p` (fails if it resolves). */
async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected a rejection');
}

/** No secret in an error message. */
function expectClean(err: Error): void {
  for (const secret of [DEVICE_TOKEN, ACCESS_TOKEN, FCM_FREE_TEXT, 'FCM-FREE-TEXT-MARKER', ...g.key.pemBodyLines]) {
    expect(err.message.includes(secret), `error text contains ${secret.slice(0, 20)}`).toBe(false);
  }
}

describe('OAuth2 service-account flow', () => {
  it('posts a form with an RS256 JWT assertion signed by the key, then sends with the access token', async () => {
    const s = makeSender();
    const before = Math.floor(Date.now() / 1000);
    expect(await s.send(DEVICE_TOKEN, live())).toBe(MESSAGE_NAME);
    const after = Math.floor(Date.now() / 1000);

    expect(g.token.requests).toHaveLength(1);
    const req = g.token.requests[0]!;
    expect(req.method).toBe('POST');
    expect(req.path).toBe('/token');
    expect(req.headers['content-type']).toBe('application/x-www-form-urlencoded');
    const form = new URLSearchParams(req.body);
    expect([...form.keys()].sort()).toEqual(['assertion', 'grant_type']);
    expect(form.get('grant_type')).toBe('urn:ietf:params:oauth:grant-type:jwt-bearer');
    const jwt = verifyAssertion(form.get('assertion')!, g.key.publicKeyPem);
    expect(jwt.signatureValid).toBe(true);
    expect(jwt.header).toEqual({ alg: 'RS256', typ: 'JWT' });
    expect(jwt.claims).toMatchObject({
      iss: g.key.credentials.clientEmail,
      scope: 'https://www.googleapis.com/auth/firebase.messaging',
      aud: g.tokenUrl,
    });
    const { iat, exp } = jwt.claims as { iat: number; exp: number };
    expect(exp - iat).toBe(3600);
    expect(iat).toBeGreaterThanOrEqual(before - 60);
    expect(iat).toBeLessThanOrEqual(after);

    expect(g.sends()).toHaveLength(1);
    const send = g.sends()[0]!;
    expect(send.method).toBe('POST');
    expect(send.headers['authorization']).toBe(`Bearer ${ACCESS_TOKEN}`);
    expect(send.headers['content-type']).toMatch(/^application\/json/);
    expect(send.body).toBe(`{"message":{"token":"${DEVICE_TOKEN}","android":{"priority":"HIGH"}}}`);
  });

  it("a token URL override receives the request; the JWT audience stays the key's token_uri", async () => {
    const proxy = await FakeServer.start(okToken());
    extra.push(proxy);
    const s = makeSender({ tokenUrl: `${proxy.url}/oauth/proxy` });
    await s.send(DEVICE_TOKEN, live());
    expect(g.token.requests).toHaveLength(0);
    expect(proxy.requests.map((r) => r.path)).toEqual(['/oauth/proxy']);
    const jwt = verifyAssertion(new URLSearchParams(proxy.requests[0]!.body).get('assertion')!, g.key.publicKeyPem);
    expect(jwt.claims['aud']).toBe(g.tokenUrl);
  });

  it('an endpoint with a path prefix and a trailing slash keeps the prefix', async () => {
    const s = makeSender({ endpoint: `${g.fcm.url}/prefix/` });
    g.fcm.handler = (_req, res) => json(res, 200, { name: 'n1' });
    expect(await s.send(DEVICE_TOKEN, live())).toBe('n1');
    expect(g.fcm.requests.map((r) => r.path)).toEqual([`/prefix${SEND_PATH}`]);
  });

  it('the device token is JSON-encoded in the body (no injection)', async () => {
    const s = makeSender();
    const hostile = 'a"},"notification":{"title":"x\\\u2028\u0001';
    await s.send(hostile, live());
    const body = JSON.parse(g.sends()[0]!.body) as unknown;
    expect(body).toEqual({ message: { token: hostile, android: { priority: 'HIGH' } } });
  });

  it('caches the access token across sends and shares one fetch between concurrent sends', async () => {
    const s = makeSender();
    for (let i = 0; i < 3; i++) await s.send(DEVICE_TOKEN, live());
    expect(g.token.requests).toHaveLength(1);
    const s2 = makeSender();
    g.token.requests.length = 0;
    await Promise.all(Array.from({ length: 5 }, () => s2.send(DEVICE_TOKEN, live())));
    expect(g.token.requests).toHaveLength(1);
    expect(g.sends()).toHaveLength(8);
    s.close();
  });

  it('refreshes the token 60 s before it expires', async () => {
    let now = 1_700_000_000_000;
    const s = makeSender({ now: () => now });
    await s.send(DEVICE_TOKEN, live());
    now += 3599_000 - TOKEN_REFRESH_MARGIN_MS - 1;
    await s.send(DEVICE_TOKEN, live());
    expect(g.token.requests).toHaveLength(1);
    now += 1;
    await s.send(DEVICE_TOKEN, live());
    expect(g.token.requests).toHaveLength(2);
  });

  it('refreshes with a real clock when expires_in is short (61 s -> cached for 1 s)', async () => {
    g.token.handler = okToken(61);
    const s = makeSender();
    await s.send(DEVICE_TOKEN, live());
    await s.send(DEVICE_TOKEN, live());
    expect(g.token.requests).toHaveLength(1);
    await sleep(1_100);
    await s.send(DEVICE_TOKEN, live());
    expect(g.token.requests).toHaveLength(2);
  });

  it('expires_in as a numeric string is honoured; without expires_in nothing is cached', async () => {
    g.token.handler = (_r, res) => json(res, 200, { access_token: ACCESS_TOKEN, expires_in: '3599' });
    const s = makeSender();
    await s.send(DEVICE_TOKEN, live());
    await s.send(DEVICE_TOKEN, live());
    expect(g.token.requests).toHaveLength(1);
    g.token.handler = (_r, res) => json(res, 200, { access_token: ACCESS_TOKEN });
    const s2 = makeSender();
    await s2.send(DEVICE_TOKEN, live());
    await s2.send(DEVICE_TOKEN, live());
    expect(g.token.requests).toHaveLength(3);
    s.close();
  });

  it('a failed fetch is not cached: the next send fetches again', async () => {
    g.token.handler = (_r, res) => json(res, 503, { error: 'unavailable' });
    const s = makeSender();
    expect(await rejection(s.send(DEVICE_TOKEN, live()))).toBeInstanceOf(FcmTokenFetchError);
    g.reset();
    expect(await s.send(DEVICE_TOKEN, live())).toBe(MESSAGE_NAME);
    expect(g.token.requests).toHaveLength(2);
  });

  it('FCM answering 401 drops the cached token; the next send fetches a new one', async () => {
    const s = makeSender();
    await s.send(DEVICE_TOKEN, live());
    g.fcm.handler = (_r, res) => json(res, 401, fcmErrorBody(401, 'UNAUTHENTICATED', 'THIRD_PARTY_AUTH_ERROR'));
    const err = await rejection(s.send(DEVICE_TOKEN, live()));
    expect(err).toBeInstanceOf(FcmSendFailedError);
    expect(err.message).toBe('relay: fcm send failed: status 401 (UNAUTHENTICATED, THIRD_PARTY_AUTH_ERROR)');
    g.reset();
    await s.send(DEVICE_TOKEN, live());
    expect(g.token.requests).toHaveLength(2);
  });
});

describe('token fetch failures are FcmTokenFetchError, with the status only', () => {
  it.each<[string, (req: RecordedRequest, res: ServerResponse) => void, string]>([
    [
      '401',
      (_r, res) => json(res, 401, { error: 'invalid_grant', error_description: FCM_FREE_TEXT }),
      'relay: fcm token fetch failed: status 401',
    ],
    ['500', (_r, res) => json(res, 500, 'oops'), 'relay: fcm token fetch failed: status 500'],
    [
      'no access_token',
      (_r, res) => json(res, 200, { token_type: 'Bearer', expires_in: 3599 }),
      'relay: fcm token fetch failed: malformed reply',
    ],
    [
      'not JSON',
      (_r, res) => json(res, 200, `<html>${FCM_FREE_TEXT}</html>`),
      'relay: fcm token fetch failed: malformed reply',
    ],
    [
      'token with a newline',
      (_r, res) => json(res, 200, { access_token: `${ACCESS_TOKEN}\nX: y`, expires_in: 3599 }),
      'relay: fcm token fetch failed: malformed reply',
    ],
    [
      'reply over 4 KiB',
      (_r, res) => json(res, 200, { access_token: ACCESS_TOKEN, expires_in: 3599, pad: 'x'.repeat(5000) }),
      'relay: fcm token fetch failed: malformed reply',
    ],
  ])('%s', async (_name, handler, text) => {
    g.token.handler = handler;
    const s = makeSender();
    const err = await rejection(s.send(DEVICE_TOKEN, live()));
    expect(err).toBeInstanceOf(FcmTokenFetchError);
    expect(err.message).toBe(text);
    expectClean(err);
    expect(g.fcm.requests).toHaveLength(0);
  });

  it('token endpoint refusing connections: transport error with the code only', async () => {
    const port = await freePort();
    const s = makeSender({ tokenUrl: `http://127.0.0.1:${port}/token` });
    const err = await rejection(s.send(DEVICE_TOKEN, live()));
    expect(err).toBeInstanceOf(FcmTokenFetchError);
    expect(err.message).toBe('relay: fcm token fetch failed: transport error (ECONNREFUSED)');
  });
});

describe('FCM replies', () => {
  it.each<[string, unknown, string]>([
    ['a valid name', { name: MESSAGE_NAME }, MESSAGE_NAME],
    ['no name', {}, ''],
    ['a name with free text', { name: `projects/x/messages/${FCM_FREE_TEXT}` }, ''],
    ['a name of 257 chars', { name: 'a'.repeat(257) }, ''],
    ['a name of 256 chars', { name: 'a'.repeat(256) }, 'a'.repeat(256)],
    ['a non-string name', { name: 42 }, ''],
    ['not JSON', 'ok', ''],
  ])('success with %s', async (_name, body, expected) => {
    g.fcm.handler = (_r, res) => json(res, 200, body);
    expect(await makeSender().send(DEVICE_TOKEN, live())).toBe(expected);
  });

  it.each<[string, number, unknown, string, typeof FcmSendFailedError | typeof FcmUnregisteredError]>([
    [
      'UNREGISTERED',
      404,
      fcmErrorBody(404, 'NOT_FOUND', 'UNREGISTERED'),
      'relay: fcm send failed: status 404 (NOT_FOUND, UNREGISTERED)',
      FcmUnregisteredError,
    ],
    [
      'UNREGISTERED under another status',
      400,
      fcmErrorBody(400, 'INVALID_ARGUMENT', 'UNREGISTERED'),
      'relay: fcm send failed: status 400 (INVALID_ARGUMENT, UNREGISTERED)',
      FcmUnregisteredError,
    ],
    [
      'INVALID_ARGUMENT',
      400,
      fcmErrorBody(400, 'INVALID_ARGUMENT', 'INVALID_ARGUMENT'),
      'relay: fcm send failed: status 400 (INVALID_ARGUMENT, INVALID_ARGUMENT)',
      FcmSendFailedError,
    ],
    [
      'INTERNAL without details',
      500,
      fcmErrorBody(500, 'INTERNAL'),
      'relay: fcm send failed: status 500 (INTERNAL)',
      FcmSendFailedError,
    ],
    [
      'QUOTA_EXCEEDED',
      429,
      fcmErrorBody(429, 'RESOURCE_EXHAUSTED', 'QUOTA_EXCEEDED'),
      'relay: fcm send failed: status 429 (RESOURCE_EXHAUSTED, QUOTA_EXCEEDED)',
      FcmSendFailedError,
    ],
    [
      'a non-enum status and errorCode',
      404,
      {
        error: {
          status: 'Not Found!',
          message: FCM_FREE_TEXT,
          details: [{ '@type': 'type.googleapis.com/google.firebase.fcm.v1.FcmError', errorCode: 'unregistered' }],
        },
      },
      'relay: fcm send failed: status 404',
      FcmSendFailedError,
    ],
    [
      'an errorCode in a detail of another type',
      404,
      {
        error: {
          status: 'NOT_FOUND',
          details: [{ '@type': 'type.googleapis.com/google.rpc.BadRequest', errorCode: 'UNREGISTERED' }],
        },
      },
      'relay: fcm send failed: status 404 (NOT_FOUND)',
      FcmSendFailedError,
    ],
    [
      'an over-long enum',
      500,
      fcmErrorBody(500, 'A'.repeat(65)),
      'relay: fcm send failed: status 500',
      FcmSendFailedError,
    ],
    [
      'not JSON',
      503,
      `Service Unavailable: ${FCM_FREE_TEXT}`,
      'relay: fcm send failed: status 503',
      FcmSendFailedError,
    ],
  ])('error: %s', async (_name, status, body, text, kind) => {
    g.fcm.handler = (_r, res) => json(res, status, body);
    const err = await rejection(makeSender().send(DEVICE_TOKEN, live()));
    expect(err).toBeInstanceOf(kind);
    expect(err.message).toBe(text);
    expectClean(err);
  });
});

describe('timeouts (10 s in production, shortened here)', () => {
  it('the production timeout is 10 s and the reply cap 4 KiB', () => {
    expect(FCM_HTTP_TIMEOUT_MS).toBe(10_000);
    expect(FCM_MAX_REPLY_BYTES).toBe(4096);
  });

  it('a stalled send times out as send failed', async () => {
    g.fcm.handler = (_r, res) => g.fcm.stall(res);
    const t0 = Date.now();
    const err = await rejection(makeSender({ timeoutMs: 300 }).send(DEVICE_TOKEN, live()));
    expect(err).toBeInstanceOf(FcmSendFailedError);
    expect(err.message).toBe('relay: fcm send failed: timeout');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(290);
    expect(Date.now() - t0).toBeLessThan(3_000);
  });

  it('a stalled token fetch times out as token fetch failed', async () => {
    g.token.handler = (_r, res) => g.token.stall(res);
    const err = await rejection(makeSender({ timeoutMs: 300 }).send(DEVICE_TOKEN, live()));
    expect(err).toBeInstanceOf(FcmTokenFetchError);
    expect(err.message).toBe('relay: fcm token fetch failed: timeout');
    expect(g.fcm.requests).toHaveLength(0);
  });

  it('the timeout covers the whole exchange: headers sent, body never finished', async () => {
    g.fcm.handler = (_r, res) => {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.write('{"name":"');
      g.fcm.stall(res);
    };
    const err = await rejection(makeSender({ timeoutMs: 300 }).send(DEVICE_TOKEN, live()));
    expect(err).toBeInstanceOf(FcmSendFailedError);
    expect(err.message).toBe('relay: fcm send failed: timeout');
  });
});

describe('no redirects', () => {
  it('a 302 from FCM is a send failure; the Location is never contacted', async () => {
    const target = await FakeServer.start(okToken());
    extra.push(target);
    g.fcm.handler = (_r, res) => {
      res.writeHead(302, { Location: `${target.url}${SEND_PATH}` });
      res.end();
    };
    const err = await rejection(makeSender().send(DEVICE_TOKEN, live()));
    expect(err).toBeInstanceOf(FcmSendFailedError);
    expect(err.message).toBe('relay: fcm send failed: status 302');
    await sleep(100);
    expect(target.requests).toHaveLength(0);
  });

  it('a 307 from the token endpoint is a token fetch failure; the Location is never contacted', async () => {
    const target = await FakeServer.start(okToken());
    extra.push(target);
    g.token.handler = (_r, res) => {
      res.writeHead(307, { Location: `${target.url}/token` });
      res.end();
    };
    const err = await rejection(makeSender().send(DEVICE_TOKEN, live()));
    expect(err).toBeInstanceOf(FcmTokenFetchError);
    expect(err.message).toBe('relay: fcm token fetch failed: status 307');
    await sleep(100);
    expect(target.requests).toHaveLength(0);
    expect(g.fcm.requests).toHaveLength(0);
  });
});

describe('4 KiB reply cap', () => {
  /** Writes `bytes` bytes and then keeps the reply open; records when the client hung up. */
  function oversized(
    status: number,
    bytes: number,
    hungUp: { at?: number },
  ): (req: RecordedRequest, res: ServerResponse) => void {
    return (_r, res) => {
      res.writeHead(status, { 'Content-Type': 'application/json' });
      res.write(`{"name":"${MESSAGE_NAME}","pad":"${'x'.repeat(bytes)}`);
      res.on('close', () => (hungUp.at = Date.now()));
      g.fcm.stall(res);
    };
  }

  it('a success reply over the cap: sent without a name, reading stopped at the cap (no wait for the end)', async () => {
    const hungUp: { at?: number } = {};
    g.fcm.handler = oversized(200, 5_000, hungUp);
    const t0 = Date.now();
    expect(await makeSender({ timeoutMs: 5_000 }).send(DEVICE_TOKEN, live())).toBe('');
    expect(Date.now() - t0).toBeLessThan(2_000);
    await waitFor(() => hungUp.at !== undefined, 2_000, 'the client to drop the connection');
  });

  it('an error reply over the cap: the status only', async () => {
    const hungUp: { at?: number } = {};
    g.fcm.handler = oversized(500, 5_000, hungUp);
    const err = await rejection(makeSender({ timeoutMs: 5_000 }).send(DEVICE_TOKEN, live()));
    expect(err).toBeInstanceOf(FcmSendFailedError);
    expect(err.message).toBe('relay: fcm send failed: status 500');
    await waitFor(() => hungUp.at !== undefined, 2_000, 'the client to drop the connection');
  });

  it('a reply of exactly 4096 bytes is read whole', async () => {
    const head = `{"name":"${MESSAGE_NAME}","pad":"`;
    const body = head + 'x'.repeat(4096 - head.length - 2) + '"}';
    expect(body.length).toBe(4096);
    g.fcm.handler = (_r, res) => json(res, 200, body);
    expect(await makeSender().send(DEVICE_TOKEN, live())).toBe(MESSAGE_NAME);
  });

  it('a 1 MiB reply streamed in chunks is cut at the cap', async () => {
    let written = 0;
    let closed = false;
    g.fcm.handler = (_r, res) => {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.on('close', () => (closed = true));
      const chunk = 'y'.repeat(16 * 1024);
      const pump = (): void => {
        while (!closed && written < 1024 * 1024) {
          written += chunk.length;
          if (!res.write(chunk)) {
            res.once('drain', pump);
            return;
          }
        }
        if (!closed) res.end();
      };
      pump();
    };
    expect(await makeSender({ timeoutMs: 5_000 }).send(DEVICE_TOKEN, live())).toBe('');
    await waitFor(() => closed, 2_000, 'the server to see the connection dropped');
  });
});

describe('transport errors and cancellation', () => {
  it('FCM refusing connections: send failed, transport error with the code only', async () => {
    const port = await freePort();
    const err = await rejection(makeSender({ endpoint: `http://127.0.0.1:${port}` }).send(DEVICE_TOKEN, live()));
    expect(err).toBeInstanceOf(FcmSendFailedError);
    expect(err.message).toBe('relay: fcm send failed: transport error (ECONNREFUSED)');
  });

  it('FCM dropping the connection mid-reply: send failed', async () => {
    g.fcm.handler = (_r, res) => {
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': '100' });
      res.write('{"name":');
      setTimeout(() => res.socket?.destroy(), 20);
    };
    const err = await rejection(makeSender().send(DEVICE_TOKEN, live()));
    expect(err).toBeInstanceOf(FcmSendFailedError);
    expect(err.message).toMatch(/^relay: fcm send failed: transport error( \([A-Z0-9_]+\))?$/);
  });

  it('aborting during a stalled send: FcmCancelledError', async () => {
    g.fcm.handler = (_r, res) => g.fcm.stall(res);
    const ac = new AbortController();
    const p = makeSender().send(DEVICE_TOKEN, ac.signal);
    await waitFor(() => g.fcm.stalled.length === 1, 3_000, 'the send to reach FCM');
    ac.abort();
    const err = await rejection(p);
    expect(err).toBeInstanceOf(FcmCancelledError);
    expect(err.message).toBe(CANCELLED_TEXT);
  });

  it('aborting during a stalled token fetch: FcmCancelledError for every waiting send, not a token fetch failure', async () => {
    g.token.handler = (_r, res) => g.token.stall(res);
    const ac = new AbortController();
    const s = makeSender();
    const p = [s.send(DEVICE_TOKEN, ac.signal), s.send(DEVICE_TOKEN, ac.signal)];
    await waitFor(() => g.token.stalled.length === 1, 3_000, 'the token fetch');
    ac.abort();
    for (const e of await Promise.all(p.map(rejection))) expect(e).toBeInstanceOf(FcmCancelledError);
    expect(g.fcm.requests).toHaveLength(0);
  });

  it('an already aborted signal sends nothing', async () => {
    const ac = new AbortController();
    ac.abort();
    expect(await rejection(makeSender().send(DEVICE_TOKEN, ac.signal))).toBeInstanceOf(FcmCancelledError);
    expect(g.token.requests).toHaveLength(0);
    expect(g.fcm.requests).toHaveLength(0);
  });
});
