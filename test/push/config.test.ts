// The push endpoint env vars (parsePushEnv): defaults, overrides, and refusals that never echo the value.

import { describe, expect, it } from 'vitest';
import { DEFAULT_FCM_ENDPOINT, DEFAULT_FCM_TOKEN_URI } from '../../src/config/defaults.js';
import { FCM_TOKEN_URI_REFUSAL_REASON, FCM_URL_REFUSAL_REASON, parsePushEnv } from '../../src/config/push-env.js';
import { usage } from '../../src/config/usage.js';
import type { FcmServiceAccount } from '../../src/push/fcm.js';

const creds = (tokenUri: string): FcmServiceAccount => ({
  clientEmail: 'relay@example.iam.gserviceaccount.com',
  privateKeyPem: '(not read here)',
  tokenUri,
  projectId: 'p',
});

describe('parsePushEnv', () => {
  it("defaults: Google's FCM endpoint and the key's token_uri", () => {
    expect(DEFAULT_FCM_ENDPOINT).toBe('https://fcm.googleapis.com');
    expect(parsePushEnv({}, null)).toEqual({
      ok: true,
      endpoints: { fcmEndpoint: 'https://fcm.googleapis.com', tokenUrl: DEFAULT_FCM_TOKEN_URI },
    });
    expect(parsePushEnv({}, creds('https://oauth2.example/token'))).toEqual({
      ok: true,
      endpoints: { fcmEndpoint: 'https://fcm.googleapis.com', tokenUrl: 'https://oauth2.example/token' },
    });
  });

  it('overrides win, http:// allowed (loopback tests, local proxies), paths kept', () => {
    const env = {
      PYRYCODE_RELAY_FCM_ENDPOINT: 'http://127.0.0.1:8081/fcm',
      PYRYCODE_RELAY_FCM_TOKEN_URL: 'http://[::1]:8082/oauth/token',
    };
    expect(parsePushEnv(env, creds('https://oauth2.googleapis.com/token'))).toEqual({
      ok: true,
      endpoints: { fcmEndpoint: 'http://127.0.0.1:8081/fcm', tokenUrl: 'http://[::1]:8082/oauth/token' },
    });
  });

  it.each([
    '',
    ' ',
    'fcm.googleapis.com',
    '/v1',
    'ftp://fcm.example',
    'file:///etc/passwd',
    'https://',
    'https://user@fcm.example',
    'https://user:SECRET@fcm.example',
    'https://fcm.example/?',
    'https://fcm.example/?k=SECRET',
    'https://fcm.example/#',
    'https://fcm.example/#SECRET',
  ])('refuses %j (value withheld)', (value) => {
    for (const envVar of ['PYRYCODE_RELAY_FCM_ENDPOINT', 'PYRYCODE_RELAY_FCM_TOKEN_URL']) {
      const out = parsePushEnv({ [envVar]: value }, null);
      expect(out).toEqual({ ok: false, env_var: envVar, reason: FCM_URL_REFUSAL_REASON });
      if (value.includes('SECRET')) expect(JSON.stringify(out)).not.toContain('SECRET');
    }
  });

  it("a key's token_uri that is not an http(s) URL is refused unless overridden", () => {
    expect(parsePushEnv({}, creds('garbage'))).toEqual({
      ok: false,
      env_var: 'PYRYCODE_RELAY_FCM_CREDENTIALS',
      reason: FCM_TOKEN_URI_REFUSAL_REASON,
    });
    expect(parsePushEnv({ PYRYCODE_RELAY_FCM_TOKEN_URL: 'https://proxy.example/token' }, creds('garbage')).ok).toBe(
      true,
    );
  });

  it('checks the endpoint before the token URL', () => {
    const out = parsePushEnv({ PYRYCODE_RELAY_FCM_ENDPOINT: 'x', PYRYCODE_RELAY_FCM_TOKEN_URL: 'y' }, null);
    expect(out).toMatchObject({ ok: false, env_var: 'PYRYCODE_RELAY_FCM_ENDPOINT' });
  });

  it('--help lists both variables with their defaults', () => {
    const text = usage();
    expect(text).toMatch(
      /PYRYCODE_RELAY_FCM_ENDPOINT +FCM API base URL for push wakes \(default https:\/\/fcm\.googleapis\.com\)/,
    );
    expect(text).toMatch(/PYRYCODE_RELAY_FCM_TOKEN_URL +OAuth2 token URL for push wakes/);
  });
});
