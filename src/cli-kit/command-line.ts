/** The command-line parsing both CLIs share (the operator's `cli` and the customer's `vps`). */
import { parseArgs } from 'node:util';

/** A mistake in how a command was typed: the CLI prints it with its usage and exits with status 2. */
export class UsageError extends Error {}

export interface OptionSpec {
  type: 'string' | 'boolean';
  /** May be given several times; its values are collected in order. */
  multiple?: boolean;
  short?: string;
}

export type OptionSpecs = Record<string, OptionSpec>;

/** What was given for each option: a string, `true`, or a list for a `multiple` option. */
export type OptionValues<O extends OptionSpecs> = {
  [K in keyof O]?: O[K]['type'] extends 'boolean'
    ? O[K]['multiple'] extends true
      ? boolean[]
      : boolean
    : O[K]['multiple'] extends true
      ? string[]
      : string;
};

export interface CommandLine<O extends OptionSpecs> {
  positionals: string[];
  values: OptionValues<O>;
}

/**
 * `--key value`, `--key=value` and bare boolean `--key`, through node:util's strict parser. An unknown
 * option, a missing value, a value given to a boolean, or a single-valued option given twice is a
 * UsageError (the last of two values would otherwise win silently).
 */
export function parseCommandLine<O extends OptionSpecs>(args: string[], options: O): CommandLine<O> {
  let parsed;
  try {
    parsed = parseArgs({ args, options, allowPositionals: true, strict: true, tokens: true });
  } catch (e) {
    throw new UsageError((e as Error).message.replace(/\. To specify a positional argument.*$/s, ''));
  }
  const seen = new Set<string>();
  for (const token of parsed.tokens) {
    if (token.kind !== 'option' || options[token.name]?.multiple) continue;
    if (seen.has(token.name)) throw new UsageError(`--${token.name} is given twice`);
    seen.add(token.name);
  }
  return { positionals: parsed.positionals, values: parsed.values as OptionValues<O> };
}

/**
 * A command that ran but left something undone: `output` (its report) is printed as a success's would
 * be, then `message`, and the process exits 1 so scripts notice; running it again continues.
 */
export class IncompleteRun extends Error {
  constructor(
    readonly output: string,
    message: string,
  ) {
    super(message);
    this.name = 'IncompleteRun';
  }
}
