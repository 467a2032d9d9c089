"""The sxp reader on every recorded sxpr in the fixture corpus.

What each fixture must do (fixtures/README.md):

* libvirt ``sexpr2xml`` (52) and ``xml2sexpr`` (4): read with backslash-newline
  continuations deleted.  48 + 4 parse strictly to one ``(domain ...)`` /
  ``(vm ...)``; their name, uuid and memory agree with the XML libvirt
  produced from them (the oracle).  The four unbalanced ones fail strictly
  at the paren the README names and pass with ``lenient=True``:
  ``bridge-ipaddr`` and ``net-routed`` (missing final ``)``: the error
  points at the unclosed ``(domain``), ``pv-vfb-new`` and
  ``pv-vfb-new-vncdisplay`` (one extra ``)``: the error points at it).
* ganeti ``xl list --long`` dump: two ``(domain ...)`` values.
* xen ``*.sxp``: xend / PCI-quirk configuration files with ``#`` comments.
* xen ``docs/xen_config.html`` and ``docs/vnet-xend.txt``: the ``(vm ...)``
  examples extracted from the prose.
* xen ``test_XendConfig.py``: its Python-list sxpr prints and reads back.
"""
import ast
import html
import logging
import re
import xml.etree.ElementTree as ET

import pytest

from xen_remus_compat import sxp
from xen_remus_compat.sources.files import read_sxpr_file

MISSING_FINAL_PAREN = {"sexpr2xml-bridge-ipaddr", "sexpr2xml-net-routed"}
EXTRA_PAREN = {"sexpr2xml-pv-vfb-new", "sexpr2xml-pv-vfb-new-vncdisplay"}


def _libvirt_fixtures(fixtures_dir):
    files = sorted((fixtures_dir / "libvirt" / "sexpr2xml").glob("*.sexpr"))
    files += sorted((fixtures_dir / "libvirt" / "xml2sexpr").glob("*.sexpr"))
    return files


def test_corpus_is_complete(fixtures_dir):
    files = _libvirt_fixtures(fixtures_dir)
    assert len(files) == 56
    names = {f.stem for f in files}
    assert MISSING_FINAL_PAREN | EXTRA_PAREN <= names


def _xml_facts(xml_path):
    root = ET.parse(xml_path).getroot()
    uuid = root.findtext("uuid").replace("-", "").lower()
    return root.findtext("name"), uuid, int(root.findtext("memory"))


def _check_against_xml(value, xml_path):
    name, uuid, memory_kib = _xml_facts(xml_path)
    assert sxp.name(value) in ("domain", "vm")
    assert sxp.child_value(value, "name") == name
    assert sxp.child_value(value, "uuid").replace("-", "").lower() == uuid
    maxmem = sxp.child_value(value, "maxmem") or sxp.child_value(value, "memory")
    assert int(maxmem) * 1024 == memory_kib


def test_libvirt_fixtures(fixtures_dir, caplog):
    checked = {"strict": 0, "missing": 0, "extra": 0}
    for path in _libvirt_fixtures(fixtures_dir):
        xml_path = path.with_suffix(".xml")
        if path.stem in MISSING_FINAL_PAREN or path.stem in EXTRA_PAREN:
            with pytest.raises(sxp.ParseError) as ei:
                read_sxpr_file(path, continuations=True)
            e = ei.value
            assert e.source == str(path) and "\n" not in str(e)
            raw = path.read_text()
            if path.stem in MISSING_FINAL_PAREN:
                # the unclosed paren is the '(' of '(domain' at the top
                assert raw.startswith("(domain")
                assert (e.line, e.col) == (1, 1), path.name
                assert "not closed" in e.value
                checked["missing"] += 1
            else:
                # the extra paren is the file's last ')'
                last = raw.rstrip("\n").rindex(")")
                line = raw.count("\n", 0, last) + 1
                col = last - raw.rfind("\n", 0, last)
                assert (e.line, e.col) == (line, col), path.name
                assert "syntax error" in e.value
                checked["extra"] += 1
            caplog.clear()
            with caplog.at_level(logging.WARNING, logger="xen_remus_compat"):
                values = read_sxpr_file(path, continuations=True, lenient=True)
            assert any(str(path) in r.getMessage() for r in caplog.records)
        else:
            values = read_sxpr_file(path, continuations=True)
            checked["strict"] += 1
        assert len(values) == 1, path.name
        _check_against_xml(values[0], xml_path)
    assert checked == {"strict": 52, "missing": 2, "extra": 2}


