import { Injectable } from '@nestjs/common';
import { IncompleteRun, UsageError } from '../cli-kit/command-line';
import { WebhookSecretRotation } from '../events/webhook-secret-rotation';

export const WEBHOOK_USAGE = `  webhooks rotate-secret-key                              re-seal every webhook signing secret with WEBHOOK_SECRET_KEY,
                                                          reading WEBHOOK_SECRET_KEY_PREVIOUS (idempotent; exit 1
                                                          when something was left undone)
`;

/** The operator CLI's `webhooks …` commands (docs/operations.md). */
@Injectable()
export class WebhookCliCommands {
  constructor(private readonly rotation: WebhookSecretRotation) {}

  async run(verb: string, args: string[]): Promise<string> {
    if (verb !== 'rotate-secret-key') throw new UsageError(`unknown command "webhooks ${verb}"`);
    if (args.length) throw new UsageError('webhooks rotate-secret-key takes no arguments');
    const r = await this.rotation.run();
    const lines = [
      `${r.webhooks} webhook secret${r.webhooks === 1 ? '' : 's'}: ${r.resealed} re-sealed, ` +
        `${r.failures.length} failure${r.failures.length === 1 ? '' : 's'}`,
      ...r.failures.map((f) => `failed ${f}`),
    ];
    if (r.failures.length) throw new IncompleteRun(lines.join('\n'), `${r.failures.length} not re-sealed`);
    return lines.join('\n');
  }
}
