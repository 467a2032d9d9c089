#!/usr/bin/python
# Reads a domain the xend way: XML-RPC through XendClient, sxp accessors,
# the relocation port from XendOptions, and vm.VM's parsed view.
import sys, xmlrpclib
from xen.xend import sxp, XendOptions
from xen.xend.XendClient import server
from xen.remus import vm

if len(sys.argv) < 2:
    print >>sys.stderr, 'usage: query.py domain'
    sys.exit(2)

try:
    info = server.xend.domain(sys.argv[1], 'all')
except xmlrpclib.Fault, f:
    print 'fault %d: %s' % (f.faultCode, f.faultString)
    sys.exit(3)

print 'name', sxp.child_value(info, 'name')
print 'domid', sxp.child_value(info, 'domid')
mem = sxp.child_value(info, 'memory')
print 'memory', mem, 'MiB', '(%d GiB)' % (int(mem) / 1024)
print 'relocation port', XendOptions.instance().get_xend_relocation_port()
names = server.xend.domains(0)
print 'domains', ' '.join(names)
v = vm.VM(sys.argv[1])
print 'vm', v.name, v.domid, len(v.disks), len(v.vifs)
server.xend.domain.setMemoryTarget(v.domid, int(mem))
try:
    server.xend.domain.pause(v.domid)
except NotImplementedError, e:
    print 'pause:', e
