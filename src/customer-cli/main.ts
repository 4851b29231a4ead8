#!/usr/bin/env node
/** Entry point of the `vps` customer CLI (package.json `bin`); see cli.ts and docs/customer-cli.md. */
import { run } from './cli';

run(process.argv.slice(2), {
  env: process.env,
  stdout: process.stdout,
  stderr: process.stderr,
  onInterrupt: (handler) => {
    process.on('SIGINT', handler);
    return () => process.off('SIGINT', handler);
  },
}).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`error: ${String(e)} (internal)\n`);
    process.exitCode = 1;
  },
);
