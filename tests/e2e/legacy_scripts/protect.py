#!/usr/bin/python
#
# protect: keep a hot backup of a domain, Remus style.
#
# A site script written the way remus-era tooling was (Xen 3.4 - 4.4):
# Python 2, optparse, xen.remus.vm / device / save, three checkpoint
# callbacks, fault injection on stdin.  Written for the xen-remus-compat
# test suite; it must run unchanged under `xen-remus-compat run-legacy`.

import optparse, os, select, signal, sys, time

from xen.remus import save, util, vm
from xen.remus.device import ReplicatedDisk, ReplicatedDiskException
from xen.remus.device import BufferedNIC, BufferedNICException
from xen.xend import XendOptions

FAULTS = ['s', 's2', 'r', 'r2', 'c', 'c2']

class ConfigError(Exception): pass

class Signalled(Exception):
    def __init__(self, signo):
        Exception.__init__(self, signo)
        self.signo = signo

class Settings(object):
    COMPRESS = 1

    def __init__(self):
        self.domain = None
        self.backup = 'localhost'
        self.port = XendOptions.instance().get_xend_relocation_port()
        self.interval = 200
        self.disks = True
        self.nics = True
        self.flags = self.COMPRESS
        self.limit = 0

        p = optparse.OptionParser()
        p.usage = '%prog [options] domain [backup]'
        p.add_option('-i', '--interval', dest='interval', type='int', metavar='MS',
                     help='checkpoint every MS milliseconds')
        p.add_option('-p', '--port', dest='port', type='int', metavar='PORT',
                     help='backup relocation port')
        p.add_option('', '--no-disk', dest='nodisk', action='store_true',
                     help='do not replicate disks')
        p.add_option('', '--no-net', dest='nonet', action='store_true',
                     help='do not buffer the network')
        p.add_option('', '--no-compression', dest='nocompress', action='store_true',
                     help='send checkpoints uncompressed')
        p.add_option('-n', '--checkpoints', dest='limit', type='int', metavar='N',
                     help='stop after N checkpoints (0: never)')
        self.parser = p

    def parse(self):
        opts, args = self.parser.parse_args()
        if opts.interval:
            self.interval = opts.interval
        if opts.port:
            self.port = opts.port
        if opts.nodisk:
            self.disks = False
        if opts.nonet:
            self.nics = False
        if opts.nocompress:
            self.flags = self.flags & ~self.COMPRESS
        if opts.limit:
            self.limit = opts.limit
        if not args:
            raise ConfigError, 'Missing domain'
        self.domain = args[0]
        if len(args) > 1:
            self.backup = args[1]

def main(settings):
    state = {'start': 0, 'fault': None, 'count': 0}
    buffers = []

    def on_term(signo, frame):
        raise Signalled(signo)
    signal.signal(signal.SIGTERM, on_term)

    dom = vm.VM(settings.domain)
    print "protecting %s (domain %d) -> %s:%d every %d ms" % \
        (dom.name, dom.domid, settings.backup, settings.port, settings.interval)
    sys.stdout.flush()

    if settings.disks:
        for disk in dom.disks:
            try:
                buffers.append(ReplicatedDisk(disk))
            except ReplicatedDiskException, e:
                print str(e)
    if settings.nics:
        for nic in dom.vifs:
            buffers.append(BufferedNIC(nic))

    def die():
        print 'dying...'
        print util.runcmd(['sudo', 'ifdown', 'eth2'])
        for b in buffers:
            b.uninstall()
        print util.runcmd('sudo xm destroy %s' % settings.domain)
        print util.runcmd(['sudo', 'ifup', 'eth2'])
        sys.stdout.flush()

    def fault(point):
        if state['fault'] == point:
            die()

    def poll_stdin():
        r, w, x = select.select([sys.stdin], [], [], 0)
        if sys.stdin in r:
            line = sys.stdin.readline()
            if not line:
                return
            cmd = line.strip()
            if cmd not in FAULTS:
                print 'unknown command: %s' % cmd
            state['fault'] = cmd

    def postsuspend():
        state['start'] = time.time()
        fault('s')
        for b in buffers:
            b.postsuspend()
        fault('s2')

    def preresume():
        fault('r')
        for b in buffers:
            b.preresume()
        fault('r2')

    def commit():
        fault('c')
        print >>sys.stderr, 'PROF: flushed memory at %0.6f' % time.time()
        for b in buffers:
            b.commit()
        fault('c2')
        state['count'] += 1
        print 'checkpoint %d' % state['count']
        sys.stdout.flush()
        poll_stdin()
        if settings.limit and state['count'] >= settings.limit:
            return False
        elapsed = (time.time() - state['start']) * 1000
        if elapsed < settings.interval:
            time.sleep((settings.interval - elapsed) / 1000)
        return True

    sock = save.MigrationSocket((settings.backup, settings.port))
    rc = 0
    try:
        saver = save.Saver(settings.domain, sock, postsuspend,
                           preresume, commit, 0, settings.flags)
        try:
            saver.start()
        except save.CheckpointError, e:
            print e
            rc = 1
        except KeyboardInterrupt:
            pass
        except Signalled:
            print '*** signalled ***'
    finally:
        for b in buffers:
            b.uninstall()
    print 'stopped after %d checkpoints' % state['count']
    sys.exit(rc)

if __name__ == '__main__':
    settings = Settings()
    try:
        settings.parse()
    except ConfigError, inst:
        print str(inst)
        settings.parser.print_help()
        sys.exit(1)
    main(settings)
