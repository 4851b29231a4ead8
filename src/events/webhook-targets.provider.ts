import { AppConfig } from '../config/app-config';
import { WebhookTargets } from './webhook-target';

/** The target rules as configured: the API's checks on create and the sender's connects use the same. */
export const webhookTargetsProvider = {
  provide: WebhookTargets,
  useFactory: (c: AppConfig) =>
    new WebhookTargets({ allowHttp: c.webhookAllowHttp, allowedRanges: c.webhookAllowedRanges }),
  inject: [AppConfig],
};
