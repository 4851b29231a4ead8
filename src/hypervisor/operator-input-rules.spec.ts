import { diskPathProblem, hostPathProblem, imageRootsProblems, nodeLayoutProblems } from './host-paths';
import { libvirtUriProblem } from './libvirt/connection-uri';
import { canonicalDomainUuid, domainNameProblem } from './libvirt/domain-identity';

describe('operator input rules', () => {
  it('host paths: absolute and in normal form only', () => {
    for (const good of ['/var/lib/libvirt/images', '/a', '/srv/disks/web 01.qcow2', '/a/.hidden/b..c'])
      expect(hostPathProblem(good, 'p')).toBeNull();
    const bad: Record<string, RegExp> = {
      '': /1-1024/,
      relative: /absolute/,
      '/': /root directory/,
      '/a//b': /"\/\/"/,
      '/a/': /end with/,
      '/a/../b': /"\." or "\.\."/,
      '/a/./b': /"\." or "\.\."/,
      '/..': /"\." or "\.\."/,
      '/a/b\nc': /control/,
      '/a\u0000b': /control/,
      ['/' + 'x'.repeat(1024)]: /1-1024/,
    };
    for (const [p, why] of Object.entries(bad)) expect(hostPathProblem(p, 'p')).toMatch(why);
  });

  it('a disk lies strictly inside one of its node roots, not named like a restore file', () => {
    const roots = ['/var/lib/libvirt/images', '/srv/vm'];
    expect(diskPathProblem('/var/lib/libvirt/images/a.qcow2', roots)).toBeNull();
    expect(diskPathProblem('/srv/vm/tenant/a.qcow2', roots)).toBeNull();
    for (const p of [
      '/var/lib/libvirt/images',
      '/var/lib/libvirt/images-other/a.qcow2',
      '/var/lib/libvirt/images/../../../etc/shadow',
      '/etc/shadow',
      '/srv/vm/a.qcow2.restoring',
      '/srv/vm/a.qcow2.replaced',
      '/srv/vm//a.qcow2',
    ]) {
      expect({ p, why: diskPathProblem(p, roots) }).toEqual({ p, why: expect.stringMatching(/^disk_path /) });
    }
  });

  it('a node layout: 1-16 distinct roots, the snapshot directory apart from each', () => {
    expect(nodeLayoutProblems({ imageRoots: ['/img'], snapshotDir: '/snap' })).toEqual([]);
    expect(nodeLayoutProblems({ imageRoots: ['/img'], snapshotDir: '/img-snap' })).toEqual([]);
    for (const snapshotDir of ['/img', '/img/snap', '/']) {
      expect(nodeLayoutProblems({ imageRoots: ['/img'], snapshotDir })).toEqual([
        { field: 'snapshot_dir', message: expect.any(String) },
      ]);
    }
    expect(nodeLayoutProblems({ imageRoots: ['/img/a'], snapshotDir: '/img' })).toHaveLength(1);
    expect(imageRootsProblems([])).toEqual([expect.stringMatching(/1-16/)]);
    expect(imageRootsProblems(Array.from({ length: 17 }, (_, i) => `/r${i}`))).toHaveLength(1);
    expect(imageRootsProblems(['/a', '/a'])).toEqual([expect.stringMatching(/twice/)]);
    expect(imageRootsProblems(['/a/../b', '/'])).toHaveLength(2);
  });

  it('connection URIs: the driver forms only, nothing that runs a program', () => {
    for (const good of [
      'qemu:///system',
      'qemu:///session',
      'qemu+ssh://hv1.example.com/system',
      'qemu+ssh://root@10.0.0.7:2222/system',
      'qemu+ssh://ops_user@hv-1/session',
      'qemu+tls://hv1.example.com/system',
      'qemu+tls://[2001:db8::1]:16514/system',
    ])
      expect({ good, why: libvirtUriProblem(good) }).toEqual({ good, why: null });
    for (const bad of [
      'qemu+ext:///system?command=/bin/true',
      'qemu+ssh://host/system?command=/bin/true',
      'qemu+ssh://host/system?netcat=/tmp/evil',
      'qemu+ssh://host/system?keyfile=/root/.ssh/id',
      'qemu+tls://host/system?no_verify=1',
      'qemu:///system?socket=/tmp/sock',
      'qemu+unix:///system?socket=/tmp/sock',
      'qemu:///system#x',
      'qemu+tcp://host/system',
      'qemu+ssh://-oProxyCommand=touch%20x/system',
      'qemu+ssh://user@-host/system',
      'qemu+ssh://-user@host/system',
      'qemu+ssh://host..x/system',
      'qemu+ssh://host:0/system',
      'qemu+ssh://host:70000/system',
      'qemu+tls://user@host/system',
      'qemu://host/system',
      'qemu+ssh://host/embed',
      'qemu+ssh:///system',
      'xen:///system',
      'test:///default',
      'QEMU:///system',
      ' qemu:///system',
      'qemu:///system\n',
      `qemu+ssh://${'a'.repeat(300)}/system`,
    ])
      expect({ bad, why: libvirtUriProblem(bad) }).toEqual({
        bad,
        why: expect.stringMatching(/uri must be/),
      });
  });

  it('domain names virsh would read as an id or a UUID are refused; UUIDs canonical', () => {
    for (const good of [
      'web-01',
      'vm1',
      '1vm',
      '12.5',
      'a'.repeat(255),
      '453d97c5-a23d-464d-8703-97e020c1d7fz',
    ])
      expect({ good, why: domainNameProblem(good) }).toEqual({ good, why: null });
    for (const bad of [
      '1',
      '12',
      '0012',
      '453d97c5-a23d-464d-8703-97e020c1d7f5',
      '453D97C5-A23D-464D-8703-97E020C1D7F5',
      '453d97c5a23d464d870397e020c1d7f5',
      '45-3d97c5a23d464d870397e020c1d7f5---',
      '-x',
      '',
      'a b',
      'a'.repeat(256),
    ])
      expect({ bad, why: domainNameProblem(bad) }).toEqual({ bad, why: expect.stringMatching(/^domain /) });
    expect(canonicalDomainUuid('453D97C5-A23D-464D-8703-97E020C1D7F5')).toBe(
      '453d97c5-a23d-464d-8703-97e020c1d7f5',
    );
    for (const bad of ['453d97c5a23d464d870397e020c1d7f5', '12', '{453d97c5-a23d-464d-8703-97e020c1d7f5}'])
      expect(canonicalDomainUuid(bad)).toBeNull();
  });
});
