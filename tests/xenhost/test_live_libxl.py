"""The libxl binding on a live Xen 4.17 dom0 (the ``xenhost`` tier).

These calls need the hypervisor and xenstored: ``libxl_list_domain``,
``libxl_domain_info``, ``libxl_retrieve_domain_configuration`` and
``libxl_name_to_domid``.  Elsewhere the whole module is reported as NOT RUN
with the reason.  Expected values come from the specs and from a real dom0
(the xen tier, tests/xen, runs this module in one): dom0 is domid 0 named
``Domain-0``; every domain's configuration is what ``xl list -l`` prints for
it (same libxl call; xl skips a domain whose configuration libxl cannot
retrieve).  dom0 has a stored configuration when ``xen-init-dom0`` ran (as
Debian's xencommons does at boot): a stub, ``c_info`` type and name only.
libxl's JSON omits default values, so dom0's domid 0 and its nil UUID are
absent from its dominfo and its stub.  Run as root on the dom0:
``.venv/bin/python -m pytest tests/xenhost``.
"""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.conftest import tier_unavailable
from xen_remus_compat import errors
from xen_remus_compat.sources import libxl as binding, xlcli

PRIVCMD = ("/dev/xen/privcmd", "/proc/xen/privcmd")
CAPABILITIES = "/proc/xen/capabilities"


def dom0_reason() -> str:
    """Why this is not a usable Xen dom0, or "" when it is."""
    if not any(os.path.exists(p) for p in PRIVCMD):
        return ("no /proc/xen/privcmd or /dev/xen/privcmd: not running on a Xen "
                "hypervisor (list_domains, domain_info, "
                "retrieve_domain_configuration, name_to_domid need one)")
    try:
        with open(CAPABILITIES) as f:
            if "control_d" not in f.read():
                return f"{CAPABILITIES} has no control_d: this is a domU, not dom0"
    except OSError as e:
        return f"cannot read {CAPABILITIES}: {e}"
    if os.geteuid() != 0:
        return "libxl needs root on the dom0"
    return ""


@pytest.fixture(scope="module", autouse=True)
def dom0():
    reason = dom0_reason()
    if reason:
        tier_unavailable("xenhost", reason)
    try:
        ctx = binding.Context()
    except errors.CompatError as e:
        pytest.fail(f"a dom0, but no libxl context: {e}")
    yield ctx
    ctx.close()


def test_list_domains_has_dom0(dom0):
    infos = dom0.list_domains()
    # libxl's JSON omits domid 0 (the default), so dom0 has no "domid" key
    ids = [i.get("domid", 0) for i in infos]
    assert 0 in ids and len(ids) == len(set(ids))
    # a nil UUID (dom0's, unless one was set) is omitted like any default
    assert all(len(i["uuid"]) == 36 for i in infos if "uuid" in i)
    assert all("uuid" in i for i in infos if i.get("domid", 0) != 0)


def test_domain_info_dom0(dom0):
    info = dom0.domain_info(0)
    assert info.get("domid", 0) == 0
    assert info["current_memkb"] > 0 and info["vcpu_online"] >= 1


def test_names(dom0):
    assert dom0.name_to_domid("Domain-0") == 0
    assert dom0.domid_to_name(0) == "Domain-0"
    with pytest.raises(errors.DomainLookupError):
        dom0.name_to_domid(f"xrc-no-such-domain-{os.getpid()}")


def test_unknown_domid(dom0):
    unused = max(i.get("domid", 0) for i in dom0.list_domains()) + 1
    with pytest.raises(errors.DomainLookupError):
        dom0.domain_info(unused)


def _xl_list_long() -> dict:
    xl = xlcli.find_xl()
    proc = subprocess.run([xl, "list", "-l"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout.strip()
    if not text.startswith("["):
        pytest.fail(f"{xl} list -l did not print JSON (output_format=\"sxp\" in "
                    f"/etc/xen/xl.conf?): {text[:80]!r}")
    return {e["domid"]: e["config"] for e in json.loads(text)}


def test_retrieve_configuration_is_what_xl_list_prints(dom0):
    listed = _xl_list_long()
    domids = {i.get("domid", 0) for i in dom0.list_domains()}
    # dom0 too, when xen-init-dom0 stored its stub configuration
    assert set(listed) <= domids
    for domid, config in listed.items():
        ours = dom0.retrieve_domain_configuration(domid)
        # retrieval refreshes memory targets and vcpus: compare the identity
        # and the devices, which a running guest keeps
        for key in ("c_info", "disks", "nics"):
            assert ours.get(key) == config.get(key), (domid, key)


def test_dom0_configuration_is_what_xen_init_dom0_stored(dom0):
    """With xen-init-dom0's stub, dom0's configuration is that stub (a PV or
    PVH type and the name; no UUID when dom0's is nil); without it, libxl
    has no configuration to give and xl list -l skips dom0."""
    listed = _xl_list_long()
    if 0 not in listed:
        with pytest.raises(errors.XenError):
            dom0.retrieve_domain_configuration(0)
        return
    c_info = dom0.retrieve_domain_configuration(0)["c_info"]
    assert c_info == listed[0]["c_info"]
    assert c_info["name"] == "Domain-0" and c_info["type"] in ("pv", "pvh")


def test_libxl_and_xl_sources_agree(dom0):
    from xen_remus_compat.sources import libxl as libxlsrc
    via_libxl = {(r.domid, r.domain.name, r.domain.uuid)
                 for r in libxlsrc.LibxlSource().records()}
    via_xl = {(r.domid, r.domain.name, r.domain.uuid)
              for r in xlcli.XlSource(xlcli.find_xl()).records()}
    assert via_libxl == via_xl
