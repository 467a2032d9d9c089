"""``xen_remus_compat/sources/libxl.py`` against Debian's libxenlight 4.17.

(a) The binding's only ABI facts (two structure sizes, the logger layout,
    the error and enum numbers it tabulates) are checked against
    ``/usr/include`` by compiling ``_Static_assert``s with gcc.
(b) A libxl context is allocated for real, without a hypervisor, in a fresh
    interpreter under the LD_PRELOAD stub ``build/libxlstub.so``; the
    stub's test-only ``XLSTUB_ALLOW=<program name>`` lets that one process
    have the dummy handles, and nothing it spawns (deny-by-default kept).
(c) Every libxl JSON we have goes through the real
    ``libxl_domain_config_from_json`` + ``_to_json``: the four recorded
    fixtures (xl-json/) and our ``libxl_json.domain_to_libxl`` for every
    sexpr2xml fixture and the ganeti guest.  libxl must accept each and give
    back the same fields; what it adds or drops is listed per field below.
(d) Errors: malformed JSON is a XenError with libxl's code and text (cause
    first); a missing library is an EnvironmentProblem.
(f) xl's own sxp dump (``output_format="sxp"``, legacy-api.md section 15),
    printed by the real xl 4.17, is read by ``sources.xlcli`` into the same
    domain as xl's JSON for the same configuration.

Calls that need a live hypervisor are in tests/xenhost/.
"""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import FIXTURES, tier_unavailable
from tests.support import realxl
from xen_remus_compat import errors
from xen_remus_compat.config.formats import libxl_json, sxpr, xlcfg
from xen_remus_compat.sources import libxl as binding, xlcli

ROOT = pathlib.Path(__file__).resolve().parents[2]
SEXPR2XML = FIXTURES / "libvirt" / "sexpr2xml"
XL_JSON = FIXTURES / "xl-json"
GANETI = FIXTURES / "ganeti" / "xen-xl-list-long-4.0.1.txt"
UNBALANCED = {"bridge-ipaddr", "net-routed", "pv-vfb-new", "pv-vfb-new-vncdisplay"}
LIBXL_H = pathlib.Path("/usr/include/libxl.h")
TIMEOUT = 60


# ---------------------------------------------------------------------------
# (a) ABI facts, compiled against Debian's headers
# ---------------------------------------------------------------------------

def _abi_source() -> str:
    lines = ["#include <stddef.h>", "#include <libxl.h>", "#include <xentoollog.h>",
             f"_Static_assert(sizeof(libxl_domain_config) == {binding.SIZEOF_DOMAIN_CONFIG},"
             ' "SIZEOF_DOMAIN_CONFIG");',
             f"_Static_assert(sizeof(libxl_dominfo) == {binding.SIZEOF_DOMINFO},"
             ' "SIZEOF_DOMINFO");',
             f'_Static_assert(LIBXL_VERSION == {binding.LIBXL_VERSION}, "LIBXL_VERSION");']
    # _Logger mirrors xentoollog_logger: three function pointers, in order
    for i, field in enumerate(name for name, _ in binding._Logger._fields_):
        lines.append(f"_Static_assert(offsetof(xentoollog_logger, {field}) == "
                     f"{i} * sizeof(void *), \"logger.{field}\");")
    lines.append("_Static_assert(sizeof(xentoollog_logger) == 3 * sizeof(void *), "
                 '"logger size");')
    for code, name in binding.LIBXL_ERRORS.items():
        lines.append(f'_Static_assert({name} == {code}, "{name}");')
    levels = {"XTL_DEBUG": 1, "XTL_WARN": 7, "XTL_ERROR": 8, "XTL_CRITICAL": 9}
    for name, value in levels.items():
        lines.append(f'_Static_assert({name} == {value}, "{name}");')
    for value, name in enumerate(xlcli._DISK_BACKENDS):
        lines.append(f"_Static_assert(LIBXL_DISK_BACKEND_{name.upper()} == {value}, "
                     f'"disk backend {name}");')
    return "\n".join(lines) + "\n"


