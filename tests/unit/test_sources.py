"""Domain sources: lookup rules and every source's failures (design.md
"sources"; legacy-api.md sections 3.2, 11.5, 15; xl-side.md 4.1).

Expected values come from the specs: a domain reference is a domid, a
UUID (with or without dashes, any case) or a name; a Remus backup carries
``<name>--incoming``; a name matching two domains is an error naming both
domids; xl's JSON is an array of ``{"domid", "config"}``; xl's sxp dump is
the schema of tools/xl/xl_sxp.c (legacy-api.md section 15), PV domains
closed early with a stray ``)``; failures reach legacy code as
``VMException('error looking up domain X: <reason>')`` and nothing else.
"""
from __future__ import annotations

import errno
import logging
import os
import socket
import stat

import pytest

from xen_remus_compat import errors, sources
from xen_remus_compat.config.model import Domain
from xen_remus_compat.legacy import vm as legacy_vm
from xen_remus_compat.sources import base, libxl as libxlsrc, sim, xend, xlcli

UUID = "5f2a1c3e-8d4b-4e6f-9a7b-0c1d2e3f4a5b"
MISSING_LIB = "/nonexistent/xrc/libxenlight.so.4.17"


def rec(name, domid, uuid=None):
    return base.DomainRecord(Domain(name=name, domid=domid, uuid=uuid), domid,
                             source="test")


# ---------------------------------------------------------------- references

@pytest.mark.parametrize("ref,expected", [
    (7, ("domid", 7)),
    ("7", ("domid", 7)),
    (" 12 ", ("domid", 12)),
    (0, ("domid", 0)),
    (UUID, ("uuid", UUID)),
    (UUID.replace("-", ""), ("uuid", UUID)),
    (UUID.upper(), ("uuid", UUID)),
    (UUID.replace("-", "").upper(), ("uuid", UUID)),
    ("web01", ("name", "web01")),
    ("web01--incoming", ("name", "web01--incoming")),
    ("Domain-0", ("name", "Domain-0")),
    # 31 hex digits is not a UUID
    (UUID.replace("-", "")[:-1], ("name", UUID.replace("-", "")[:-1])),
])
def test_classify_ref(ref, expected):
    assert base.classify_ref(ref) == expected


@pytest.mark.parametrize("ref", [True, False, "", "   "])
def test_classify_ref_rejects(ref):
    with pytest.raises(errors.DomainLookupError):
        base.classify_ref(ref)


RECORDS = [rec("Domain-0", 0, "00000000-0000-0000-0000-000000000000"),
           rec("web01", 7, UUID),
           rec("db01--incoming", 9, "0b7c9e2a-4d1f-4c3b-8e5a-9f6d7c8b1a20"),
           rec("twin", 3), rec("twin", 5),
           rec("app", 11), rec("app--incoming", 12)]


@pytest.mark.parametrize("ref,domid", [
    (7, 7), ("7", 7), ("web01", 7), (UUID, 7), (UUID.replace("-", ""), 7),
    (UUID.upper(), 7),
    ("0B7C9E2A4D1F4C3B8E5A9F6D7C8B1A20", 9),
    # a backup still called <name>--incoming until failover
    ("db01", 9), ("db01--incoming", 9),
    # the exact name wins over the backup's
    ("app", 11), ("app--incoming", 12),
])
def test_resolve(ref, domid):
    assert base.resolve(ref, RECORDS, "here").domid == domid


def test_resolve_unknown_names_ref_source_and_known_domains():
    with pytest.raises(errors.DomainLookupError) as ei:
        base.resolve("nosuch", RECORDS, "the test host")
    text = str(ei.value)
    assert "'nosuch'" in text and "the test host" in text
    assert "web01(7)" in text and "twin(3)" in text


def test_resolve_unknown_domid_and_uuid():
    with pytest.raises(errors.DomainLookupError, match="no domain 42"):
        base.resolve(42, RECORDS, "here")
    with pytest.raises(errors.DomainLookupError):
        base.resolve("11111111222233334444555555555555", RECORDS, "here")


def test_resolve_ambiguous_name_lists_the_domids():
    with pytest.raises(errors.DomainLookupError) as ei:
        base.resolve("twin", RECORDS, "here")
    text = str(ei.value)
    assert "ambiguous" in text and "domids 3, 5" in text and "2 domains" in text
    # the domid still picks one
    assert base.resolve(5, RECORDS, "here").domain.name == "twin"


