/**
 * k8s/: `kubectl kustomize k8s/` renders the base (Debian's kubectl, or any on PATH / $KUBECTL), and the
 * rendered objects are checked for what the cluster and this service need: identity fields, selectors
 * that match their pods, images, resources, probes on real ports, the security settings, the worker's
 * host mounts and node name, and a configuration the processes themselves accept (loadConfig).
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { load, loadAll } from 'js-yaml';
import { loadConfig } from '../../src/config/app-config';

const ROOT = path.resolve(__dirname, '../..');

/* eslint-disable @typescript-eslint/no-explicit-any -- rendered Kubernetes objects are free-form YAML */
type Obj = Record<string, any>;

function findKubectl(): string | null {
  for (const candidate of [process.env.KUBECTL, 'kubectl', '/usr/bin/kubectl'].filter(Boolean) as string[]) {
    if (spawnSync(candidate, ['version', '--client'], { encoding: 'utf8' }).status === 0) return candidate;
  }
  return null;
}

const kubectl = findKubectl();
if (!kubectl) {
  // Loud on purpose: the render check is then not done.
  process.stderr.write(
    '\n!! kubectl not found (install Debian `kubernetes-client`, or set KUBECTL): ' +
      'the k8s/ render checks are SKIPPED.\n\n',
  );
}

const example = load(readFileSync(path.join(ROOT, 'k8s/examples/secret.example.yaml'), 'utf8')) as Obj;

describe('k8s/examples/secret.example.yaml', () => {
  it('is a clearly marked placeholder Secret named as the pods expect', () => {
    expect(example).toMatchObject({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'vps-secrets' } });
    expect(Object.keys(example.stringData).sort()).toEqual([
      'BACKUP_MASTER_KEY',
      'BACKUP_S3_ACCESS_KEY_ID',
      'BACKUP_S3_SECRET_ACCESS_KEY',
      'DATABASE_URL',
      'METRICS_TOKEN',
      'REDIS_URL',
      'WEBHOOK_SECRET_KEY',
    ]);
    // The keys must parse as keys, so their placeholders are the base64 of a placeholder text.
    const { BACKUP_MASTER_KEY, WEBHOOK_SECRET_KEY, ...others } = example.stringData as Record<string, string>;
    for (const key of [BACKUP_MASTER_KEY, WEBHOOK_SECRET_KEY]) {
      expect(Buffer.from(key, 'base64').toString('latin1')).toMatch(/PLACEHOLDER/);
    }
    for (const v of Object.values(others)) expect(v).toMatch(/PLACEHOLDER/);
    expect(readFileSync(path.join(ROOT, 'k8s/examples/secret.example.yaml'), 'utf8')).toMatch(
      /EXAMPLE ONLY - PLACEHOLDER VALUES/,
    );
  });

  it('is not in the kustomize base (applying the base never overwrites real credentials)', () => {
    const k = load(readFileSync(path.join(ROOT, 'k8s/kustomization.yaml'), 'utf8')) as Obj;
    expect((k.resources as string[]).every((r) => !r.includes('secret'))).toBe(true);
  });
});