def test_abi_constants_match_the_headers(tmp_path):
    if not LIBXL_H.is_file():
        tier_unavailable("conformance", f"{LIBXL_H} missing (install libxen-dev)")
    src = tmp_path / "abi.c"
    src.write_text(_abi_source())
    try:
        proc = subprocess.run(["gcc", "-std=c11", "-fsyntax-only", str(src)],
                              capture_output=True, text=True, timeout=TIMEOUT)
    except FileNotFoundError:
        tier_unavailable("conformance", "gcc not installed: cannot check the libxl ABI")
    assert proc.returncode == 0, proc.stderr
    # the binding's tables agree with what the assertions were built from
    assert binding.LIBXL_ERRORS[-21] == "ERROR_DOMAIN_NOTFOUND"
    assert binding._XTL_LEVELS[7] == 30 and binding._XTL_LEVELS[8] == 40   # WARNING, ERROR


def test_abi_check_can_fail(tmp_path):
    """The same compile refuses a wrong size: the check is not vacuous."""
    if not LIBXL_H.is_file():
        tier_unavailable("conformance", f"{LIBXL_H} missing (install libxen-dev)")
    src = tmp_path / "wrong.c"
    src.write_text("#include <libxl.h>\n_Static_assert(sizeof(libxl_dominfo) == "
                   f"{binding.SIZEOF_DOMINFO + 8}, \"wrong\");\n")
    try:
        proc = subprocess.run(["gcc", "-std=c11", "-fsyntax-only", str(src)],
                              capture_output=True, text=True, timeout=TIMEOUT)
    except FileNotFoundError:
        tier_unavailable("conformance", "gcc not installed: cannot check the libxl ABI")
    assert proc.returncode != 0 and "static assertion failed" in proc.stderr


# ---------------------------------------------------------------------------
# (b) a context in a fresh interpreter under the stub
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def stub():
    ok, reason = realxl.available()     # builds build/libxlstub.so when missing
    if not ok:
        tier_unavailable("conformance", reason)
    return str(realxl.DEFAULT.stub)


def _env(stub: str, allow: str | None) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("LD_PRELOAD", "XLSTUB_ALLOW", "XLSTUB_TRACE")}
    env.update(LD_PRELOAD=stub, LC_ALL="C", PYTHONPATH=str(ROOT))
    if allow is not None:
        env["XLSTUB_ALLOW"] = allow
    return env


#: program_invocation_short_name of the child: basename of its argv[0]
PROGRAM = os.path.basename(sys.executable)


def run_child(stub: str, code: str, stdin: str = "", allow: str | None = PROGRAM) -> dict:
    """Run *code* in a fresh interpreter with the stub preloaded; it prints
    one JSON document."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], input=stdin,
                          capture_output=True, text=True, timeout=TIMEOUT,
                          env=_env(stub, allow), cwd=str(ROOT))
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


OPEN_CONTEXT = """
    import json, os
    from xen_remus_compat import errors
    from xen_remus_compat.sources import libxl
    try:
        ctx = libxl.Context()
    except errors.XenError as e:
        print(json.dumps({"error": str(e), "code": e.code, "errno": e.errno}))
    else:
        opened = bool(ctx.ctx)
        ctx.close()
        print(json.dumps({"opened": opened, "closed": ctx.ctx is None,
                          "allow_left": "XLSTUB_ALLOW" in os.environ}))