def test_open_domain_validates_the_reference_before_any_source():
    # no source is built for an invalid reference (the files source would
    # otherwise complain about its missing paths first)
    with pytest.raises(errors.DomainLookupError, match="empty domain reference"):
        sources.open_domain("", source="files")


def test_unknown_source_name_lists_the_choices():
    with pytest.raises(errors.InputError) as ei:
        sources.get_source("xm")
    assert "'xm'" in str(ei.value)
    for name in sources.SOURCES:
        assert name in str(ei.value)


def test_files_source_needs_a_path():
    with pytest.raises(errors.InputError, match="at least one path"):
        sources.get_source("files")


# -------------------------------------------------------------- files source

TWINS = """\
(domain (domid 3) (name twin) (uuid 11111111-2222-3333-4444-555555555555)
  (memory 256) (maxmem 256) (vcpus 1)
  (device (vbd (dev xvda:disk) (uname phy:/dev/vg/twin-a) (mode w))))
(domain (domid 5) (name twin) (uuid 66666666-7777-8888-9999-aaaaaaaaaaaa)
  (memory 256) (maxmem 256) (vcpus 1)
  (device (vbd (dev xvda:disk) (uname phy:/dev/vg/twin-b) (mode w))))
(domain (domid 8) (name solo--incoming) (uuid 0b7c9e2a-4d1f-4c3b-8e5a-9f6d7c8b1a20)
  (memory 128) (maxmem 128) (vcpus 1)
  (device (vif (mac 00:16:3e:00:00:08) (bridge xenbr0))))
"""


@pytest.fixture
def twins(tmp_path):
    path = tmp_path / "dump.sxp"
    path.write_text(TWINS)
    return path


def test_files_ambiguous_name(twins):
    with pytest.raises(errors.DomainLookupError) as ei:
        sources.open_domain("twin", source="files", paths=[twins])
    assert "domids 3, 5" in str(ei.value) and str(twins) in str(ei.value)


@pytest.mark.parametrize("ref,domid", [
    (3, 3), ("66666666777788889999aaaaaaaaaaaa", 5),
    ("66666666-7777-8888-9999-AAAAAAAAAAAA", 5), ("solo", 8), ("solo--incoming", 8)])
def test_files_lookup(twins, ref, domid):
    r = sources.open_domain(ref, source="files", paths=[twins])
    assert r.domid == domid and r.source == "files" and r.sxpr[0] == "domain"


def test_files_unknown_domain(twins):
    with pytest.raises(errors.DomainLookupError, match=r"no domain 'nosuch' in files .*"
                       r"known: solo--incoming\(8\), twin\(3\), twin\(5\)"):
        sources.open_domain("nosuch", source="files", paths=[twins])


def test_files_missing_path_is_an_input_error_keeping_errno(tmp_path):
    path = tmp_path / "gone.sxp"
    with pytest.raises(errors.InputError) as ei:
        sources.open_domain(3, source="files", paths=[path])
    assert ei.value.source == str(path) and "ENOENT" in str(ei.value)
    assert ei.value.__cause__.errno == errno.ENOENT


def test_files_bad_sxpr_names_file_line_col(tmp_path):
    path = tmp_path / "bad.sxp"
    path.write_text("(domain (domid 3)\n  (name x)))\n")
    with pytest.raises(errors.SxpParseError) as ei:
        sources.open_domain(3, source="files", paths=[path])
    assert (ei.value.source, ei.value.line, ei.value.col) == (str(path), 2, 12)


# ----------------------------------------------------------------- xl source

