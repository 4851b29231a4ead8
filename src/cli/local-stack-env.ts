import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/**
 * How the operator CLI finds the local stack's database with nothing set: `npm run local` records the
 * stack's connection settings in `.local/local.env` of this checkout (`cli local-env save`), and the
 * CLI takes them from there whenever DATABASE_URL is unset, each one only where the environment
 * leaves it unset (explicit settings always win).
 */
export const LOCAL_STACK_KEYS = ['DATABASE_URL', 'REDIS_URL', 'QUEUE_PREFIX', 'BACKUP_DIR'] as const;

type Env = Record<string, string | undefined>;

/** The checkout's file: the same place from src/cli (ts-node, tests) and dist/cli (the build). */
export const LOCAL_STACK_ENV_FILE = path.resolve(__dirname, '..', '..', '.local', 'local.env');

export class LocalStackEnvFile {
  constructor(readonly file: string = LOCAL_STACK_ENV_FILE) {}

  /** `KEY=value` lines of the recorded settings; DATABASE_URL must be among them. */
  save(env: Env): void {
    const lines = LOCAL_STACK_KEYS.filter((k) => isSet(env[k])).map((k) => `${k}=${env[k]!.trim()}`);
    if (!isSet(env.DATABASE_URL)) throw new Error('local-env save: DATABASE_URL is not set');
    if (lines.some((l) => /[\r\n]/.test(l))) throw new Error('local-env save: a value holds a line break');
    mkdirSync(path.dirname(this.file), { recursive: true });
    // Written whole, then renamed: a CLI reading at the same time sees the old file or the new one.
    const partial = `${this.file}.${process.pid}.partial`;
    writeFileSync(partial, `${lines.join('\n')}\n`, { mode: 0o600 });
    renameSync(partial, this.file);
  }

  /** The recorded settings, or null when the local stack never ran in this checkout. */
  read(): Record<string, string> | null {
    let text: string;
    try {
      text = readFileSync(this.file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw e;
    }
    const values: Record<string, string> = {};
    for (const line of text.split('\n')) {
      const eq = line.indexOf('=');
      const key = line.slice(0, eq);
      if (eq > 0 && (LOCAL_STACK_KEYS as readonly string[]).includes(key))
        values[key] = line.slice(eq + 1).trim();
    }
    return values;
  }

  /**
   * `env` with the recorded settings filled in where it has none, when DATABASE_URL is unset; `used`
   * says whether the file was used (the CLI says so on stderr).
   */
  fillIn(env: Env): { env: Env; used: boolean } {
    if (isSet(env.DATABASE_URL)) return { env, used: false };
    const recorded = this.read();
    if (!recorded?.DATABASE_URL) return { env, used: false };
    const filled: Env = { ...env };
    for (const key of LOCAL_STACK_KEYS) if (!isSet(filled[key]) && recorded[key]) filled[key] = recorded[key];
    return { env: filled, used: true };
  }

  /** The stderr line when the file was used: which file, and which database (password hidden). */
  usedNotice(env: Env): string {
    return `cli: DATABASE_URL is not set; using the database of \`npm run local\`: ${withoutPassword(env.DATABASE_URL ?? '')} (recorded in ${this.file})\n`;
  }

  /** Added to "DATABASE_URL is required but not set" when there is no file to take it from. */
  static readonly HINT =
    'Set DATABASE_URL, or run `npm run local` in this checkout once: it records its database for the CLI.';
}

function isSet(v: string | undefined): v is string {
  return v !== undefined && v.trim() !== '';
}

function withoutPassword(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return url;
  }
}
