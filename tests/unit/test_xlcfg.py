"""config/xlcfg.py: the model -> xl.cfg(5) text.

Syntax facts from libxlutil 4.17 (``libxlu_cfg_l.l``: IDENT is
``[a-z][._0-9a-z]*``, a quoted string is ``'([^'\\\\\\n]|\\\\.)*'`` or the
same with ``"``; ``libxlu_cfg.c`` dequoting) and key names from
xl.cfg(5); the conformance tier checks the same texts with the real xl.
"""
import ast
import pathlib
import re

import pytest
from hypothesis import given, strategies as st

from xen_remus_compat import errors
from xen_remus_compat.config.formats import sxpr, xlcfg
from xen_remus_compat.config.model import Domain, HvmSettings, PciDev, Vfb

FIXTURES = pathlib.Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"
SEXPR2XML = FIXTURES / "libvirt" / "sexpr2xml"

LINE = re.compile(r"""^[a-z][._0-9a-z]* = (?:\d+|"(?:[^"\\\n]|\\.)*"|"""
                  r"""\[ (?:'(?:[^'\\\n]|\\.)*'(?:, )?)* \])$""")
#: libxlu_cfg.c xlu__cfgl_dequote: the escapes that work.
DEQUOTE = {'"': '"', "'": "'", "\\": "\\", "a": "\a", "b": "\b", "f": "\f",
           "n": "\n", "r": "\r", "t": "\t", "v": "\v"}


def dequote(token: str) -> str:
    body, out, i = token[1:-1], [], 0
    while i < len(body):
        if body[i] == "\\":
            out.append(DEQUOTE[body[i + 1]])
            i += 2
        else:
            out.append(body[i])
            i += 1
    return "".join(out)


def fixture(name: str) -> Domain:
    path = SEXPR2XML / f"sexpr2xml-{name}.sexpr"
    (dom,) = sxpr.domains_from_text(path.read_text(), source=str(path),
                                    continuations=True)
    return dom


def settings(text: str) -> dict:
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        assert LINE.match(line), f"not xl.cfg syntax: {line!r}"
        key, _, value = line.partition(" = ")
        out[key] = value
    return out


@pytest.mark.parametrize("text", [
    'a "b" \\c', "new\nline\r\ttab", "it's", "", "ünïcødé", "\x01ctl\x7f", "#not a comment"])
@pytest.mark.parametrize("q", ['"', "'"])
def test_quote_round_trips_through_xl_dequoting(text, q):
    token = xlcfg.quote(text, q)
    assert token[0] == token[-1] == q and "\n" not in token
    assert re.fullmatch(rf"{q}(?:[^{q}\\\n]|\\.)*{q}", token, re.S)
    assert dequote(token) == text


@given(st.text(alphabet=st.characters(blacklist_characters="\0",
                                      blacklist_categories=("Cs",))),
       st.sampled_from(['"', "'"]))
def test_quote_is_reversible(text, q):
    assert dequote(xlcfg.quote(text, q)) == text


def test_nul_cannot_be_written():
    with pytest.raises(errors.ConfigError) as info:
        xlcfg.to_xlcfg(Domain(name="n", kernel="/k", cmdline="a\0b"))
    assert "cmdline" in info.value.message and "NUL" in info.value.message