"""


def test_context_allocates_under_the_stub(stub):
    got = run_child(stub, OPEN_CONTEXT)
    assert got == {"opened": True, "closed": True, "allow_left": False}


@pytest.mark.parametrize("allow", [None, "xl-not-me", ""])
def test_stub_refuses_other_processes(stub, allow):
    """Deny-by-default: without the allowance for this program name, the
    handle open fails as on a host without Xen, and libxl says so."""
    got = run_child(stub, OPEN_CONTEXT, allow=allow)
    assert got["code"] == -3 and got["errno"] == 38                 # ENOSYS
    assert "libxl_ctx_alloc" in got["error"] and "cannot open libxc handle" in got["error"]


def test_allowance_is_not_inherited(stub):
    """The allowed process's own children (same name, same LD_PRELOAD) are
    refused: the stub took XLSTUB_ALLOW out of the environment."""
    code = '''
        import json, os, subprocess, sys
        from xen_remus_compat.sources import libxl
        libxl.Context().close()
        child = subprocess.run([sys.executable, "-c", %r], capture_output=True,
                               text=True, timeout=60)
        print(json.dumps({"preload": os.environ.get("LD_PRELOAD"),
                          "child": child.stdout.strip(), "rc": child.returncode}))
    ''' % textwrap.dedent(OPEN_CONTEXT)
    got = run_child(stub, code)
    assert got["preload"] == stub and got["rc"] == 0
    child = json.loads(got["child"])
    assert child["code"] == -3 and "cannot open libxc handle" in child["error"]


# ---------------------------------------------------------------------------
# (c) libxl's own reading of every JSON we have
# ---------------------------------------------------------------------------

#: Struct-typed fields libxl's generator always prints, as ``{}`` when
#: empty: present in its output although absent from ours.
ADDED_EMPTY = {
    "b_info.sched_params",          # libxl_domain_sched_params
    "b_info.arch_arm",              # libxl_domain_build_info.arch_arm
    "b_info.arch_x86",              # .arch_x86 (msr_relaxed default omitted)
    "b_info.type.hvm.vga",          # libxl_vga_interface_info
    "b_info.type.hvm.vnc",          # libxl_vnc_info
    "b_info.type.hvm.sdl",          # libxl_sdl_info
    "b_info.type.hvm.spice",        # libxl_spice_info
    "b_info.type.hvm.rdm",          # libxl_rdm_reserve
    "vfbs[].sdl",                   # libxl_device_vfb.sdl
}
#: Values equal to their IDL default: libxl parses them and omits them.
DROPPED_DEFAULTS = {
    "vfbs[].devid": -1,             # libxl_devid default
    "vkbs[].devid": -1,
    "pcidevs[].rdm_policy": "invalid",   # libxl_rdm_reserve_policy default
}


def _prune(value, path, rule):
    if isinstance(value, dict):
        out = {}
        for key, sub in value.items():
            p = f"{path}.{key}" if path else key
            if not rule(p, sub):
                out[key] = _prune(sub, p, rule)
        return out
    if isinstance(value, list):
        return [_prune(x, path + "[]", rule) for x in value]
    return value


def normalise_libxl(out: dict) -> dict:
    return _prune(out, "", lambda p, v: p in ADDED_EMPTY and v == {})


def normalise_ours(cfg: dict) -> dict:
    """Ours without the defaults libxl drops; an empty struct we (or
    libvirt) wrote is as insignificant as one libxl adds."""
    return normalise_libxl(_prune(cfg, "", lambda p, v: p in DROPPED_DEFAULTS
                                  and v == DROPPED_DEFAULTS[p]))


def _ours():
    out = []
    for path in sorted(SEXPR2XML.glob("*.sexpr")):
        name = path.stem[len("sexpr2xml-"):]
        (dom,) = sxpr.domains_from_text(path.read_text(), source=str(path),
                                        continuations=True, lenient=name in UNBALANCED)
        out.append((f"ours:{name}", libxl_json.domain_to_libxl(dom)))
    guests = [d for d in sxpr.domains_from_text(GANETI.read_text(), source=str(GANETI))
              if d.domid != 0]
    out += [(f"ours:ganeti-{d.name}", libxl_json.domain_to_libxl(d)) for d in guests]
    return out


def _recorded():
    return [(f"fixture:{p.name}", json.loads(p.read_text()))
            for p in sorted(XL_JSON.glob("*/*.json"))]


CASES = _recorded() + _ours()

ROUNDTRIP_CHILD = """
    import json, sys
    from xen_remus_compat import errors
    from xen_remus_compat.sources import libxl
    jobs = json.load(sys.stdin)
    out = {}
    with libxl.Context() as ctx:
        for key, text in jobs.items():
            try:
                once = ctx.config_roundtrip(text)
                out[key] = {"once": json.loads(once),
                            "twice": json.loads(ctx.config_roundtrip(once))}
            except errors.CompatError as e:
                out[key] = {"error": str(e), "type": type(e).__name__,
                            "code": getattr(e, "code", None)}
        for call, args in (("list_domains", []), ("domain_info", [1]),
                           ("retrieve_domain_configuration", [1])):
            try:
                getattr(ctx, call)(*args)
                out[call] = {"ok": True}
            except errors.CompatError as e:
                out[call] = {"error": str(e), "type": type(e).__name__,
                             "code": e.code, "errno": e.errno}
    print(json.dumps(out))
