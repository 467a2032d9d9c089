#!/usr/bin/python
# A legacy script that reaches into xend's server-side modules, which
# xen-remus-compat does not provide.
import sys
from xen.xend import XendDomain

print XendDomain.instance().list_names()
