"""Nothing read from input reaches an xl.cfg as anything but a quoted value
or an escaped comment (issue 12, item 9), checked with Debian's real
``xl -N create``: hostile key names, values and domain names never become
live settings."""
import itertools
import json

import pytest

from tests.conftest import tier_unavailable
from tests.support import realxl
from xen_remus_compat import errors, sxp
from xen_remus_compat.config.formats import sxpr, xlcfg

EVIL = "/evil/kernel"
PAYLOADS = [
    f'x\nkernel = "{EVIL}"\n',
    f'x\rkernel = "{EVIL}"',
    f'x\u2028kernel = "{EVIL}"',
    f'x\x0bkernel = "{EVIL}"\x0c',
    f'x\x1b[2K\nkernel="{EVIL}"#',
    f'"\nkernel = "{EVIL}" #',
    f"'\nkernel = '{EVIL}'",
    f'\\\nkernel = "{EVIL}"',
    f'x\n]\nkernel = "{EVIL}"\ndisk = [ "',
]
WHERE = ["top-key", "top-value", "image-key", "image-value", "device-key", "name"]


@pytest.fixture(scope="module", autouse=True)
def real_xl():
    ok, why = realxl.available()
    if not ok:
        tier_unavailable("conformance", why)


def sx_atom(text):
    return sxp.to_string([text])[1:-1]          # the printer's quoting


def domain_text(where, payload):
    p = sx_atom(payload)
    name = p if where == "name" else "guest"
    top = {"top-key": f"({p} 1)", "top-value": f"(weird_key {p})"}.get(where, "")
    image = {"image-key": f"({p} 1)", "image-value": f"(weird_image {p})"}.get(where, "")
    dev = f"(device (vif (mac 00:16:3e:00:00:01) ({p} 1)))" if where == "device-key" else ""
    return (f"(domain (name {name}) (memory 64) {top} "
            f"(image (linux (kernel /boot/vmlinuz) {image})) {dev})")


@pytest.mark.parametrize("where,payload", list(itertools.product(WHERE, PAYLOADS)))
def test_hostile_input_never_becomes_a_live_xl_setting(where, payload):
    text = domain_text(where, payload)
    dom = sxpr.domain_from_sxpr(sxp.loads(text)[0], source="hostile")
    try:
        cfg = xlcfg.to_xlcfg(dom)
    except errors.InputError:
        return                       # refused with a clear error is fine too
    for line in cfg.text.split("\n"):     # xl splits lines on \n only
        # each line is a setting we wrote, a comment, or blank
        assert line == "" or line.startswith("#") or line.split(" = ", 1)[0].isidentifier(), line
    rc, out, err = realxl.xl_create_raw(cfg.text)
    assert rc == 0, (cfg.text, err)
    data = json.loads(out[out.index("{"):])
    assert data["b_info"].get("kernel") == "/boot/vmlinuz", cfg.text
    if where == "name":
        # a value: xl reads back exactly the name we were given
        assert data["c_info"]["name"] == payload
    else:
        assert EVIL not in out, cfg.text


def test_the_comment_escape_is_readable():
    assert xlcfg.comment_text("a\nb\x1bc\u2028") == "a\\nb\\x1bc\\u2028"
    assert xlcfg.comment_text("plain text (ok)") == "plain text (ok)"
