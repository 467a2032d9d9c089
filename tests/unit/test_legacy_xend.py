"""The xen.xend shims (xen_remus_compat.legacy.xend), legacy-api.md §12.

Expected values come from §12 (XendClient constants and calls,
XendOptions defaults and messages, xsutil/xswatch contract), §11 (legacy
sxp reader), §3.3 (balloon labels) and the recorded fixtures
(xend-config.sxp from Xen, domain sxprs from libvirt).
"""
from __future__ import annotations

import importlib
import io
import threading
import xmlrpc.client

import pytest

from xen_remus_compat.legacy import xend
from xen_remus_compat.legacy.xend import XendClient, XendOptions, osdep
from xen_remus_compat.legacy.xend.XendError import XendError, XendInvalidDomain


@pytest.fixture
def options(monkeypatch):
    """XendOptions read afresh from the $XEND_CONFIG a test sets."""
    XendOptions.reset()
    yield lambda path: (monkeypatch.setenv("XEND_CONFIG", str(path)),
                        XendOptions.reset(), XendOptions.instance())[-1]
    XendOptions.reset()


# -- imports under the legacy names -----------------------------------------------------

@pytest.mark.parametrize("name", ["xen.xend.XendOptions", "xen.xend.XendClient",
                                  "xen.xend.XendError", "xen.xend.sxp", "xen.xend.osdep",
                                  "xen.xend.xenstore.xsutil", "xen.xend.xenstore.xswatch"])
def test_provided_modules_import(name):
    module = importlib.import_module(name)
    assert module.__name__.startswith("xen_remus_compat.legacy.xend")


@pytest.mark.parametrize("stmt,module,hint", [
    ("import xen.xend.XendDomain", "xen.xend.XendDomain", "'xl list'"),
    ("from xen.xend import balloon", "xen.xend.balloon", "autoballoon"),
    ("from xen.xend.xenstore import xstransact", "xen.xend.xenstore.xstransact",
     "xenstore-read"),
    ("import xen.xend.server.relocate", "xen.xend.server", "remus-receiver"),
    ("import xen.xend.XendNoSuchThing", "xen.xend.XendNoSuchThing", "the xl command"),
])
def test_absent_modules_name_themselves_and_the_replacement(stmt, module, hint):
    with pytest.raises(ImportError) as ei:
        exec(stmt, {})
    text = str(ei.value)
    assert text.startswith(f"{module} is not provided by xen-remus-compat")
    assert hint in text and ei.value.name == module


def test_every_absent_entry_is_a_real_xend_module_name():
    # the table must not shadow what we provide
    assert not set(xend.NOT_PROVIDED) & set(xend.PROVIDED)


# -- XendOptions ----------------------------------------------------------------------------

def test_options_defaults_without_a_file(options, tmp_path):
    o = options(tmp_path / "absent.sxp")
    assert o.get_xend_relocation_port() == 8002
    assert o.get_xend_relocation_address() == ""
    assert o.get_xend_relocation_server() is False
    assert o.get_xend_relocation_hosts_allow() == ""
    assert o.get_xend_port() == 8000
    assert o.get_xend_relocation_ssl_port() == 8003
    assert o.get_xend_tcp_xmlrpc_server_port() == 8006
    assert o.get_dom0_min_mem() == 0 and o.get_enable_dom0_ballooning() is False
    assert o.get_vif_script() == "vif-bridge"


def test_options_from_xens_example(options, fixtures_dir):
    o = options(fixtures_dir / "xen" / "examples" / "xend-config.sxp")
    assert o.get_xend_relocation_server() is True
    assert o.get_xend_relocation_port() == 8002           # commented out there
    assert o.get_xend_relocation_hosts_allow() == r"^localhost$ ^localhost\.localdomain$"
    assert o.get_dom0_min_mem() == 196
    assert o.get_enable_dom0_ballooning() is True


def test_options_port_and_errors(options, tmp_path):
    cfg = tmp_path / "xend-config.sxp"
    cfg.write_text("(xend-relocation-port 8102)\n(xend-port eighty)\n(xend-http-server maybe)\n")
    o = options(cfg)
    assert o.get_xend_relocation_port() == 8102
    with pytest.raises(XendError) as ei:
        o.get_xend_port()
    assert str(ei.value) == "invalid xend config xend-port: expected int: eighty"
    assert ei.value.faultCode == 2 and isinstance(ei.value, xmlrpc.client.Fault)
    with pytest.raises(XendError, match="expected bool: maybe"):
        o.get_xend_http_server()


def test_options_singleton(options, tmp_path):
    o = options(tmp_path / "absent.sxp")
    assert XendOptions.instance() is o


def test_every_getter_is_documented():
    for name in XendOptions.GETTERS:
        doc = getattr(XendOptions.XendOptions, name).__doc__
        assert doc and "default" in doc and len(doc) > 60, name


