import 'reflect-metadata';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { AccountsModule } from '../accounts/accounts.module';
import { AuditCoreModule } from '../audit/audit.module';
import { TokensCoreModule } from '../auth/auth.module';
import { CommonModule } from '../common/common.module';
import { ProblemException } from '../common/problem';
import { ConfigError, loadConfig } from '../config/app-config';
import { ConfigModule } from '../config/config.module';
import { HypervisorError } from '../hypervisor/hypervisor-driver';
import { NodesCoreModule } from '../nodes/nodes.module';
import { PrismaModule } from '../prisma/prisma.module';
import { ServersCoreModule } from '../servers/servers.module';
import { IncompleteRun, UsageError } from '../cli-kit/command-line';
import { BackupRecoveryModule } from '../backups/recovery/backup-recovery.module';
import { BackupCliCommands } from './backup-commands';
import { WebhookSecretRotation } from '../events/webhook-secret-rotation';
import { WebhookCliCommands } from './webhook-commands';
import { CliCommands, USAGE } from './commands';
import { DomainInspectors } from './domain-inspector';
import { LocalStackEnvFile } from './local-stack-env';

@Module({})
class CliModule {}

const localStack = new LocalStackEnvFile();
/** Set when neither the environment nor the local stack's file names a database. */
let noDatabaseUrl = false;

async function main(argv: string[]): Promise<number> {
  if (argv.length === 0 || argv[0] === 'help' || argv[0] === '--help') {
    process.stdout.write(USAGE);
    return argv.length === 0 ? 2 : 0;
  }
  // `npm run local` records its stack here (no database needed to write the file).
  if (argv.length === 2 && argv[0] === 'local-env' && argv[1] === 'save') {
    localStack.save(process.env);
    process.stdout.write(`${localStack.file}\n`);
    return 0;
  }
  const { env, used } = localStack.fillIn(process.env);
  if (used) process.stderr.write(localStack.usedNotice(env));
  noDatabaseUrl = !env.DATABASE_URL?.trim();
  const config = loadConfig(env, 'cli');
  const app = await NestFactory.createApplicationContext(
    {
      module: CliModule,
      imports: [
        ConfigModule.forConfig(config),
        CommonModule,
        PrismaModule,
        AccountsModule,
        AuditCoreModule,
        TokensCoreModule,
        NodesCoreModule,
        ServersCoreModule,
        BackupRecoveryModule,
      ],
      providers: [
        CliCommands,
        BackupCliCommands,
        WebhookCliCommands,
        WebhookSecretRotation,
        DomainInspectors,
      ],
    },
    { logger: false },
  );
  try {
    const out = await app.get(CliCommands).run(argv);
    if (out !== '') process.stdout.write(out.endsWith('\n') ? out : `${out}\n`);
    return 0;
  } finally {
    await app.close();
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: unknown) => {
    if (e instanceof UsageError) {
      process.stderr.write(`error: ${e.message}\n\n${USAGE}`);
      process.exit(2);
    }
    if (e instanceof IncompleteRun) {
      process.stdout.write(`${e.output}\n`);
      process.stderr.write(`error: ${e.message}\n`);
      process.exit(1);
    }
    if (e instanceof ConfigError) {
      process.stderr.write(`${e.message}\n${noDatabaseUrl ? `${LocalStackEnvFile.HINT}\n` : ''}`);
      process.exit(78);
    }
    if (e instanceof ProblemException) {
      const body = e.render('en', 'cli');
      const fields = body.errors?.map((f) => ` (${f.field}: ${f.message})`).join('') ?? '';
      process.stderr.write(`error: ${body.detail}${fields}\n`);
      process.exit(1);
    }
    if (e instanceof HypervisorError) {
      // The operator sees libvirt's own words too (the message alone is written for customers).
      process.stderr.write(`error: ${e.message}${e.detail ? ` (${e.detail})` : ''}\n`);
      process.exit(1);
    }
    process.stderr.write(`error: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  },
);