"""

#: (d) JSON libxl must refuse, in this order in one context: the second
#: error must not repeat the first one's messages.
BAD = {
    "bad:truncated": '{"c_info": {"type": "pv", "name": "x"',
    "bad:enum": '{"c_info": {"type": "bogus"}}',
    "bad:empty": "",
}


@pytest.fixture(scope="module")
def libxl_results(stub):
    jobs = {key: json.dumps(cfg) for key, cfg in CASES}
    jobs.update(BAD)
    return run_child(stub, ROUNDTRIP_CHILD, stdin=json.dumps(jobs))


def test_corpus_size():
    assert len(_recorded()) == 4
    assert len(CASES) == 4 + 52 + 1


@pytest.mark.parametrize("key,cfg", CASES, ids=[c[0] for c in CASES])
def test_libxl_reads_back_the_same_fields(libxl_results, key, cfg):
    got = libxl_results[key]
    assert "error" not in got, got.get("error")
    once = got["once"]
    assert normalise_libxl(once) == normalise_ours(cfg)
    # libxl's output is a fixed point of its own reader
    assert got["twice"] == once


def test_documented_normalisations_all_happen(libxl_results):
    """Every rule above is used by some input (none is dead weight)."""
    seen_added, seen_dropped = set(), set()

    def walk(a, b, path):
        if isinstance(a, dict) and isinstance(b, dict):
            for k in set(a) | set(b):
                p = f"{path}.{k}" if path else k
                if k not in b and a[k] == {}:
                    seen_added.add(p)
                elif k not in a and p in DROPPED_DEFAULTS:
                    seen_dropped.add(p)
                elif k in a and k in b:
                    walk(a[k], b[k], p)
        elif isinstance(a, list) and isinstance(b, list):
            for x, y in zip(a, b):
                walk(x, y, path + "[]")

    for key, cfg in CASES:
        walk(libxl_results[key]["once"], cfg, "")
    assert seen_added == ADDED_EMPTY
    assert seen_dropped == set(DROPPED_DEFAULTS)


# ---------------------------------------------------------------------------
# (d) errors
# ---------------------------------------------------------------------------

def test_malformed_json_is_xenerror_with_libxl_code_and_text(libxl_results):
    got = libxl_results["bad:truncated"]
    assert got["type"] == "XenError" and got["code"] == -3
    text = got["error"]
    assert text.startswith("libxl_domain_config_from_json: ")
    assert text.endswith("[ERROR_FAIL]")
    # the cause (yajl's) comes first, then libxl's conclusion
    cause = text.index("yajl error: parse error: premature EOF")
    assert cause < text.index("unable to generate libxl__json_object")


def test_wrong_enum_is_xenerror(libxl_results):
    got = libxl_results["bad:enum"]
    assert got["type"] == "XenError" and got["code"] == -3
    assert "unable to convert libxl__json_object to libxl_domain_config" in got["error"]
    # messages of the previous failing call are not carried over
    assert "yajl" not in got["error"]


def test_empty_json_is_xenerror(libxl_results):
    got = libxl_results["bad:empty"]
    assert got["type"] == "XenError" and "premature EOF" in got["error"]


@pytest.mark.parametrize("call,fn", [
    ("list_domains", "libxl_list_domain"), ("domain_info", "libxl_domain_info"),
    ("retrieve_domain_configuration", "libxl_retrieve_domain_configuration")])
def test_hypervisor_calls_fail_cleanly_without_xen(libxl_results, call, fn):
    """Under the stub no domain exists: each call is a XenError naming the
    libxl function, libxl's code and the ENOSYS it saw (never a crash)."""
    got = libxl_results[call]
    assert got["type"] == "XenError" and got["errno"] == 38
    assert got["error"].startswith(f"{fn}: ") and "Function not implemented" in got["error"]
    assert got["code"] in binding.LIBXL_ERRORS


def test_missing_library_is_environment_problem():
    missing = "/nonexistent/xrc/libxenlight.so.4.17"
    with pytest.raises(errors.EnvironmentProblem) as ei:
        binding.load_library(missing)
    assert missing in str(ei.value) and "use the 'xl' source" in str(ei.value)
    assert ei.value.exit_status == 1


# ---------------------------------------------------------------------------
# (f) xl's sxp dump, printed by the real xl, read by sources.xlcli
# ---------------------------------------------------------------------------