# -- sxp --------------------------------------------------------------------------------------

def test_sxp_is_the_legacy_reader():
    from xen.xend import sxp
    assert sxp.Parser().legacy is True
    assert sxp.from_string("(a (b c))") == ["a", ["b", "c"]]
    assert sxp.all_from_string("(a) (b") == [["a"]]          # legacy: '(b' then EOF dropped
    assert sxp.parse(io.StringIO("(x 1)")) == [["x", "1"]]
    assert sxp.child_value(["domain", ["name", "web"]], "name") == "web"
    assert sxp.to_string(["a", "b c"]) == "(a 'b c')"
    assert sxp.Parser(legacy=False).legacy is False


# -- XendClient ------------------------------------------------------------------------------

def files_server(fixtures_dir, *names, **kw):
    paths = [str(fixtures_dir / "libvirt" / "sexpr2xml" / f"sexpr2xml-{n}.sexpr")
             for n in names]
    return XendClient.Server(source="files", source_options={"paths": paths}, **kw)


def test_client_constants():
    assert (XendClient.ERROR_INTERNAL, XendClient.ERROR_GENERIC,
            XendClient.ERROR_INVALID_DOMAIN) == (1, 2, 3)
    assert XendClient.XML_RPC_SOCKET == "/var/run/xend/xmlrpc.sock"
    assert XendClient.XEN_API_SOCKET == "/var/run/xend/xen-api.sock"


def test_client_domain_all(fixtures_dir):
    server = files_server(fixtures_dir, "curmem")
    info = server.xend.domain("rhel5", "all")
    from xen.xend import sxp
    assert info[0] == "domain"
    assert sxp.child_value(info, "name") == "rhel5"
    assert sxp.child_value(info, "domid") == 5                # an int, as XML-RPC sent it
    assert sxp.child_value(info, "memory") == 175
    assert server.xend.domain(5, "all") == info


def test_client_unknown_domain_is_a_fault(fixtures_dir):
    server = files_server(fixtures_dir, "curmem")
    with pytest.raises(xmlrpc.client.Fault) as ei:
        server.xend.domain("nosuch", "all")
    assert isinstance(ei.value, XendInvalidDomain) and ei.value.faultCode == 3
    assert "nosuch" in ei.value.faultString


def test_client_domains(fixtures_dir):
    server = files_server(fixtures_dir, "curmem", "boot-grub")
    names = server.xend.domains(0)
    assert names == sorted(names) and "rhel5" in names and len(names) == 2
    detail = server.xend.domains(1)
    assert [d[0] for d in detail] == ["domain", "domain"]


def test_client_set_memory_target(fixtures_dir):
    calls = []
    server = files_server(fixtures_dir, "curmem", memset=lambda d, m: calls.append((d, m)))
    assert server.xend.domain.setMemoryTarget("rhel5", 256) is None
    assert calls == [(5, 256)]


def test_client_dom0_floor(tmp_path, options):
    cfg = tmp_path / "xend-config.sxp"
    cfg.write_text("(dom0-min-mem 512)\n")
    options(cfg)
    dom0 = tmp_path / "dom0.sxp"
    dom0.write_text("(domain (domid 0) (name Domain-0) (memory 2048) (maxmem 2048)"
                    " (vcpus 2))\n")
    calls = []
    server = XendClient.Server(source="files", source_options={"paths": [str(dom0)]},
                               memset=lambda d, m: calls.append((d, m)))
    with pytest.raises(XendError, match="memory_dynamic_max too small"):
        server.xend.domain.setMemoryTarget(0, 256)
    server.xend.domain.setMemoryTarget(0, 1024)
    assert calls == [(0, 1024)]


@pytest.mark.parametrize("method,replacement", [
    ("domain.destroy", "'xl destroy DOMAIN'"), ("domain.pause", "'xl pause DOMAIN'"),
    ("node.info", "'xl info'"), ("domain.frobnicate", "the xl command or libxl")])
def test_client_other_calls_name_the_xl_replacement(fixtures_dir, method, replacement):
    server = files_server(fixtures_dir, "curmem")
    fn = server.xend
    for part in method.split("."):
        fn = getattr(fn, part)
    with pytest.raises(NotImplementedError) as ei:
        fn(5)
    e = ei.value
    assert isinstance(e, xmlrpc.client.Fault)
    assert f"xend.{method}()" in str(e) and replacement in str(e)


def test_client_forwards_everything_to_a_real_xend():
    class Proxy:
        def __init__(self):
            self.calls = []

        def __getattr__(self, name):
            outer = self

            class M:
                def __init__(self, path):
                    self.path = path

                def __getattr__(self, n):
                    return M(self.path + "." + n)

                def __call__(self, *args):
                    outer.calls.append((self.path, args))
                    return "ok"
            return M(name)

    proxy = Proxy()
    server = XendClient.Server(source="xend", xend_proxy=lambda: proxy)
    assert server.xend.domain.destroy(3) == "ok"
    assert server.xend.domain("web", "all") == "ok"
    assert proxy.calls == [("xend.domain.destroy", (3,)), ("xend.domain", ("web", "all"))]


