"""The device-model save of an HVM guest (remus/devicemodel.py, remus/qmp.py)
against the stand-in QMP server of sim/devicemodel.py (no guest attached).

What libxl 4.17 does, and so what these check: ``stop``, the save file by
``add-fd`` as ``/dev/fdset/N``, ``xen-save-devices-state`` with ``live``
(qemu >= 2.11), ``cont``; records EMULATOR_XENSTORE_DATA (2) and
EMULATOR_CONTEXT (3) with the 8-byte emulator sub-header (id 2 = qemu
upstream, index 0) and zero padding to 8; every QMP exchange bounded, every
failure naming the socket and the command.
"""
from __future__ import annotations

import os
import struct

import pytest

from xen_remus_compat import errors
from xen_remus_compat.remus import devicemodel as dmod
from xen_remus_compat.remus.qmp import QMPClient
from xen_remus_compat.sim import devicemodel as simdm

pytestmark = pytest.mark.unit


@pytest.fixture
def server(tmp_path):
    srv = simdm.SimDeviceModel(tmp_path, 7, guest=simdm._Guest(load=False)).start()
    yield srv
    srv.stop()


def open_dm(srv, tmp_path, **kw):
    kw.setdefault("xenstore", None)
    return dmod.DeviceModel(7, socket_path=str(srv.path),
                            save_path=str(tmp_path / "qemu-save.7"), **kw).open()


def split_records(data: bytes):
    out, off = [], 0
    while off < len(data):
        rtype, length = struct.unpack_from("<II", data, off)
        body = data[off + 8:off + 8 + length]
        pad = data[off + 8 + length:off + 8 + length + (-length % 8)]
        out.append((rtype, length, body, pad))
        off += 8 + length + (-length % 8)
    assert off == len(data)
    return out


def test_one_checkpoint_is_stop_save_cont_and_one_context_record(server, tmp_path):
    dm = open_dm(server, tmp_path)
    dm.set_dirty_log(True)
    dm.suspend()
    assert server.status == "paused"
    dm.resume()
    assert server.status == "running"
    data = dm.records()
    assert server.commands == ["qmp_capabilities", "add-fd", "xen-set-global-dirty-log",
                               "stop", "xen-save-devices-state", "cont"]
    [(rtype, length, body, pad)] = split_records(data)
    state = (tmp_path / "qemu-save.7").read_bytes()
    assert rtype == 3 and length == 8 + len(state)
    assert body[:8] == struct.pack("<II", 2, 0)         # qemu upstream, index 0
    assert body[8:] == state and pad == bytes(len(pad))
    info = simdm.decode_state(state)
    assert info["save"] == 1 and info["vm_state"] == "paused"
    assert info["live"] is True and info["dirty_log"] is True
    # qemu's own events come between the answers and are kept aside
    assert [e["event"] for e in dm.client.events] == ["STOP", "RESUME"]
    dm.close()


def test_the_state_changes_every_checkpoint_and_is_sent_once(server, tmp_path):
    dm = open_dm(server, tmp_path)
    blobs = []
    for _ in range(3):
        dm.suspend()
        dm.resume()
        blobs.append(split_records(dm.records())[-1][2][8:])
        with pytest.raises(errors.DeviceModelError, match="no state saved for this "
                                                          "checkpoint"):
            dm.records()
    assert [simdm.decode_state(b)["save"] for b in blobs] == [1, 2, 3]
    assert len(set(blobs)) == 3
    # one fdset for the whole session: add-fd once
    assert server.commands.count("add-fd") == 1
    assert dm.stats.state_bytes == [len(b) for b in blobs]
    assert len(dm.stats.suspend) == len(dm.stats.resume) == len(dm.stats.records) == 3
    dm.close()


def test_a_shorter_save_leaves_no_stale_tail(server, tmp_path):
    dm = open_dm(server, tmp_path)
    dm.suspend()
    dm.resume()
    first = split_records(dm.records())[0][2][8:]
    assert simdm.decode_state(first)["save"] == 1
    (tmp_path / "qemu-save.7").write_bytes(b"x" * 20000)    # longer than a save
    dm.suspend()
    dm.resume()
    second = split_records(dm.records())[0][2][8:]
    # decode_state insists on the exact blob: a stale tail of x's fails it.
    # (The blob's length varies by a byte or two with running_ns, so the
    # two saves are not compared with each other.)
    assert simdm.decode_state(second)["save"] == 2 and len(second) < 20000
    assert b"x" * 16 not in second
    dm.close()


def test_xenstore_record_precedes_the_context(server, tmp_path):
    pairs = [("physmap/40000000/start_addr", "f0000000"),
             ("physmap/40000000/size", "800000"), ("physmap/40000000/name", "vga.vram")]
    dm = open_dm(server, tmp_path, xenstore=lambda domid: pairs if domid == 7 else [])
    dm.suspend()
    dm.resume()
    recs = split_records(dm.records())
    assert [r[0] for r in recs] == [2, 3]
    _, length, body, pad = recs[0]
    expected = b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in pairs)
    assert body == struct.pack("<II", 2, 0) + expected and length == 8 + len(expected)
    assert (8 + length + len(pad)) % 8 == 0 and pad == bytes(len(pad))
    dm.close()


