"""The simulated guest's page contract (task brief; shared with simxen)."""
import pytest

from xen_remus_compat.stream import simpage


def test_initial_page_of_pfn0_is_the_plain_ramp():
    page = simpage.page_bytes(0, 0)
    assert len(page) == 4096
    assert page[:16] == bytes(16)
    assert page[16:256] == bytes(range(16, 256))
    assert page[256:512] == bytes(range(256))
    assert page[-256:] == bytes(range(256))


def test_header_is_pfn_and_version_little_endian():
    page = simpage.page_bytes(0x0102030405, 7)
    assert page[:8] == bytes([5, 4, 3, 2, 1, 0, 0, 0])
    assert page[8:16] == bytes([7, 0, 0, 0, 0, 0, 0, 0])


def test_rotation_is_pfn_times_7_plus_version():
    # pfn 1, version 0: rotate left by 7 -> byte i is (i + 7) % 256.
    page = simpage.page_bytes(1, 0)
    assert page[16] == 23 and page[255] == (255 + 7) % 256 and page[256] == 7
    # pfn 36, version 4: 36*7+4 = 256 -> rotation 0.
    assert simpage.page_bytes(36, 4)[16:] == simpage.page_bytes(0, 0)[16:]
    # version 1 of pfn 2: rotation 15.
    assert simpage.page_bytes(2, 1)[4095] == (255 + 15) % 256


@pytest.mark.parametrize("pfn,version", [(0, 0), (1, 3), (4095, 999), (2**40, 2)])
def test_decode_round_trips(pfn, version):
    assert simpage.decode(simpage.page_bytes(pfn, version)) == (pfn, version)


def test_decode_rejects_foreign_pages():
    page = bytearray(simpage.page_bytes(3, 1))
    page[100] ^= 1
    assert simpage.decode(bytes(page)) is None
    assert simpage.decode(bytes(4095)) is None
    # header says version 2 but the pattern is version 1's
    page = bytearray(simpage.page_bytes(3, 1))
    page[8] = 2
    assert simpage.decode(bytes(page)) is None
