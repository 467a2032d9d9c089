"""``xen.remus.image`` (legacy-api.md section 8): save-image header and v1 batches.

The legacy module called ``logging.basicConfig(level=DEBUG)`` at import; this
one configures nothing (section 0.2).  ``P2M_EXT_SIG`` is word-size aware
(the legacy 32-bit value never matched libxc's ``~0UL`` on 64-bit hosts).

The xl-era save-file header (xl-side.md section 3.2) is available too, as
``makexlheader``/``parsexlheader``, so code that wrote legacy headers can
write what ``xl migrate-receive`` expects.
"""
from __future__ import annotations

import logging
import struct

from . import vm
from .. import sxp

log = logging.getLogger("xen_remus_compat")

SIGNATURE = "LinuxGuestRecord"
LONGLEN = struct.calcsize("L")
INTLEN = 4
PAGE_SIZE = 4096
# ~0UL as libxc writes it (8 bytes of 0xff on 64-bit)
P2M_EXT_SIG = (1 << (8 * LONGLEN)) - 1
FPP = 1024
LTAB_MASK = 0xf << 28
BATCH_SIZE = 1024
IDXLEN = INTLEN + BATCH_SIZE * LONGLEN


class VMParseException(Exception):
    pass


def _bytes(text):
    return text.encode("latin-1") if isinstance(text, str) else text


def makeheader(dominfo):
    "create an image header from a VM dominfo sxpr"
    items = [SIGNATURE]
    # Python 2 wrote bytes: non-ASCII is escaped as \xhh, as it was then
    sxpr = sxp.to_string(dominfo, escape_non_ascii=True)
    items.append(struct.pack("!i", len(_bytes(sxpr))))
    items.append(sxpr)
    return b"".join(_bytes(i) for i in items)


def parseheader(header_text):
    "parses a header sxpr and returns a parsed dominfo dict"
    if isinstance(header_text, bytes):
        header_text = header_text.decode("latin-1")
    return vm.parsedominfo(vm.strtosxpr(header_text))


def makexlheader(config_json: str) -> bytes:
    """The xl save-file header (magic, flags, JSON config) for ``config_json``."""
    from ..stream import xl as xlstream
    return xlstream.pack_header(config_json)


def parsexlheader(fd):
    """Read an xl save-file header from a file object; returns its JSON config."""
    from ..stream import xl as xlstream
    return xlstream.read_header(fd)


class VMImage(object):
    def __init__(self, img=None):
        """img may be a path or a file object"""
        self.dom = None
        self.fd = None
        self.header = None
        self.nr_pfns = 0
        self.p2mext = None
        if img:
            self.open(img)

    def open(self, img):
        if isinstance(img, str):
            self.fd = open(img, "rb")
        else:
            self.fd = img
        self.readheader()

    def readheader(self):
        sig = self.fd.read(len(SIGNATURE))
        if sig != _bytes(SIGNATURE):
            raise VMParseException("Bad signature in image")
        hlen = self.fd.read(INTLEN)
        hlen, = struct.unpack("!i", hlen)
        self.header = self.fd.read(hlen)
        self.dom = parseheader(self.header)

    def readp2mfl(self):
        "read the P2M frame list"
        pfnlen = self.fd.read(LONGLEN)
        self.nr_pfns, = struct.unpack("L", pfnlen)
        p2m0 = self.fd.read(LONGLEN)
        p2mhdr = p2m0
        p2m0, = struct.unpack("L", p2m0)
        if p2m0 == P2M_EXT_SIG:
            elen = self.fd.read(INTLEN)
            elen, = struct.unpack("I", elen)
            self.p2mext = self.fd.read(elen)
            p2m0 = self.fd.read(LONGLEN)
            p2m0, = struct.unpack("L", p2m0)
        p2mfl = [p2m0]
        p2mfle = (self.nr_pfns + FPP - 1) // FPP - 1
        p2ms = self.fd.read(LONGLEN * p2mfle)
        p2mfl.extend(struct.unpack("%dL" % p2mfle, p2ms))
        self.p2mfl = p2mfl
        del p2mhdr

    def flush(self):
        self.ofd.write(self.tail)