def test_no_live_argument_before_qemu_2_11(server, tmp_path, monkeypatch):
    monkeypatch.setattr(simdm, "QEMU_VERSION", {"major": 2, "minor": 10, "micro": 1})
    dm = open_dm(server, tmp_path)
    dm.suspend()
    dm.resume()
    info = simdm.decode_state(split_records(dm.records())[0][2][8:])
    assert info["live"] is False
    log = (tmp_path / "qmp.log").read_text()
    assert '"filename": "/dev/fdset/0"}' in log and '"live"' not in log
    dm.close()


def test_close_continues_a_stopped_device_model_and_cleans_up(server, tmp_path):
    dm = open_dm(server, tmp_path)
    dm.suspend()                    # then something failed: no resume()
    assert server.status == "paused"
    dm.close()
    assert server.status == "running"
    assert server.commands[-2:] == ["cont", "remove-fd"]
    assert server.fdsets == {}
    assert not (tmp_path / "qemu-save.7").exists()
    dm.close()                      # twice is harmless


def test_a_slow_save_times_out_naming_socket_and_command(server, tmp_path):
    server.delay = 1.0
    dm = open_dm(server, tmp_path, timeout=0.2)
    with pytest.raises(errors.DeviceModelError) as info:
        dm.suspend()
    e = info.value
    assert e.exit_status == 1 and e.command == "xen-save-devices-state"
    assert str(e) == (f"device model of domain 7: QMP xen-save-devices-state on "
                      f"{server.path}: no answer within 0.2 s")
    dm.close()


def test_an_error_answer_names_class_and_description(server, tmp_path):
    dm = open_dm(server, tmp_path)
    for fd in server.fdsets.pop(0):
        os.close(fd)
    with pytest.raises(errors.DeviceModelError,
                       match=r"QMP xen-save-devices-state on .*qmp-libxl-7: "
                             r"GenericError: Could not dup FD for /dev/fdset/0"):
        dm.suspend()
    dm.close()


def test_no_device_model_is_a_clear_error(tmp_path):
    with pytest.raises(errors.DeviceModelError) as info:
        dmod.for_domain(9, "hvm", sim_state_dir=None, run_dir=str(tmp_path),
                        lib_dir=str(tmp_path), xenstore=None)
    assert str(info.value) == (f"device model of domain 9: QMP connect on "
                               f"{tmp_path}/qmp-libxl-9: No such file or directory "
                               f"(is the device model running?)")
    assert info.value.socket == f"{tmp_path}/qmp-libxl-9"


@pytest.mark.parametrize("gtype", ["pv", "pvh", None])
def test_guests_without_a_device_model_get_none(gtype):
    assert dmod.for_domain(3, gtype, sim_state_dir=None) is None


def test_libxl_paths():
    assert dmod.qmp_socket(5) == "/var/run/xen/qmp-libxl-5"
    assert dmod.save_file(5) == "/var/lib/xen/qemu-save.5"
    assert dmod.physmap_dir(5) == "/local/domain/0/device-model/5/physmap"


def test_long_socket_paths_and_commands_before_negotiation(tmp_path):
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    srv = simdm.SimDeviceModel(deep, 1, guest=simdm._Guest(load=False)).start()
    try:
        assert len(str(srv.path)) > 108
        client = QMPClient(str(srv.path), timeout=2)
        greeting = client.connect(negotiate=False)
        assert greeting["version"]["qemu"]["major"] == 7
        with pytest.raises(errors.DeviceModelError, match="CommandNotFound: Expecting "
                                                          "capabilities negotiation"):
            client.execute("query-status")
        client = QMPClient(str(srv.path), timeout=2)
        client.connect()
        assert client.execute("query-status")["status"] == "running"
        assert client.version() == (7, 2, 0)
        client.close()
    finally:
        srv.stop()


def test_stand_in_state_blob_is_checked():
    blob = simdm.encode_state({"domid": 1, "save": 4})
    assert blob[:8] == b"QEVM\0\0\0\3"
    assert simdm.decode_state(blob) == {"domid": 1, "save": 4}
    with pytest.raises(ValueError):
        simdm.decode_state(blob[:-1] + bytes([blob[-1] ^ 1]))
    with pytest.raises(ValueError):
        simdm.decode_state(b"QEVM\0\0\0\3" + b"x" * 40)


def test_close_reports_the_device_model_cost(server, tmp_path, caplog):
    dm = open_dm(server, tmp_path)
    for _ in range(3):
        dm.suspend()
        dm.resume()
        dm.records()
    with caplog.at_level("INFO", logger="xen_remus_compat"):
        dm.close()
    line = next(r.getMessage() for r in caplog.records if "saves" in r.getMessage())
    assert line.startswith("device model of domain 7: 3 saves, median stop+save ")
    assert "(guest paused)" in line and line.endswith(" bytes")


def test_no_report_before_the_first_save(server, tmp_path, caplog):
    dm = open_dm(server, tmp_path)
    with caplog.at_level("INFO", logger="xen_remus_compat"):
        dm.close()
    assert not any("saves" in r.getMessage() for r in caplog.records)


def test_log_dirty_off_with_qemu_gone_is_not_an_error(server, tmp_path):
    dm = open_dm(server, tmp_path)
    assert dm.set_dirty_log(True)
    dm.client.close()                       # qemu died with its destroyed guest
    assert dm.set_dirty_log(False)
    with pytest.raises(errors.DeviceModelError):
        dm.set_dirty_log(True)
    dm.close()
