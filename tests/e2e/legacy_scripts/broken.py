#!/usr/bin/python
# A legacy script with a syntax error that Python 2 rejects too.
import sys

def report(dom):
    print "domain", dom

def main(argv):
    for a in argv:
        report(a
    print "done"

main(sys.argv[1:])
