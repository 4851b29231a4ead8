import { DynamicModule, Global, Module } from '@nestjs/common';
import { AppConfig, loadConfig, Role } from './app-config';

@Global()
@Module({})
export class ConfigModule {
  /** Provide an already validated configuration (tests build theirs with `loadConfig`). */
  static forConfig(config: AppConfig): DynamicModule {
    return {
      module: ConfigModule,
      providers: [{ provide: AppConfig, useValue: config }],
      exports: [AppConfig],
    };
  }

  static forRole(role: Role, env: Record<string, string | undefined> = process.env): DynamicModule {
    return ConfigModule.forConfig(loadConfig(env, role));
  }
}