(kubectl ? describe : describe.skip)('kubectl kustomize k8s/', () => {
  let objects: Obj[];
  const all = (kind: string) => objects.filter((o) => o.kind === kind);
  const one = (kind: string, name: string) => {
    const found = objects.find((o) => o.kind === kind && o.metadata.name === name);
    if (!found) throw new Error(`${kind}/${name} is not rendered`);
    return found;
  };
  const podSpecs = () =>
    objects
      .filter((o) => ['Deployment', 'DaemonSet', 'Job'].includes(o.kind))
      .map((o) => [o, o.spec.template] as const);
  const matches = (selector: Record<string, string>, labels: Record<string, string>) =>
    Object.entries(selector).every(([k, v]) => labels?.[k] === v);
  /** The environment a container gets: ConfigMap data, the example Secret, then its own env. */
  const envOf = (container: Obj, fieldRefs: Record<string, string> = {}): Record<string, string> => {
    const env: Record<string, string> = {};
    for (const from of container.envFrom ?? []) {
      if (from.configMapRef) Object.assign(env, one('ConfigMap', from.configMapRef.name).data);
      if (from.secretRef) {
        expect(from.secretRef.name).toBe(example.metadata.name);
        Object.assign(env, example.stringData);
      }
    }
    for (const e of container.env ?? []) {
      env[e.name] = e.value ?? fieldRefs[e.valueFrom?.fieldRef?.fieldPath] ?? '';
    }
    return env;
  };

  beforeAll(() => {
    const started = Date.now();
    const res = spawnSync(kubectl!, ['kustomize', path.join(ROOT, 'k8s')], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    if (res.status !== 0) throw new Error(`kubectl kustomize failed:\n${res.stderr}`);
    objects = (loadAll(res.stdout) as Obj[]).filter(Boolean);
    process.stderr.write(`kubectl kustomize k8s/: ${objects.length} objects in ${Date.now() - started} ms\n`);
  });

  it('renders every object with apiVersion, kind, a DNS-1123 name, the namespace and the part-of label', () => {
    for (const o of objects) {
      expect(o.apiVersion).toEqual(expect.any(String));
      expect(o.kind).toEqual(expect.any(String));
      expect(o.metadata?.name).toMatch(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
      if (o.kind !== 'Namespace') expect(o.metadata.namespace).toBe('vps');
      expect(o.metadata.labels?.['app.kubernetes.io/part-of']).toBe('admin-vps');
    }
    const kinds = objects.map((o) => `${o.kind}/${o.metadata.name}`).sort();
    expect(kinds).toEqual(
      expect.arrayContaining([
        'Namespace/vps',
        'ConfigMap/vps-config',
        'Deployment/vps-api',
        'Service/vps-api',
        'HorizontalPodAutoscaler/vps-api',
        'PodDisruptionBudget/vps-api',
        'Job/vps-migrate',
        'DaemonSet/vps-worker',
        'NetworkPolicy/vps-default-deny',
      ]),
    );
    expect(new Set(kinds).size).toBe(kinds.length);
  });

  it('workloads: selectors match pod labels; containers have a pinned image, resources, probes on their ports', () => {
    for (const [o, template] of podSpecs()) {
      if (o.spec.selector) expect(matches(o.spec.selector.matchLabels, template.metadata.labels)).toBe(true);
      const spec = template.spec;
      expect(spec.automountServiceAccountToken).toBe(false);
      const volumes = new Set((spec.volumes ?? []).map((v: Obj) => v.name));
      for (const c of spec.containers) {
        expect(c.name).toEqual(expect.any(String));
        expect(c.image).toMatch(/^registry\.example\.org\/admin-vps\/(api|worker):\d+\.\d+\.\d+$/);
        expect(c.resources?.requests?.cpu).toBeDefined();
        expect(c.resources?.requests?.memory).toBeDefined();
        expect(c.resources?.limits?.memory).toBeDefined();
        expect(c.securityContext?.allowPrivilegeEscalation).toBe(false);
        expect(c.securityContext?.readOnlyRootFilesystem).toBe(true);
        expect(c.securityContext?.capabilities?.drop).toEqual(['ALL']);
        for (const m of c.volumeMounts ?? [])
          expect(volumes.has(m.name) ? m.name : `missing volume ${m.name}`).toBe(m.name);
        for (const probe of [c.readinessProbe, c.livenessProbe, c.startupProbe].filter(Boolean)) {
          const ports = (c.ports ?? []).flatMap((p: Obj) => [p.name, p.containerPort]);
          expect(ports).toContain(probe.httpGet.port);
        }
      }
    }
  });

  it('api Deployment: /readyz and /healthz probes, non-root, read-only root, no capabilities, a config it accepts', () => {
    const pod = one('Deployment', 'vps-api').spec.template.spec;
    const [c] = pod.containers;
    expect(c.command).toEqual(['node', 'dist/main.js', 'api']);
    expect(c.readinessProbe.httpGet.path).toBe('/readyz');
    expect(c.livenessProbe.httpGet.path).toBe('/healthz');
    expect(pod.securityContext).toMatchObject({
      runAsNonRoot: true,
      seccompProfile: { type: 'RuntimeDefault' },
    });
    expect(pod.securityContext.runAsUser).toBeGreaterThan(0);
    expect(c.securityContext).toMatchObject({ runAsNonRoot: true, readOnlyRootFilesystem: true });
    expect(c.securityContext.capabilities.add).toBeUndefined();
    expect(loadConfig(envOf(c), 'api')).toMatchObject({ port: c.ports[0].containerPort, host: '0.0.0.0' });
  });

  it('Service, HPA and PDB point at the api pods', () => {
    const pods = one('Deployment', 'vps-api').spec.template;
    const svc = one('Service', 'vps-api');
    expect(matches(svc.spec.selector, pods.metadata.labels)).toBe(true);
    expect(pods.spec.containers[0].ports.map((p: Obj) => p.name)).toContain(svc.spec.ports[0].targetPort);
    const hpa = one('HorizontalPodAutoscaler', 'vps-api');
    expect(hpa.apiVersion).toBe('autoscaling/v2');
    expect(hpa.spec.scaleTargetRef).toEqual({ apiVersion: 'apps/v1', kind: 'Deployment', name: 'vps-api' });
    expect(hpa.spec.minReplicas).toBeGreaterThanOrEqual(2);
    expect(hpa.spec.maxReplicas).toBeGreaterThan(hpa.spec.minReplicas);
    const pdb = one('PodDisruptionBudget', 'vps-api');
    expect(pdb.apiVersion).toBe('policy/v1');
    expect(matches(pdb.spec.selector.matchLabels, pods.metadata.labels)).toBe(true);
    expect(pdb.spec.minAvailable).toBeLessThan(hpa.spec.minReplicas);
  });

  it('migration Job runs `node prisma/migrate.mjs` once, non-root', () => {
    const job = one('Job', 'vps-migrate');
    const pod = job.spec.template.spec;
    expect(pod.containers[0].command).toEqual(['node', 'prisma/migrate.mjs']);
    expect(['Never', 'OnFailure']).toContain(pod.restartPolicy);
    expect(job.spec.backoffLimit).toBeGreaterThan(0);
    expect(pod.securityContext.runAsNonRoot).toBe(true);
    expect(envOf(pod.containers[0]).DATABASE_URL).toMatch(/^postgresql:/);
  });

  it('worker DaemonSet: hypervisor nodes only, libvirt socket and disk paths mounted, node name from the downward API', () => {
    const pod = one('DaemonSet', 'vps-worker').spec.template.spec;
    const [c] = pod.containers;
    expect(c.command).toEqual(['node', 'dist/main.js', 'worker']);
    expect(pod.nodeSelector?.['admin.vps.org/hypervisor']).toBe('true');
    expect(c.env.find((e: Obj) => e.name === 'WORKER_NODE').valueFrom.fieldRef.fieldPath).toBe(
      'spec.nodeName',
    );
    const hostPaths = Object.fromEntries(
      pod.volumes.filter((v: Obj) => v.hostPath).map((v: Obj) => [v.name, v.hostPath.path]),
    );
    const mounts = Object.fromEntries(c.volumeMounts.map((m: Obj) => [m.mountPath, m.name]));
    // The same path inside as on the host: the database stores host paths.
    for (const p of ['/var/run/libvirt', '/var/lib/libvirt/images', '/var/lib/vps/snapshots'])
      expect(hostPaths[mounts[p]]).toBe(p);
    // The `default` backup store: the host's backup storage, which must be there (never created on the
    // host's own disk).
    const backupDir = envOf(c).BACKUP_DIR;
    expect(mounts[backupDir]).toBeDefined();
    expect(pod.volumes.find((v: Obj) => v.name === mounts[backupDir]).hostPath).toEqual({
      path: backupDir,
      type: 'Directory',
    });
    expect(c.readinessProbe.httpGet.path).toBe('/readyz');
    expect(c.livenessProbe.httpGet.path).toBe('/healthz');
    // The process accepts this environment (a non-loopback metrics listener needs METRICS_TOKEN).
    const config = loadConfig(envOf(c, { 'spec.nodeName': 'hv1' }), 'worker');
    expect(config).toMatchObject({ workerNode: 'hv1', workerMetricsHost: '0.0.0.0' });
    expect(config.workerMetricsPort).toBe(c.ports.find((p: Obj) => p.name === 'metrics').containerPort);
  });

  it('backups: secrets (master key, S3 credentials) only in the Secret, never in the ConfigMap; an S3 store works', () => {
    const config = one('ConfigMap', 'vps-config').data as Record<string, string>;
    for (const key of Object.keys(config)) {
      expect(Object.keys(example.stringData)).not.toContain(key);
      expect(key).not.toMatch(/PASSWORD|SECRET|TOKEN|MASTER_KEY|ACCESS_KEY|_URL$/);
    }
    for (const value of Object.values(config)) {
      for (const secret of Object.values(example.stringData as Record<string, string>))
        expect(value).not.toContain(secret);
    }
    // An S3 store added to the ConfigMap (names and location only) takes its credentials from the Secret.
    const stores = JSON.stringify({
      offsite: {
        kind: 's3',
        endpoint: 'https://rgw.example.net',
        bucket: 'vps-backups',
        accessKeyIdEnv: 'BACKUP_S3_ACCESS_KEY_ID',
        secretAccessKeyEnv: 'BACKUP_S3_SECRET_ACCESS_KEY',
      },
    });
    const worker = one('DaemonSet', 'vps-worker').spec.template.spec.containers[0];
    const api = one('Deployment', 'vps-api').spec.template.spec.containers[0];
    for (const [c, role] of [
      [worker, 'worker'],
      [api, 'api'],
    ] as const) {
      const env = { ...envOf(c, { 'spec.nodeName': 'hv1' }), BACKUP_STORES: stores };
      expect([...loadConfig(env, role).backupStores.keys()].sort()).toEqual(['default', 'offsite']);
    }
  });

  it('NetworkPolicies: default deny, DNS, api ingress on its port, egress only to Postgres and Redis (and the workers to S3, the webhook sender to public HTTPS)', () => {
    const policies = all('NetworkPolicy');
    expect(one('NetworkPolicy', 'vps-default-deny').spec).toEqual({
      podSelector: {},
      policyTypes: ['Ingress', 'Egress'],
    });
    const api = one('Deployment', 'vps-api').spec.template;
    const applies = (p: Obj, labels: Record<string, string>) =>
      matches(p.spec.podSelector.matchLabels ?? {}, labels);
    const portsOf = (rules: Obj[]) => rules.flatMap((r) => (r.ports ?? []).map((x: Obj) => x.port as number));
    const apiIngress = policies.filter((p) => p.spec.ingress && applies(p, api.metadata.labels));
    expect(apiIngress.flatMap((p) => portsOf(p.spec.ingress))).toEqual([
      api.spec.containers[0].ports[0].containerPort,
    ]);
    for (const [o, t] of podSpecs()) {
      const egress = policies.filter((p) => p.spec.egress && applies(p, t.metadata.labels));
      // Workers reach S3 stores, the webhook sender customers' endpoints: HTTPS both.
      const https = o.kind === 'DaemonSet' || o.metadata.name === 'vps-webhooks' ? [443] : [];
      expect(egress.flatMap((p) => portsOf(p.spec.egress)).sort((a, b) => a - b)).toEqual([
        53,
        53,
        ...https,
        5432,
        6379,
        26379,
      ]);
    }
  });
});