class Writer(object):
    """compress a stream of checkpoints into a single image of the
    last checkpoint"""

    def __init__(self, fd, compact=False):
        self.fd = fd
        self.compact = compact
        self.vm = None
        self.tail = None
        # offset to first batch of pages
        self.imgstart = 0
        # PFN mappings
        self.pfns = []

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def writeheader(self):
        hdr = makeheader(self.vm.dominfo)
        self.fd.write(hdr)
        return len(hdr)

    def writep2mfl(self):
        p2m = [struct.pack("L", self.vm.nr_pfns)]
        if self.vm.p2mext:
            p2m.extend([struct.pack("L", P2M_EXT_SIG), self.vm.p2mext])
        p2m.append(struct.pack("%dL" % len(self.vm.p2mfl), *self.vm.p2mfl))
        self.fd.write(b"".join(p2m))

    def writebatch(self, batch):
        def offset(pfn):
            isz = (pfn // BATCH_SIZE + 1) * IDXLEN
            return self.imgstart + isz + pfn * PAGE_SIZE

        if not self.compact:
            return self.fd.write(batch)

        batch = parsebatch(batch)
        # sort pages for better disk seek behaviour
        batch.sort(key=lambda x: x[0] & ~LTAB_MASK)

        for pfndesc, page in batch:
            pfn = pfndesc & ~LTAB_MASK
            if pfn > self.vm.nr_pfns:
                log.error("INVALID PFN: %d", pfn)
            if len(self.pfns) <= pfn:
                self.pfns.extend([0] * (pfn - len(self.pfns) + 1))
            self.pfns[pfn] = pfndesc
            self.fd.seek(offset(pfn))
            self.fd.write(page)

    def writeindex(self):
        "Write batch header in front of each page"
        hdrlen = INTLEN + BATCH_SIZE * LONGLEN
        batches = (len(self.pfns) + BATCH_SIZE - 1) // BATCH_SIZE

        for i in range(batches):
            offset = self.imgstart + i * (hdrlen + (PAGE_SIZE * BATCH_SIZE))
            pfnoff = i * BATCH_SIZE
            # python auto-clipping is the only reason this works
            pfns = self.pfns[pfnoff:pfnoff + BATCH_SIZE]
            pfns += [0] * (BATCH_SIZE - len(pfns))
            hdr = struct.pack("i%dL" % BATCH_SIZE, BATCH_SIZE, *pfns)
            self.fd.seek(offset)
            self.fd.write(hdr)

        # terminate index
        offset = self.imgstart + batches * (hdrlen + (PAGE_SIZE * BATCH_SIZE))
        self.fd.seek(offset)
        self.fd.write(struct.pack("i", 0))
        return offset + INTLEN

    def slurp(self, ifd):
        """Copy an image stream to the writer's fd"""
        vm_ = VMImage(ifd)
        self.vm = vm_
        self.imgstart = self.writeheader()
        vm_.readp2mfl()
        self.writep2mfl()
        self.imgstart = self.fd.tell() if hasattr(self.fd, "tell") else 0
        while True:
            l, batch = readbatch(ifd)
            if l <= 0:
                break
            self.writebatch(batch)
        self.tail = batch + ifd.read()

    def flush(self):
        if self.tail:
            if self.compact:
                self.writeindex()
            self.fd.write(self.tail)
            self.fd.flush()
            self.tail = None

    def close(self):
        self.flush()


def parsebatch(batch):
    "parse a batch string into pages"
    batchlen, batch = batch[:INTLEN], batch[INTLEN:]
    batchlen, = struct.unpack("i", batchlen)
    # as the legacy code: 0 gives [], a negative count a struct.error
    # ("-1L" is not a format)
    pfns = struct.unpack("%dL" % batchlen, batch[:max(batchlen, 0) * LONGLEN])
    pages = batch[batchlen * LONGLEN:]
    return [(pfns[i], pages[i * PAGE_SIZE:(i + 1) * PAGE_SIZE])
            for i in range(batchlen)]


def readbatch(fd):
    batch = []
    batchlen = fd.read(INTLEN)
    batch.append(batchlen)
    batchlen, = struct.unpack("i", batchlen)
    log.info("batch length: %d", batchlen)
    if batchlen <= 0:
        return (batchlen, batch[0])

    batchfns = fd.read(LONGLEN * batchlen)
    batch.append(batchfns)
    pages = fd.read(PAGE_SIZE * batchlen)
    if len(pages) != PAGE_SIZE * batchlen:
        log.error("SHORT READ: %d", len(pages))
    batch.append(pages)

    return (batchlen, b"".join(batch))