def test_module_global_server_follows_vm_source(monkeypatch, fixtures_dir):
    from xen_remus_compat.legacy import vm
    path = str(fixtures_dir / "libvirt" / "sexpr2xml" / "sexpr2xml-curmem.sexpr")
    monkeypatch.setattr(vm, "SOURCE", "files")
    monkeypatch.setattr(vm, "SOURCE_OPTIONS", {"paths": [path]})
    from xen.xend.XendClient import server
    assert server.xend.domains(0) == ["rhel5"]


# -- osdep ----------------------------------------------------------------------------------

def test_balloon_stats_from_sysfs(tmp_path, monkeypatch):
    root = tmp_path / "xen_memory0"
    (root / "info").mkdir(parents=True)
    (root / "info" / "current_kb").write_text("1048576\n")
    (root / "target_kb").write_text("2097152\n")
    monkeypatch.setattr(osdep, "SYSFS_XEN_MEMORY", str(root))
    monkeypatch.setattr(osdep, "PROC_XEN_BALLOON", str(tmp_path / "none"))
    assert osdep.lookup_balloon_stat("current") == 1048576
    assert osdep.lookup_balloon_stat("target") == 2097152
    assert osdep.lookup_balloon_stat("limit") is None
    with pytest.raises(KeyError):
        osdep.lookup_balloon_stat("bogus")


def test_balloon_stats_from_proc(tmp_path, monkeypatch):
    proc = tmp_path / "balloon"
    proc.write_text("Current allocation:   524288 kB\nRequested target:     524288 kB\n"
                    "Xen hard limit:          ??? kB\n")
    monkeypatch.setattr(osdep, "SYSFS_XEN_MEMORY", str(tmp_path / "none"))
    monkeypatch.setattr(osdep, "PROC_XEN_BALLOON", str(proc))
    assert osdep.lookup_balloon_stat("current") == 524288
    assert osdep.lookup_balloon_stat("limit") is None
    assert osdep.lookup_balloon_stat("low-balloon") is None


# -- xenstore --------------------------------------------------------------------------------

class FakeXs:
    def __init__(self):
        self.watches = []
        self.events = []
        self.cond = threading.Condition()
        self.resumed = []

    def resume_domain(self, domid):
        self.resumed.append(domid)

    def get_domain_path(self, domid):
        return "/local/domain/%d" % domid

    def watch(self, path, token):
        self.watches.append((path, token))
        self.fire(path, token)                    # xenstore fires once at once

    def unwatch(self, path, token):
        self.watches.remove((path, token))

    def fire(self, path, token):
        with self.cond:
            self.events.append((path, token))
            self.cond.notify_all()

    def read_watch(self):
        with self.cond:
            while not self.events:
                self.cond.wait()
            return self.events.pop(0)


@pytest.fixture
def fakexs(monkeypatch):
    from xen_remus_compat.legacy.xend.xenstore import xsutil, xswatch
    fake = FakeXs()
    monkeypatch.setattr(xsutil, "XS_FACTORY", lambda: fake)
    xsutil.reset()
    monkeypatch.setattr(xswatch, "watchThread", None)
    yield fake
    xsutil.reset()


def test_xsutil_helpers(fakexs):
    from xen.xend.xenstore import xsutil
    assert xsutil.xshandle() is fakexs is xsutil.xshandle()
    xsutil.ResumeDomain(4)
    assert fakexs.resumed == [4]
    assert xsutil.GetDomainPath(4) == "/local/domain/4"


def test_xswatch_calls_back_until_false(fakexs):
    from xen.xend.xenstore.xswatch import xswatch
    seen = []
    done = threading.Event()

    def cb(path, tag, key=None):
        seen.append((path, tag, key))
        if len(seen) == 2:
            done.set()
            return False                          # unregister
        return True

    w = xswatch("/local/domain/1/memory/target", cb, "t", key="k")
    fakexs.fire("/local/domain/1/memory/target", w)
    assert done.wait(5)
    assert seen == [("/local/domain/1/memory/target", "t", "k")] * 2
    for _ in range(50):
        if not fakexs.watches:
            break
        threading.Event().wait(0.01)
    assert fakexs.watches == []


def test_xsutil_without_debians_binding(monkeypatch):
    from xen_remus_compat.legacy.xend.xenstore import xsutil
    xsutil.reset()
    monkeypatch.setattr(xsutil, "XS_FACTORY", None)
    import sys
    monkeypatch.setitem(sys.modules, "xen.lowlevel.xs", None)     # import fails
    with pytest.raises(ImportError, match="xen.lowlevel.xs"):
        xsutil.xshandle()
    xsutil.reset()