def _load(fixtures_dir, stem, folder="sexpr2xml"):
    path = fixtures_dir / "libvirt" / folder / (stem + ".sexpr")
    return read_sxpr_file(path, continuations=True, lenient=True)[0]


def test_libvirt_readme_facts(fixtures_dir):
    # continuation inside a quoted string is deleted (bridge-ipaddr)
    dom = _load(fixtures_dir, "sexpr2xml-bridge-ipaddr")
    linux = sxp.child(sxp.child(dom, "image"), "linux")
    assert sxp.child_value(linux, "args") == \
        " method=http://download.fedora.devel.redhat.com/pub/fedora/linux/" \
        "core/test/5.91/x86_64/os  "
    # pci-devs: the space that starts a continuation line is kept
    dom = _load(fixtures_dir, "sexpr2xml-pci-devs")
    pci = sxp.child(sxp.child(dom, "device"), "pci")
    assert sxp.children(pci, "dev")[0] == \
        ["dev", ["domain", "0x0001"], ["bus", "0x0c"], ["slot", "0x1b"], ["func", "0x2"]]
    # a quoted string on its own line (pv-vfb-type-crash)
    dom = _load(fixtures_dir, "sexpr2xml-pv-vfb-type-crash")
    notes = sxp.child(sxp.child(sxp.child(dom, "image"), "linux"), "notes")
    assert sxp.child_value(notes, "FEATURES") == (
        "writable_page_tables|writable_descriptor_tables|auto_translated_physmap"
        "|pae_pgdir_above_4gb|supervisor_mode_kernel")
    # empty lists
    assert sxp.child(dom, "features") == ["features"]
    assert sxp.child(dom, "cpus") == ["cpus", [[]]]
    # bare atoms with ':' ',' '@'
    dom = _load(fixtures_dir, "sexpr2xml-fv-serial-tcp")
    assert sxp.child_value(sxp.child(sxp.child(dom, "image"), "hvm"), "serial") == \
        "tcp:localhost:9999,server,nowait"
    dom = _load(fixtures_dir, "sexpr2xml-fv-serial-udp")
    assert sxp.child_value(sxp.child(sxp.child(dom, "image"), "hvm"), "serial") == \
        "udp:localhost:9998@localhost:9999"
    # xml2sexpr escape: backslash escapes inside '...'
    vm = _load(fixtures_dir, "xml2sexpr-escape", "xml2sexpr")
    vbd = sxp.child(sxp.child(vm, "device"), "vbd")
    assert sxp.child_value(vbd, "uname") == "file:/root/'\\some.img"
    hvm = sxp.child(sxp.child(vm, "image"), "hvm")
    assert '&version="devel"' in sxp.child_value(hvm, "args")


def test_ganeti_dump(fixtures_dir):
    values = read_sxpr_file(fixtures_dir / "ganeti" / "xen-xl-list-long-4.0.1.txt")
    assert [sxp.name(v) for v in values] == ["domain", "domain"]
    dom0, guest = values
    assert sxp.child_value(dom0, "name") == "Domain-0"
    assert sxp.child_value(dom0, "vcpus") == "24"
    assert len(sxp.child_value(dom0, "cpus")) == 24
    assert sxp.child_value(guest, "name") == "instance1.example.com"
    assert sxp.child(guest, "cpus") == ["cpus", [[]]]
    kinds = [sxp.name(sxp.child0(d)) for d in sxp.children(guest, "device")]
    assert kinds == ["vif", "console", "vbd"]
    vbd = sxp.child0(sxp.children(guest, "device")[2])
    assert sxp.child_value(vbd, "uname") == \
        "phy:/var/run/ganeti/instance-disks/instance1.example.com:0"
    assert sxp.child_value(vbd, "protocol") == "x86_64-abi"


@pytest.mark.parametrize("rel,first", [
    ("xen/examples/xend-config.sxp", "xend-relocation-server"),
    ("xen/xend-tests/xend-config.sxp", "xend-relocation-server"),
    ("xen/examples/xend-pci-quirks.sxp", "tg3"),
    ("xen/examples/xend-pci-permissive.sxp", "unconstrained_dev_ids"),
])
def test_xen_sxp_files(fixtures_dir, rel, first):
    values = read_sxpr_file(fixtures_dir / rel)
    assert values and sxp.name(values[0]) == first
    # the same text through the legacy-mode parser gives the same values
    with open(fixtures_dir / rel, "rb") as f:
        assert sxp.parse(f, legacy=True) == values