def fake_xl(tmp_path, stdout="", stderr="", rc=0, name="xl"):
    """An executable that prints what ``xl list -l`` would (or fails)."""
    out = tmp_path / f"{name}.out"
    err = tmp_path / f"{name}.err"
    out.write_text(stdout)
    err.write_text(stderr)
    script = tmp_path / name
    script.write_text(f"#!/bin/sh\ncat '{out}'\ncat '{err}' >&2\nexit {rc}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


JSON_LISTING = """\
[
    {
        "domid": 7,
        "config": {
            "c_info": {"type": "pv", "name": "web01", "domid": 4294967295,
                       "uuid": "%s", "run_hotplug_scripts": "True"},
            "b_info": {"max_vcpus": 4, "avail_vcpus": [0, 1],
                       "max_memkb": 2097152, "target_memkb": 1048576,
                       "kernel": "/boot/vmlinuz-guest", "type.pv": {}},
            "disks": [{"pdev_path": "/dev/drbd0", "vdev": "xvda",
                       "format": "raw", "readwrite": 1}],
            "nics": [{"devid": 0, "mac": "00:16:3e:12:34:56",
                      "bridge": "xenbr0", "nictype": "vif"}],
            "on_reboot": "restart"
        }
    }
]
""" % UUID


def test_xl_json_listing(tmp_path):
    src = xlcli.XlSource(fake_xl(tmp_path, JSON_LISTING))
    r = src.open_domain(UUID.replace("-", ""))
    assert (r.domid, r.domain.name, r.source) == (7, "web01", "xl")
    assert (r.domain.maxmem, r.domain.memory, r.domain.vcpus) == (2048, 1024, 4)
    assert r.libxl_config["c_info"]["name"] == "web01"


def test_find_xl_without_candidates_is_a_clear_environment_problem(monkeypatch, tmp_path):
    monkeypatch.delenv("XL", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(errors.EnvironmentProblem) as ei:
        xlcli.find_xl(candidates=[])
    assert "xl binary was not found" in str(ei.value) and "$XL" in str(ei.value)


def test_find_xl_order(monkeypatch, tmp_path):
    monkeypatch.delenv("XL", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    plain = tmp_path / "not-executable"
    plain.write_text("")
    good = fake_xl(tmp_path, name="xl-4.17")
    assert xlcli.find_xl([str(plain), good]) == good
    monkeypatch.setenv("XL", "/opt/xl")
    assert xlcli.find_xl([good]) == "/opt/xl"


def test_xl_failing_gives_its_last_stderr_line(tmp_path):
    xl = fake_xl(tmp_path, stderr="libxl: error: first\nxl: cannot list domains\n", rc=3)
    with pytest.raises(errors.XenError) as ei:
        xlcli.XlSource(xl).records()
    e = ei.value
    assert e.code == 3
    assert str(e) == f"{xl} list -l failed (exit 3): xl: cannot list domains"


def test_xl_binary_missing_keeps_errno(tmp_path):
    with pytest.raises(errors.XenError) as ei:
        xlcli.XlSource(str(tmp_path / "no-xl")).records()
    assert ei.value.errno == errno.ENOENT and "ENOENT" in str(ei.value)


def test_malformed_json_from_xl_names_line_and_col(tmp_path):
    text = '[\n    {\n        "domid": 1,\n        "config": ]\n'
    xl = fake_xl(tmp_path, text)
    with pytest.raises(errors.ConfigError) as ei:
        xlcli.XlSource(xl).records()
    e = ei.value
    assert (e.line, e.col) == (4, 19)
    assert e.source == f"{xl} list -l" and "malformed JSON from xl" in str(e)


def test_json_entry_that_is_not_an_object(tmp_path):
    with pytest.raises(errors.ConfigError, match="entry 1 is not an object"):
        xlcli.parse_list_output('[{"domid": 1, "config": {"c_info": {"name": "a"}}}, 5]')


def test_empty_xl_listing_means_no_domains(tmp_path):
    with pytest.raises(errors.DomainLookupError, match="no domain 'web01'"):
        xlcli.XlSource(fake_xl(tmp_path, "")).open_domain("web01")


# -- xl's sxp dump (output_format="sxp"), tools/xl/xl_sxp.c --------------------

def _lines(*rows):
    """xl indents with tabs; rows are (depth, text)."""
    return "".join("\t" * d + t + "\n" for d, t in rows)


#: xl-side.md 4.4's web01 as xl list -l prints it on a real host with
#: output_format="sxp" (domain 7): PV, so ``(domain`` closes after the image,
#: the devices follow at top level and a stray ``)`` ends the domain.
WEB01_SXP = _lines(
    (0, "(domain"), (1, "(domid 7)"), (1, "(create_info)"), (1, "(hvm 0)"),
    (1, "(hap <default>)"), (1, "(oos <default>)"), (1, "(ssidref 0)"),
    (1, "(name web01)"), (1, f"(uuid {UUID})"), (1, "(xsdata (null))"),
    (1, "(platformdata (null))"), (1, "(build_info)"), (1, "(max_vcpus 4)"),
    (1, "(max_grant_frames -1)"), (1, "(max_maptrack_frames -1)"),
    (1, "(tsc_mode default)"), (1, "(max_memkb 2097152)"),
    (1, "(target_memkb 1048576)"), (1, "(nomigrate <default>)"),
    (1, "(image"), (2, "(linux 0)"), (3, "(kernel /boot/vmlinuz-guest)"),
    (3, "(cmdline console=hvc0 root=/dev/xvda1 ro)"),
    (3, "(ramdisk /boot/initrd-guest)"), (3, "(e820_host <default>)"), (2, ")"),
    (1, ")"),
    (1, "(device"), (2, "(tap"), (3, "(backend_domid 0)"), (3, "(frontend_domid 7)"),
    (3, "(physpath /dev/drbd0)"), (3, "(phystype 0)"), (3, "(virtpath xvda)"),
    (3, "(unpluggable 0)"), (3, "(readwrite 1)"), (3, "(is_cdrom 0)"), (2, ")"), (1, ")"),
    (1, "(device"), (2, "(tap"), (3, "(backend_domid 0)"), (3, "(frontend_domid 7)"),
    (3, "(physpath /dev/drbd1)"), (3, "(phystype 0)"), (3, "(virtpath xvdb)"),
    (3, "(unpluggable 0)"), (3, "(readwrite 1)"), (3, "(is_cdrom 0)"), (2, ")"), (1, ")"),
    (1, "(device"), (2, "(vif"), (3, "(backend_domid 0)"), (3, "(frontend_domid 7)"),
    (3, "(devid 0)"), (3, "(mtu 0)"), (3, "(model (null))"), (3, "(mac 00163e123456)"),
    (2, ")"), (1, ")"),
    (1, "(device"), (2, "(vif"), (3, "(vifname web01-eth1)"), (3, "(backend_domid 0)"),
    (3, "(frontend_domid 7)"), (3, "(devid 1)"), (3, "(mtu 0)"), (3, "(model (null))"),
    (3, "(mac 00163e123457)"), (2, ")"), (1, ")"),
    (0, ")"))

#: xl-side.md 4.5's win01 (domain 9): HVM, balanced.
WIN01_UUID = "0b7c9e2a-4d1f-4c3b-8e5a-9f6d7c8b1a20"
WIN01_SXP = _lines(
    (0, "(domain"), (1, "(domid 9)"), (1, "(create_info)"), (1, "(hvm 1)"),
    (1, "(hap <default>)"), (1, "(oos <default>)"), (1, "(ssidref 0)"),
    (1, "(name win01)"), (1, f"(uuid {WIN01_UUID})"), (1, "(xsdata (null))"),
    (1, "(platformdata (null))"), (1, "(build_info)"), (1, "(max_vcpus 2)"),
    (1, "(max_grant_frames -1)"), (1, "(max_maptrack_frames -1)"),
    (1, "(tsc_mode default)"), (1, "(max_memkb 2097152)"),
    (1, "(target_memkb 2097152)"), (1, "(nomigrate <default>)"),
    (1, "(image"), (2, "(hvm"), (3, "(firmware (null))"), (3, "(video_memkb 8192)"),
    (3, "(shadow_memkb -1)"), (3, "(pae <default>)"), (3, "(apic <default>)"),
    (3, "(acpi <default>)"), (3, "(nx <default>)"), (3, "(viridian <default>)"),
    (3, "(hpet <default>)"), (3, "(vpt_align <default>)"), (3, "(timer_mode unknown)"),
    (3, "(nestedhvm <default>)"), (3, "(stdvga False)"), (3, "(vnc True)"),
    (3, "(vnclisten 127.0.0.1)"), (3, "(vncdisplay 0)"), (3, "(vncunused <default>)"),
    (3, "(keymap (null))"), (3, "(sdl <default>)"), (3, "(opengl <default>)"),
    (3, "(nographic <default>)"), (3, "(spice <default>)"), (3, "(spiceport 0)"),
    (3, "(spicetls_port 0)"), (3, "(spicehost (null))"),
    (3, "(spicedisable_ticketing <default>)"), (3, "(spiceagent_mouse <default>)"),
    (3, "(device_model default)"), (3, "(gfx_passthru <default>)"),
    (3, "(serial pty)"), (3, "(boot dc)"), (3, "(usb <default>)"),
    (3, "(usbdevice (null))"), (3, "(vkb_device <default>)"), (2, ")"), (1, ")"),
    (1, "(device"), (2, "(tap"), (3, "(backend_domid 0)"), (3, "(frontend_domid 9)"),
    (3, "(physpath /dev/vg0/win01-disk)"), (3, "(phystype 0)"), (3, "(virtpath xvda)"),
    (3, "(unpluggable 0)"), (3, "(readwrite 1)"), (3, "(is_cdrom 0)"), (2, ")"), (1, ")"),
    (1, "(device"), (2, "(tap"), (3, "(backend_domid 0)"), (3, "(frontend_domid 9)"),
    (3, "(physpath /srv/iso/install.iso)"), (3, "(phystype 0)"), (3, "(virtpath hdc)"),
    (3, "(unpluggable 1)"), (3, "(readwrite 0)"), (3, "(is_cdrom 1)"), (2, ")"), (1, ")"),
    (1, "(device"), (2, "(vif"), (3, "(backend_domid 0)"), (3, "(frontend_domid 9)"),
    (3, "(devid 0)"), (3, "(mtu 0)"), (3, "(model e1000)"), (3, "(mac 00163e5a6b7c)"),
    (2, ")"), (1, ")"),
    (0, ")"))


def test_xl_sxp_dump_pv_and_hvm():
    recs = xlcli.parse_list_output(WEB01_SXP + WIN01_SXP + WEB01_SXP.replace(
        "(domid 7)", "(domid 8)").replace("(name web01)", "(name web02)"))
    assert [(r.domid, r.domain.name, r.domain.type) for r in recs] == \
        [(7, "web01", "pv"), (9, "win01", "hvm"), (8, "web02", "pv")]
    web = recs[0].domain
    assert web.uuid == UUID
    assert (web.maxmem, web.memory, web.vcpus) == (2048, 1024, 4)
    assert (web.kernel, web.ramdisk) == ("/boot/vmlinuz-guest", "/boot/initrd-guest")
    assert web.cmdline == "console=hvc0 root=/dev/xvda1 ro"
    assert [(d.target, d.vdev, d.readwrite, d.is_cdrom) for d in web.disks] == \
        [("/dev/drbd0", "xvda", True, False), ("/dev/drbd1", "xvdb", True, False)]
    assert [(n.mac, n.devid, n.vifname) for n in web.nics] == \
        [("00:16:3e:12:34:56", 0, None), ("00:16:3e:12:34:57", 1, "web01-eth1")]
    win = recs[1].domain
    assert (win.maxmem, win.memory, win.vcpus, win.uuid) == (2048, 2048, 2, WIN01_UUID)
    assert (win.hvm.boot, win.hvm.serial, win.hvm.videoram) == ("dc", ["pty"], 8)
    assert [(d.target, d.vdev, d.readwrite, d.is_cdrom, d.removable) for d in win.disks] == \
        [("/dev/vg0/win01-disk", "xvda", True, False, False),
         ("/srv/iso/install.iso", "hdc", False, True, True)]
    assert [(n.mac, n.model) for n in win.nics] == [("00:16:3e:5a:6b:7c", "e1000")]
    # the PV devices went back into their domain: the tree is balanced
    assert sum(1 for e in recs[0].sxpr if e[0] == "device") == 4


def test_xl_sxp_dump_through_the_legacy_view(tmp_path, monkeypatch):
    """legacy-api.md 3.2/11.5: str(VM) and vif names from the xl sxp dump."""
    monkeypatch.setattr(legacy_vm, "SOURCE", "xl")
    monkeypatch.setattr(legacy_vm, "SOURCE_OPTIONS",
                        {"xl": fake_xl(tmp_path, WEB01_SXP + WIN01_SXP)})
    v = legacy_vm.VM("web01")
    assert str(v) == ("VM 7 (web01), vifs: [00:16:3e:12:34:56, 00:16:3e:12:34:57], "
                      "disks: [phy:/dev/drbd0,xvda,w, phy:/dev/drbd1,xvdb,w]")
    assert [x.dev for x in v.vifs] == ["vif7.0", "web01-eth1"]
    w = legacy_vm.VM(9)
    assert str(w) == ("VM 9 (win01), vifs: [00:16:3e:5a:6b:7c], "
                      "disks: [phy:/dev/vg0/win01-disk,xvda,w, "
                      "file:/srv/iso/install.iso,hdc:cdrom,r]")


def test_xl_sxp_values_are_read_verbatim():
    # unquoted %s output: quotes, parentheses and repeated spaces survive
    text = WEB01_SXP.replace(
        "(cmdline console=hvc0 root=/dev/xvda1 ro)",
        "(cmdline root=/dev/xvda1  init=\"/bin/sh -c 'echo (hi)'\")")
    (r,) = xlcli.parse_list_output(text)
    assert r.domain.cmdline == "root=/dev/xvda1  init=\"/bin/sh -c 'echo (hi)'\""


def test_xl_sxp_dry_run_domid_and_unknown_uuid():
    # xl -N create prints (domid -1) and (uuid <unknown>)
    (r,) = xlcli.parse_list_output(WEB01_SXP.replace("(domid 7)", "(domid -1)")
                                   .replace(f"(uuid {UUID})", "(uuid <unknown>)"))
    assert r.domid is None and r.domain.uuid is None and r.domain.name == "web01"


@pytest.mark.parametrize("text,line,message", [
    # truncated: the HVM domain never closes
    (WIN01_SXP.rsplit(")", 1)[0], 1, "(domain not closed"),
    # a value with a line break
    (WEB01_SXP.replace("(cmdline console=hvc0 root=/dev/xvda1 ro)",
                       "(cmdline console=hvc0\nroot=/dev/xvda1 ro)"), 23,
     "not a line of xl's sxp output"),
    # something else at top level
    ("(vm\n\t(name x)\n)\n", 1, "unexpected (vm outside a (domain ...)"),
    (")\n", 1, "')' with no matching '('"),
])
def test_xl_sxp_structure_errors_name_the_line(text, line, message):
    with pytest.raises(errors.ConfigError) as ei:
        xlcli.parse_list_output(text, source="xl list -l")
    assert ei.value.line == line and message in str(ei.value)
    assert str(ei.value).startswith(f"xl list -l:{line}:")


def test_xl_sxp_bad_value_names_the_element():
    with pytest.raises(errors.ConfigError) as ei:
        xlcli.parse_list_output(WEB01_SXP.replace("(mac 00163e123457)", "(mac 00163e12345)"))
    assert "domain web01/device/vif/mac" in str(ei.value)
    assert "12 hex digits" in str(ei.value)


def test_xl_sxp_pci_and_vfb():
    text = WEB01_SXP.replace("(domid 7)", "(domid 4)")[:-2] + _lines(
        (1, "(device"), (2, "(pci"), (3, "(pci dev 0000:01:1a.1@40)"),
        (3, "(opts msitranslate 1 power_mgmt 0)"), (2, ")"), (1, ")"),
        (1, "(device"), (2, "(vfb"), (3, "(backend_domid 0)"), (3, "(frontend_domid 4)"),
        (3, "(devid 0)"), (3, "(vnc True)"), (3, "(vnclisten 0.0.0.0)"),
        (3, "(vncdisplay 3)"), (3, "(vncunused False)"), (3, "(keymap ja)"),
        (3, "(sdl <default>)"), (3, "(opengl <default>)"), (3, "(display (null))"),
        (3, "(xauthority (null))"), (2, ")"), (1, ")"), (0, ")"))
    (r,) = xlcli.parse_list_output(text)
    (pci,) = r.domain.pci
    assert (pci.domain, pci.bus, pci.slot, pci.func) == (0, 1, 0x1a, 1)
    assert ("msitranslate", "1") in pci.options and ("vslot", "0x08") in pci.options
    (vfb,) = r.domain.vfbs
    assert (vfb.vnc, vfb.vnclisten, vfb.vncdisplay, vfb.vncunused, vfb.keymap) == \
        (True, "0.0.0.0", 3, False, "ja")


# --------------------------------------------------------------- xend source

def test_xend_socket_missing_keeps_errno(tmp_path):
    path = tmp_path / "xmlrpc.sock"
    with pytest.raises(errors.XenError) as ei:
        xend.XendSource("httpu://" + str(path)).open_domain("web01")
    assert ei.value.errno == errno.ENOENT
    assert f"cannot reach xend at {path}" in str(ei.value)


def test_xend_socket_refusing_keeps_errno(tmp_path):
    path = tmp_path / "xmlrpc.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))               # bound, never listening: connect() refused
    try:
        with pytest.raises(errors.XenError) as ei:
            xend.XendSource("httpu://" + str(path), timeout=5).open_domain(7)
    finally:
        s.close()
    assert ei.value.errno == errno.ECONNREFUSED and "ECONNREFUSED" in str(ei.value)


# -------------------------------------------------------------- libxl source

def test_libxl_missing_library_is_an_environment_problem():
    with pytest.raises(errors.EnvironmentProblem) as ei:
        libxlsrc.Context(MISSING_LIB)
    text = str(ei.value)
    assert MISSING_LIB in text and "libxenlight not available" in text
    assert "'xl' source" in text
    with pytest.raises(errors.EnvironmentProblem):
        libxlsrc.LibxlSource(MISSING_LIB).open_domain("web01")


class FakeCtx:
    """The Context calls LibxlSource makes, for a host with these domains
    (libxl_dominfo JSON omits domid 0, its default)."""

    def __init__(self, domains):
        self.domains = domains      # (domid, name, uuid)

    def list_domains(self):
        return [({"domid": d} if d else {}) | {"uuid": u} for d, _, u in self.domains]

    def domid_to_name(self, domid):
        return next(n for d, n, _ in self.domains if d == domid)

    def domain_info(self, domid):
        return {"domid": domid, "running": True}

    def retrieve_domain_configuration(self, domid):
        d, n, u = next(x for x in self.domains if x[0] == domid)
        return {"c_info": {"type": "pv", "name": n, "uuid": u},
                "b_info": {"max_memkb": 262144, "target_memkb": 262144}}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


HOST = [(0, "Domain-0", "00000000-0000-0000-0000-000000000000"),
        (3, "twin", "11111111-2222-3333-4444-555555555555"),
        (5, "twin", "66666666-7777-8888-9999-aaaaaaaaaaaa"),
        (7, "web01--incoming", UUID)]


@pytest.fixture
def fake_libxl(monkeypatch):
    monkeypatch.setattr(libxlsrc, "Context", lambda library=None: FakeCtx(HOST))


@pytest.mark.parametrize("ref,domid", [
    ("web01", 7), ("web01--incoming", 7), (UUID.replace("-", ""), 7), (3, 3),
    ("66666666-7777-8888-9999-AAAAAAAAAAAA", 5)])
def test_libxl_source_lookup(fake_libxl, ref, domid):
    r = libxlsrc.LibxlSource().open_domain(ref)
    assert r.domid == domid and r.source == "libxl" and r.state == "r-----"
    assert r.domain.maxmem == 256


def test_libxl_source_ambiguous_and_unknown_names(fake_libxl):
    with pytest.raises(errors.DomainLookupError, match="domids 3, 5"):
        libxlsrc.LibxlSource().open_domain("twin")
    with pytest.raises(errors.DomainLookupError, match="no domain 'nosuch' in libxl"):
        libxlsrc.LibxlSource().open_domain("nosuch")


# ---------------------------------------------------------------- auto order

def test_auto_falls_back_to_xl_when_libxl_is_absent(monkeypatch, tmp_path, caplog):
    monkeypatch.delenv("XM_SERVER", raising=False)
    monkeypatch.setenv("XL", "/opt/xrc/xl")
    with caplog.at_level(logging.DEBUG, logger="xen_remus_compat"):
        src = sources.get_source("auto", library=MISSING_LIB,
                                 url="httpu://" + str(tmp_path / "no-xend.sock"))
    assert isinstance(src, xlcli.XlSource) and src.xl == "/opt/xrc/xl"
    assert any("libxl unusable" in r.getMessage() and MISSING_LIB in r.getMessage()
               for r in caplog.records)


def test_auto_without_libxl_or_xl_says_so(monkeypatch, tmp_path):
    monkeypatch.delenv("XM_SERVER", raising=False)
    monkeypatch.delenv("XL", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(xlcli.glob, "glob", lambda pattern: [])
    with pytest.raises(errors.EnvironmentProblem, match="xl binary was not found"):
        sources.get_source("auto", library=MISSING_LIB,
                           url="httpu://" + str(tmp_path / "no-xend.sock"))


def test_auto_prefers_a_present_xend_socket(monkeypatch, tmp_path):
    sock = tmp_path / "xmlrpc.sock"
    sock.write_text("")
    monkeypatch.delenv("XM_SERVER", raising=False)
    src = sources.get_source("auto", library=MISSING_LIB, url="httpu://" + str(sock))
    assert isinstance(src, xend.XendSource) and src.url == "httpu://" + str(sock)


# ---------------------------------------------------------------- sim source

def test_sim_source(monkeypatch):
    for k in list(os.environ):
        if k.startswith("SIMXEN_"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("SIMXEN_NAME", "simweb")
    monkeypatch.setenv("SIMXEN_DOMID", "6")
    monkeypatch.setenv(sim.DISKS_ENV, "phy:/dev/vg/simweb,xvda,w")
    r = sources.open_domain("simweb", source="sim")
    assert (r.domid, r.source, r.domain.name) == (6, "sim", "simweb")
    with pytest.raises(errors.DomainLookupError, match="simulated Xen"):
        sources.open_domain("other", source="sim")


# ------------------------------------------- failures through the legacy facade

def _use(monkeypatch, source, **options):
    monkeypatch.setattr(legacy_vm, "SOURCE", source)
    monkeypatch.setattr(legacy_vm, "SOURCE_OPTIONS", options)


def _case_files_unknown(mp, tmp):
    (tmp / "d.sxp").write_text(TWINS)
    _use(mp, "files", paths=[tmp / "d.sxp"])
    return "nosuch", "no domain 'nosuch' in files"


def _case_files_ambiguous(mp, tmp):
    (tmp / "d.sxp").write_text(TWINS)
    _use(mp, "files", paths=[tmp / "d.sxp"])
    return "twin", "ambiguous in files"


def _case_files_missing(mp, tmp):
    _use(mp, "files", paths=[tmp / "gone.sxp"])
    return 3, "cannot read recorded domain file: No such file or directory (ENOENT)"


def _case_libxl_absent(mp, tmp):
    _use(mp, "libxl", library=MISSING_LIB)
    return "web01", "libxenlight not available"


def _case_xl_missing(mp, tmp):
    mp.delenv("XL", raising=False)
    mp.setenv("PATH", str(tmp))
    mp.setattr(xlcli.glob, "glob", lambda pattern: [])
    _use(mp, "xl")
    return "web01", "the xl binary was not found"


def _case_xl_failing(mp, tmp):
    _use(mp, "xl", xl=fake_xl(tmp, stderr="xl: something broke\n", rc=1))
    return "web01", "list -l failed (exit 1): xl: something broke"


def _case_xl_bad_json(mp, tmp):
    _use(mp, "xl", xl=fake_xl(tmp, '[{"domid": 1,'))
    return "web01", "list -l:1:14: malformed JSON from xl"


def _case_xl_bad_sxp(mp, tmp):
    _use(mp, "xl", xl=fake_xl(tmp, WIN01_SXP.rsplit(")", 1)[0]))
    return 9, "(domain not closed"


def _case_xl_unknown(mp, tmp):
    _use(mp, "xl", xl=fake_xl(tmp, JSON_LISTING))
    return "db01", "no domain 'db01' in xl (known: web01(7))"


def _case_xend_refusing(mp, tmp):
    _use(mp, "xend", url="httpu://" + str(tmp / "no.sock"))
    return 7, "cannot reach xend at"


def _case_sim_bad_env(mp, tmp):
    mp.setenv("SIMXEN_DOMID", "seven")
    _use(mp, "sim")
    return "simguest", "invalid SIMXEN_DOMID='seven'"


FACADE_CASES = [_case_files_unknown, _case_files_ambiguous, _case_files_missing,
                _case_libxl_absent, _case_xl_missing, _case_xl_failing,
                _case_xl_bad_json, _case_xl_bad_sxp, _case_xl_unknown,
                _case_xend_refusing, _case_sim_bad_env]


@pytest.mark.parametrize("case", FACADE_CASES, ids=[c.__name__[6:] for c in FACADE_CASES])
def test_failures_reach_legacy_code_as_vmexception(monkeypatch, tmp_path, case):
    ref, reason = case(monkeypatch, tmp_path)
    with pytest.raises(legacy_vm.VMException) as ei:
        legacy_vm.VM(ref)
    text = str(ei.value)
    assert text.startswith(f"error looking up domain {ref}: "), text
    assert reason in text, text
    # the cause is kept for whoever wants it, and it is ours, not a crash
    assert isinstance(ei.value.__cause__, errors.CompatError)


def test_facade_finds_backup_and_dashless_uuid(monkeypatch, tmp_path):
    (tmp_path / "d.sxp").write_text(TWINS)
    _use(monkeypatch, "files", paths=[tmp_path / "d.sxp"])
    assert legacy_vm.VM("solo").name == "solo--incoming"
    v = legacy_vm.VM("0b7c9e2a4d1f4c3b8e5a9f6d7c8b1a20")
    assert (v.domid, [x.mac for x in v.vifs]) == (8, ["00:16:3e:00:00:08"])


def test_no_hypervisor_hint_only_without_privcmd():
    from xen_remus_compat.sources import no_hypervisor_hint
    assert no_hypervisor_hint(exists=lambda p: p == "/dev/xen/privcmd") == ""
    hint = no_hypervisor_hint(exists=lambda p: False)
    assert "not running a Xen hypervisor" in hint and "--sim" in hint
