import { loadConfig, ConfigError } from './app-config';
import { parseTrustProxy } from './trust-proxy';

describe('TRUST_PROXY', () => {
  it.each([
    [undefined, false],
    ['', false],
    ['false', false],
    ['0', false],
    ['1', 1],
    ['2', 2],
    ['10.0.0.0/8', ['10.0.0.0/8']],
    ['10.0.0.0/8, 192.168.1.5, fd00::/8, loopback', ['10.0.0.0/8', '192.168.1.5', 'fd00::/8', 'loopback']],
  ])('%p → %p', (raw, value) => {
    expect(parseTrustProxy(raw)).toEqual({ value });
  });

  it.each(['true', 'TRUE', 'yes', '17', '10.0.0.0/33', 'fd00::/129', 'example.com', '10.0.0.0/8,', '1.2.3'])(
    '%p is refused',
    (raw) => {
      expect(parseTrustProxy(raw)).toHaveProperty('problem');
    },
  );

  it('refuses true at start-up, naming the forgeable left-most X-Forwarded-For', () => {
    const env = {
      DATABASE_URL: 'postgresql://x@localhost/x',
      REDIS_URL: 'redis://localhost',
      TRUST_PROXY: 'true',
    };
    expect(() => loadConfig(env, 'api')).toThrow(ConfigError);
    expect(() => loadConfig(env, 'api')).toThrow(/left-most X-Forwarded-For/);
    expect(loadConfig({ ...env, TRUST_PROXY: '1' }, 'api').trustProxy).toBe(1);
  });
});