def test_pci_quirks_comments_inside_lists(fixtures_dir):
    tg3 = read_sxpr_file(fixtures_dir / "xen/examples/xend-pci-quirks.sxp")[0]
    ids = sxp.child_value(tg3, "pci_ids")
    assert ids[:2] == ["14e4:1644", "14e4:1645"]
    assert all(re.fullmatch(r"[0-9a-f]{4}:[0-9a-f]{4}", i) for i in ids)


def _top_level_blocks(text):
    """Blocks that start with '(' in column 0, read until one value is complete."""
    lines = text.splitlines(keepends=True)
    blocks = []
    i = 0
    while i < len(lines):
        if not lines[i].startswith("("):
            i += 1
            continue
        p = sxp.Parser(source="doc")
        j = i
        while j < len(lines) and not p.ready():
            p.input(lines[j])
            j += 1
        assert p.ready(), f"block at line {i + 1} never closed"
        blocks.append((i + 1, "".join(lines[i:j]), p.get_val()))
        i = j
    return blocks


def test_xen_config_html_examples(fixtures_dir):
    page = (fixtures_dir / "xen/docs/xen_config.html").read_text(encoding="latin-1")
    pres = [html.unescape(m) for m in re.findall(r"<pre>(.*?)</pre>", page, re.S)]
    examples = [sxp.loads(p, source="xen_config.html") for p in pres
                if p.lstrip().startswith("(vm")]
    assert len(examples) == 1
    (vm,) = examples[0]
    assert sxp.child_value(vm, "name") == "xendom1"
    linux = sxp.child(sxp.child(vm, "image"), "linux")
    assert sxp.child_value(linux, "ip") == "::::xendom1:eth0:dhcp"
    assert sxp.child_value(linux, "args") == "rw fastboot 4"
    devices = sxp.children(vm, "device")
    assert devices[0] == ["device", ["vif"]]
    assert sxp.child_value(sxp.child(devices[1], "vbd"), "uname") == "phy:hda1"


def test_vnet_xend_examples(fixtures_dir):
    text = (fixtures_dir / "xen/docs/vnet-xend.txt").read_text()
    blocks = _top_level_blocks(text)
    vms = [v for _, _, v in blocks if sxp.name(v) == "vm"]
    assert [sxp.child_value(v, "name") for v in vms] == ["dom12", "dom11"]
    assert [sxp.child_value(v, "memory") for v in vms] == ["64", "64"]
    assert sxp.child_value(sxp.child(sxp.child(vms[0], "device"), "vbd"), "uname") == "phy:hda2"
    vif = sxp.child(sxp.children(vms[0], "device")[1], "vif")
    assert sxp.child_value(vif, "bridge") == "vnet97"
    assert sxp.child_value(vif, "mac") == "aa:00:00:11:00:12"
    assert any(sxp.name(v) == "vnet" for _, _, v in blocks)
    for _, block, value in blocks:
        assert sxp.loads(block) == [value]


def test_xendconfig_python_list_prints_and_reads_back(fixtures_dir):
    tree = ast.parse((fixtures_dir / "xen/xend-tests/test_XendConfig.py").read_text())
    objs = [ast.literal_eval(k.value) for k in ast.walk(tree)
            if isinstance(k, ast.keyword) and k.arg == "sxp_obj"]
    assert len(objs) == 1
    vm = objs[0]
    text = sxp.to_string(vm)
    assert text.startswith(
        "(vm (bootloader_args '-q --default_args=\"root=/dev/sda1 ro\""
        " --extra_args=\"quiet\" /images/VM1.sda') (bootloader /usr/bin/pygrub)"
        " (device (vif (mac 00:16:3E:4C:D1:00) (script vif-bridge) (bridge xenbr0)))")
    assert "(uname phy:/images/VM1.sda)" in text and "\n" not in text
    assert sxp.loads(text) == [vm]
    assert [sxp.name(sxp.child0(d)) for d in sxp.children(vm, "device")] == \
        ["vif", "vif", "vbd", "vbd"]