def test_hvm_runtime_dump():
    cfg = xlcfg.to_xlcfg(fixture("fv-autoport"))
    s = settings(cfg.text)
    expected = {"name": '"domu-224"', "uuid": '"e0c172e6-4ad8-7353-0ece-515d2f181365"',
                "type": '"hvm"', "memory": "512", "maxmem": "512", "vcpus": "1",
                "shadow_memory": "5", "cpu_weight": "256", "cap": "0",
                "on_poweroff": '"destroy"', "on_reboot": '"destroy"',
                "on_crash": '"destroy"', "localtime": "1", "boot": '"d"', "pae": "1",
                "usb": "1", "usbdevice": '"tablet"', "serial": '"pty"', "vnc": "1",
                "vncdisplay": "25", "vncunused": "1", "keymap": '"en-us"'}
    for key, value in expected.items():
        assert s.get(key) == value, key
    assert s["disk"].count("'") == 4 and s["vif"].startswith("[ 'mac=00:16:3e:1b:e8:18")
    for key in ("kernel", "firmware", "device_model_override", "maxvcpus"):
        assert key not in s
    keys = dict(cfg.untranslated)
    # xend's default hvmloader is xl's default, ELF notes runtime state: not
    # reported, only listed as omitted
    omitted = dict(cfg.omitted)
    assert omitted["loader"] == "xl's default" and "loader" not in keys
    assert "running domain" in omitted["image.notes"]
    (dm,) = [i for i in cfg.items if i.key == "device_model"]
    assert dm.kind == "rewritten" and "qemu-traditional" in dm.reason and dm.new is None
    assert "# rewritten: device_model = \"/usr/lib/xen/bin/qemu-dm\" -> (not set)" in cfg.text
    assert "xendomains" in keys["on_xend_stop"]
    assert cfg.text.endswith("\n")
    for key, reason in cfg.untranslated:   # each one is also a comment
        assert f"# untranslated: {key} = " in cfg.text and f"({reason})" in cfg.text


def test_pv_with_vfb_bootloader_and_runtime_kernel():
    cfg = xlcfg.to_xlcfg(fixture("curmem"))
    s = settings(cfg.text)
    assert s["bootloader"] == '"/usr/bin/pygrub"'
    assert s["cmdline"] == '"ro root=/dev/VolGroup00/LogVol00 rhgb quiet"'
    assert "kernel" not in s and "ramdisk" not in s   # pygrub's output, not input
    assert s["vfb"] == ("[ 'vnc=1,vncunused=1,display=localhost:10.0,"
                        "xauthority=/root/.Xauthority' ]")
    assert {"kernel", "ramdisk", "cpu_weight"} <= dict(cfg.untranslated).keys()
    assert dict(cfg.omitted)["up_time"] == "state of the running domain"


def test_vcpus_and_maxvcpus():
    s = settings(xlcfg.to_xlcfg(fixture("pv-vcpus")).text)
    assert (s["vcpus"], s["maxvcpus"]) == ("2", "4")


def test_noncontiguous_vcpu_avail_is_reported():
    cfg = xlcfg.to_xlcfg(Domain(name="v", kernel="/k", vcpus=4, vcpu_avail=0b1010))
    s = settings(cfg.text)
    assert (s["vcpus"], s["maxvcpus"]) == ("2", "4")
    assert "vcpu_avail" in dict(cfg.untranslated)


def test_hostile_strings_are_escaped():
    dom = Domain(name='we"ird\\name', kernel="/boot/vm'linuz",
                 cmdline='console=hvc0 init="/bin/sh -c \'echo hi\'"\nsecond\\line',
                 vcpus=1, memory=64)
    s = settings(xlcfg.to_xlcfg(dom).text)
    assert dequote(s["name"]) == 'we"ird\\name'
    assert dequote(s["kernel"]) == "/boot/vm'linuz"
    assert dequote(s["cmdline"]) == dom.cmdline


def test_negative_numbers_are_quoted():
    dom = Domain(name="t", type="hvm", hvm=HvmSettings(rtc_timeoffset=-3600, timer_mode=2))
    s = settings(xlcfg.to_xlcfg(dom).text)
    assert s["rtc_timeoffset"] == '"-3600"'
    assert s["timer_mode"] == '"no_missed_ticks_pending"'


def test_bootloader_args_become_a_list():
    tree = ast.parse((FIXTURES / "xen" / "xend-tests" / "test_XendConfig.py").read_text())
    (value,) = [n.value for n in ast.walk(tree)
                if isinstance(n, ast.keyword) and n.arg == "sxp_obj"]
    dom = sxpr.domain_from_sxpr(ast.literal_eval(value))
    s = settings(xlcfg.to_xlcfg(dom).text)
    assert s["bootloader_args"] == ("[ '-q', '--default_args=root=/dev/sda1 ro', "
                                    "'--extra_args=quiet', '/images/VM1.sda' ]")
    assert s["vif"].count("mac=") == 2 and s["disk"].count("target=") == 2