#: xl-side.md 4.4 (PV, realxl.WEB01_CFG) and 4.5 (HVM) configurations.
WEB01_CFG = realxl.WEB01_CFG
WIN01_CFG = """\
name = "win01"
uuid = "0b7c9e2a-4d1f-4c3b-8e5a-9f6d7c8b1a20"
type = "hvm"
memory = 2048
vcpus = 2
disk = [ '/dev/vg0/win01-disk,raw,xvda,rw', '/srv/iso/install.iso,raw,hdc,ro,devtype=cdrom' ]
vif = [ 'mac=00:16:3e:5a:6b:7c,bridge=xenbr0,model=e1000' ]
boot = "dc"
vnc = 1
vnclisten = "127.0.0.1"
serial = "pty"
on_crash = "destroy"
"""


def _sxp_cases():
    out = [("spec-web01", WEB01_CFG), ("spec-win01", WIN01_CFG)]
    for path in sorted(SEXPR2XML.glob("*.sexpr")):
        name = path.stem[len("sexpr2xml-"):]
        (dom,) = sxpr.domains_from_text(path.read_text(), source=str(path),
                                        continuations=True, lenient=name in UNBALANCED)
        out.append((name, xlcfg.to_xlcfg(dom).text))
    return out


SXP_CASES = _sxp_cases()


def _xl_output(monkeypatch, cfg_text: str, conf: str) -> str:
    monkeypatch.setattr(realxl, "XL_CONF", conf)
    rc, out, err = realxl.xl_create_raw(cfg_text)
    assert rc == 0, err
    return out


def _facts(dom) -> dict:
    """What xl's sxp dump carries (tools/xl/xl_sxp.c): no disk format or
    script, no vif bridge/ip/script, no on_* actions, no online vcpus."""
    hvm = dom.hvm
    return {
        "name": dom.name, "type": dom.type, "maxmem": dom.maxmem, "memory": dom.memory,
        "vcpus": dom.vcpus, "kernel": dom.kernel, "ramdisk": dom.ramdisk,
        "cmdline": dom.cmdline, "bootloader": dom.bootloader,
        "bootloader_args": dom.bootloader_args,
        "disks": [(d.target, d.vdev, d.readwrite, d.is_cdrom, d.removable, d.backend)
                  for d in dom.disks],
        "nics": [(n.mac, n.vifname, n.devid, n.model) for n in dom.nics],
        "hvm": (hvm.boot, hvm.videoram, hvm.stdvga, hvm.device_model) if hvm else None,
        "vnc": [(v.vnc, v.vnclisten, v.vncdisplay, v.keymap) for v in dom.vfbs],
    }


@pytest.mark.parametrize("name,cfg_text", SXP_CASES, ids=[c[0] for c in SXP_CASES])
def test_real_xl_sxp_dump_reads_like_its_json(stub, monkeypatch, name, cfg_text):
    sxp_text = _xl_output(monkeypatch, cfg_text, 'output_format="sxp"\n')
    json_text = _xl_output(monkeypatch, cfg_text, realxl.XL_CONF)
    assert sxp_text.startswith("(domain\n\t(domid -1)\n")
    (from_sxp,) = xlcli.parse_list_output(sxp_text, source=f"{name} sxp")
    (from_json,) = xlcli.parse_list_output(json_text, source=f"{name} json")
    assert from_sxp.domid is None        # xl -N create: (domid -1)
    assert _facts(from_sxp.domain) == _facts(from_json.domain)


def test_real_xl_sxp_pv_quirk_is_what_we_repair(stub, monkeypatch):
    """xl 4.17 closes a PV (domain right after (image ...)): the devices are
    printed after it and a stray ')' ends the dump (read_xl_sxp's docstring)."""
    text = _xl_output(monkeypatch, WEB01_CFG, 'output_format="sxp"\n')
    lines = text.splitlines()
    image_end = lines.index("\t\t\t(e820_host <default>)") + 1
    assert lines[image_end:image_end + 3] == ["\t\t)", "\t)", "\t(device"]
    assert lines[-1] == ")"
    (r,) = xlcli.parse_list_output(text)
    assert [d.vdev for d in r.domain.disks] == ["xvda", "xvdb"]
    assert [n.vifname for n in r.domain.nics] == [None, "web01-eth1"]