def test_things_xl_cannot_say_are_reported():
    dom = fixture("fv-parallel-tcp")
    dom.description = "my\nguest"
    cfg = xlcfg.to_xlcfg(dom)
    keys = dict(cfg.untranslated)
    assert "parallel" in keys and "description" in keys
    assert '# untranslated: description = "my\\nguest"' in cfg.text
    assert "parallel" not in settings(cfg.text)


def test_pv_vfb_value_with_comma():
    dom = Domain(name="p", kernel="/k", vfbs=[Vfb(vnc=True, vncpasswd="a,b", keymap="de")])
    cfg = xlcfg.to_xlcfg(dom)
    assert settings(cfg.text)["vfb"] == "[ 'vnc=1,keymap=de' ]"
    assert "vfb[0].vncpasswd" in dict(cfg.untranslated)


def test_pci_list():
    s = settings(xlcfg.to_xlcfg(fixture("pci-devs")).text)
    assert s["pci"] == "[ '0001:0c:1b.2', '0000:01:13.0' ]"
    dom = Domain(name="p", kernel="/k", pci=[PciDev(bus=2, options=[("permissive", "1")])])
    assert settings(xlcfg.to_xlcfg(dom).text)["pci"] == "[ '0000:02:00.0,permissive=1' ]"


def test_remus_disk_uses_the_hotplug_script():
    dom = sxpr.domain_from_sxpr(
        ["domain", ["name", "r"], ["memory", 128],
         ["image", ["linux", ["kernel", "/boot/vmlinuz"]]],
         ["device", ["tap2", ["uname", "tap:remus:backup:9000|aio:/img"],
                     ["dev", "xvda"], ["mode", "w"]]]])
    disk = settings(xlcfg.to_xlcfg(dom).text)["disk"]
    assert "script=block-remus" in disk and "target=remus:backup:9000|aio:/img" in disk
    plain = settings(xlcfg.to_xlcfg(dom, remus="plain").text)["disk"]
    assert "block-remus" not in plain and "target=/img" in plain


def test_domain0_and_unbootable_pv_are_refused():
    path = FIXTURES / "ganeti" / "xen-xl-list-long-4.0.1.txt"
    dom0, guest = sxpr.domains_from_text(path.read_text(), source=str(path))
    with pytest.raises(errors.UntranslatableError, match="Domain-0"):
        xlcfg.to_xlcfg(dom0)
    assert settings(xlcfg.to_xlcfg(guest).text)["kernel"] == '"/boot/vmlinuz-ganetixenu"'
    with pytest.raises(errors.UntranslatableError, match="kernel or a bootloader"):
        xlcfg.to_xlcfg(Domain(name="nokernel", memory=64))


def test_every_fixture_gives_xl_syntax():
    for path in sorted(SEXPR2XML.glob("*.sexpr")):
        lenient = path.stem.split("-", 1)[1] in {"bridge-ipaddr", "net-routed",
                                                 "pv-vfb-new", "pv-vfb-new-vncdisplay"}
        (dom,) = sxpr.domains_from_text(path.read_text(), source=str(path),
                                        continuations=True, lenient=lenient)
        settings(xlcfg.to_xlcfg(dom).text)


def test_huge_untranslated_value_is_abbreviated_in_the_comment():
    from xen_remus_compat.config.model import Domain
    from xen_remus_compat.config.formats.xlcfg import COMMENT_VALUE_MAX, to_xlcfg
    dom = Domain(name="big", kernel="/k", memory=128, maxmem=128, vcpus=1)
    dom.extra.append(("weird_key", ["x" * 100000]))
    out = to_xlcfg(dom)
    line = next(l for l in out.text.splitlines() if "weird_key" in l)
    assert len(line) < COMMENT_VALUE_MAX + 200
    assert "(100000 characters; see the input)" in line
    assert ("weird_key" in dict(out.untranslated))
