"""xen_remus_compat.sxp against legacy-api.md section 11 (and 14.1/14.2).

Expected values are written from the spec text; the Hypothesis tests compare
the regex-driven reader with a deliberately naive one-character-at-a-time
reader (``_oracle`` below) written straight from the section 11.2 tables.
"""
import io
import logging
import pathlib
import string
import time

import pytest
from hypothesis import given, settings, strategies as st

from xen_remus_compat import errors, sxp

LOGGER = "xen_remus_compat"


def loads(text, **kw):
    return sxp.loads(text, source="t", **kw)


def legacy_parse(text):
    p = sxp.Parser(legacy=True)
    p.input(text)
    p.input_eof()
    return p.get_all()


def err(text, **kw):
    with pytest.raises(sxp.ParseError) as ei:
        loads(text, **kw)
    return ei.value


def legacy_err(text):
    with pytest.raises(sxp.ParseError) as ei:
        legacy_parse(text)
    return ei.value


# -- 11.1 data model ------------------------------------------------------------

def test_only_strings_and_lists_numbers_not_converted():
    assert loads("(a 1 2.5 -1 0x10)") == [["a", "1", "2.5", "-1", "0x10"]]


def test_quoted_strings_not_distinguished_from_atoms():
    assert loads("(name 'fvtest') (name \"fvtest\") (name fvtest)") == \
        [["name", "fvtest"]] * 3


def test_constants():
    assert sxp.mime_type == "application/sxp"
    assert (sxp.k_list_open, sxp.k_list_close, sxp.k_attr_open, sxp.k_eval) == \
        ("(", ")", "@", "!")


# -- 11.2 tokenizer -------------------------------------------------------------

@pytest.mark.parametrize("ws", list(" \t\n\v\f\r"))
def test_every_whitespace_separates(ws):
    assert loads(f"({ws}a{ws}b{ws})") == [["a", "b"]]


def test_comment_to_newline_and_to_eof():
    assert loads("# c (x)\n(a) # (b)") == [["a"]]
    assert loads("(a # inside\n b)") == [["a", "b"]]


def test_atom_ends_at_hash_which_is_reprocessed():
    assert loads("(a#x\nb)") == [["a", "b"]]


@pytest.mark.parametrize("text,expected", [
    ("(a[b]c)", ["a", "[b", "]c"]),          # spec example
    ("(a;b)", ["a", ";b"]),                   # spec example
    ("(a<b>c)", ["a", "<b", ">c"]),
    ("(a{b}c)", ["a", "{b", "}c"]),
    ("(a!b)", ["a!b"]),                       # '!' is not a separator at 4.4
])
def test_separators_end_atoms_and_start_new_ones(text, expected):
    assert loads(text) == [expected]
    assert legacy_parse(text) == [expected]


def test_quotes_inside_an_atom_are_literal():
    assert loads("(a\"b c'd)") == [['a"b', "c'd"]]


def test_terminator_reprocessed():
    assert loads("a(b)c") == ["a", ["b"], "c"]
    assert loads("(a)") == [["a"]]


def test_strings_span_lines_and_keep_other_quote():
    assert loads("('a\nb' \"it's\" 'say \"x\"')") == [["a\nb", "it's", 'say "x"']]


def test_empty_strings_and_lists():
    assert loads("(features ) (kernel '') (cpus (()))") == \
        [["features"], ["kernel", ""], ["cpus", [[]]]]


@pytest.mark.parametrize("esc,char", [
    ("a", "\a"), ("b", "\b"), ("t", "\t"), ("n", "\n"), ("v", "\v"),
    ("f", "\f"), ("r", "\r"), ("\\", "\\"), ("'", "'"), ('"', '"')])
def test_c_escapes(esc, char):
    assert loads("'x\\" + esc + "y'") == ["x" + char + "y"]
    assert legacy_parse("'x\\" + esc + "y'") == ["x" + char + "y"]


@pytest.mark.parametrize("body,expected", [
    (r"\101", "A"),
    (r"\0x", "\x00x"),          # non-octal ends it early and is re-processed
    (r"\18", "\x018"),
    (r"\1234", "S4"),           # at most 3 digits
    (r"\377", "\xff"),
])
def test_octal_escapes(body, expected):
    assert loads("'" + body + "'") == [expected]
    assert legacy_parse("'" + body + "'") == [expected]


def test_octal_out_of_range():
    e = err("(a\n '\\400')")
    assert e.value == "invalid octal escape: out of range 400"
    assert (e.line, e.col) == (2, 3)
    assert str(legacy_err("'\\777'")) == "invalid octal escape: out of range 777"


@pytest.mark.parametrize("body,fixed,legacy", [
    (r"\x4a", "J", "@"),        # the spec's example of the quirk
    (r"\x4A", "J", "@"),
    (r"\x41", "A", "A"),
    (r"\xff", "\xff", chr(5 * 16 + 5)),
    (r"\x7e", "~", chr(7 * 16 + 4)),
])
def test_hex_escapes_fixed_by_default_legacy_on_request(body, fixed, legacy):
    assert loads("'" + body + "'") == [fixed]
    assert loads("'" + body + "'", legacy_escapes=True) == [legacy]
    assert legacy_parse("'" + body + "'") == [legacy]


def test_hex_escape_short():
    # fixed: up to 2 digits, a non-hex character ends it and is re-processed
    assert loads(r"'\x4g'") == ["\x04g"]
    assert loads(r"'\x4'") == ["\x04"]
    e = err(r"'ab\xg'")
    assert (e.line, e.col) == (1, 4) and "hex escape" in e.value
    # legacy: NameError before two digits
    with pytest.raises(NameError):
        loads(r"'\x4g'", legacy_escapes=True)
    with pytest.raises(NameError):
        legacy_parse(r"'\x4'")
    with pytest.raises(sxp.ParseError):
        legacy_parse(r"'\xg'")


@pytest.mark.parametrize("body,fixed,legacy", [
    (r"\q", "\\q", "\\"),
    (r"\8", "\\8", "\\"),
    (r"a\.b", "a\\.b", "a\\b"),
])
def test_unknown_escape_keeps_its_character_unless_legacy(body, fixed, legacy):
    assert loads("'" + body + "'") == [fixed]
    assert loads("'" + body + "'", legacy_escapes=True) == [legacy]
    assert legacy_parse("'" + body + "'") == [legacy]


def test_ctrl_d_is_eof():
    assert loads("(a) \x04 (b") == [["a"]]
    assert legacy_parse("(a) \x04 (b") == [["a"]]
    # inside a list, EOF is an error
    assert str(legacy_err("(a \x04 b)")) == "unexpected EOF"
    e = err("\n(a \x04 b)")
    assert (e.line, e.col) == (2, 1)


def test_ctrl_d_inside_atom():
    # legacy: atoms run until whitespace, separator or '#', so it is kept
    assert legacy_parse("a\x04b") == ["a\x04b"]
    # modern: control characters end the atom; Ctrl-D then means EOF
    assert loads("a\x04b") == ["a"]


def test_eof_inside_string():
    assert str(legacy_err("(a 'b")) == "unexpected EOF"
    e = err("(a\n  'b\nc")
    assert (e.line, e.col) == (2, 3) and e.value.startswith("unexpected EOF")


def test_eof_inside_list_legacy_quirk_and_modern_error():
    # [quirk] the list's last token is an atom: silently discarded
    assert legacy_parse("(x) (a") == [["x"]]
    assert legacy_parse("(x) (a #c") == [["x"]]
    # otherwise 'unexpected EOF'
    assert str(legacy_err("(a ")) == "unexpected EOF"
    assert str(legacy_err("(a 'b'")) == "unexpected EOF"
    # modern: always an error naming the unclosed paren
    e = err("(x)\n  (a")
    assert (e.source, e.line, e.col) == ("t", 2, 3)
    assert str(e).startswith("t:2:3: unexpected EOF")


def test_stray_close_paren():
    assert str(legacy_err("(a))")) == "syntax error: )"
    e = err("(a)\n  )")
    assert (e.line, e.col) == (2, 3)
    assert "syntax error" in e.value


def test_lenient_accepts_missing_and_stray_paren_with_warning(caplog):
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert loads("(a (b)", lenient=True) == [["a", ["b"]]]
        assert loads("(a))", lenient=True) == [["a"]]
    msgs = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("t:1:1:") and "missing ')'" in m for m in msgs)
    assert any(m.startswith("t:1:4:") and "stray ')'" in m for m in msgs)


def test_lenient_does_not_excuse_unterminated_string():
    with pytest.raises(sxp.ParseError):
        loads("(a 'b", lenient=True)


@pytest.mark.parametrize("ch", ["\x00", "\x01", "\x1b", "\x7f"])
def test_control_characters_invalid(ch):
    e = err("(a\n b " + ch + ")")
    assert e.value == "invalid character: code %d" % ord(ch)
    assert (e.line, e.col) == (2, 4)
    # inside strings and atoms too (modern)
    assert err("'a" + ch + "'").col == 3
    assert err("ab" + ch).col == 3
    # legacy: invalid at token start, kept inside atoms and strings
    assert str(legacy_err("(" + ch + ")")) == "invalid character: code %d" % ord(ch)
    assert legacy_parse("(a" + ch + " '" + ch + "')") == [["a" + ch, ch]]


def test_non_ascii_default_accepts_printable_text():
    assert loads("(name café) (d 'naïve ☃')") == [["name", "café"], ["d", "naïve ☃"]]
    e = err("(a\xa0b)")                 # NBSP is not printable: not an atom char
    assert e.value == "invalid character: code 160" and e.col == 3


def test_non_ascii_ascii_only_rejects_everywhere():
    for text, col in [("(name café)", 10), ("'é'", 2), ("# é\n", 3)]:
        e = err(text, ascii_only=True)
        assert e.value == "invalid character: code 233" and e.col == col


def test_non_ascii_legacy_rejects_only_at_token_start():
    assert str(legacy_err("(é)")) == "invalid character: code 233"
    assert legacy_parse("(café 'é')") == [["café", "é"]]


def test_errors_are_one_line_with_position():
    e = err("(a\n  (b\n")
    assert isinstance(e, errors.SxpParseError) and isinstance(e, errors.InputError)
    assert "\n" not in str(e)
    assert (e.source, e.line, e.col) == ("t", 2, 3)


# -- Parser API -----------------------------------------------------------------

def test_parser_incremental_api():
    p = sxp.Parser()
    p.input("(a (b")
    assert not p.ready()
    p.input(" c)) ato")
    assert p.ready() and p.get_val() == ["a", ["b", "c"]]
    assert not p.ready()            # a top-level atom needs its terminator
    p.input("m ")
    assert p.get_all() == ["atom"]
    assert p.get_val() == "atom"
    with pytest.raises(IndexError):
        p.get_val()
    assert not p.at_eof()
    p.input("")                     # empty buffer means EOF
    assert p.at_eof() and not p.has_error()


def test_parser_counters_and_reset():
    p = sxp.Parser()
    p.input("(a\nbc")
    assert (p.line_no, p.char_no) == (1, 2)
    p.reset()
    assert (p.line_no, p.char_no, p.get_all(), p.at_eof()) == (0, 0, [], 0)
    p.set_error_stream(io.StringIO())


def test_parser_bytes_split_utf8():
    data = "(name café)".encode()
    p = sxp.Parser()
    cut = data.index(b"\xa9")
    p.input(data[:cut])
    p.input(data[cut:])
    p.input_eof()
    assert p.get_all() == [["name", "café"]]


def test_parser_legacy_top_level_atom_at_eof():
    assert legacy_parse("abc") == ["abc"]


def test_parse_error_legacy_construction():
    e = sxp.ParseError("the parser", "unexpected EOF")
    assert str(e) == "unexpected EOF" and e.value == "unexpected EOF"
    assert e.parser == "the parser"
    assert isinstance(e, errors.SxpParseError)


# -- 11.3 printer ---------------------------------------------------------------

def test_printer_spec_example():
    assert sxp.to_string(['a', 1, 2.5, 'b c', "it's", None, '']) == \
        "(a 1 2.5 'b c' \"it's\" 'None' '')"


@pytest.mark.parametrize("s,bare", [
    ("", False), ("@", True), ("abc", True), ("-1", True), ("/boot/vmlinuz", True),
    ("00:16:3e:00:00:01", True), ("a.b_c~d", True),
    ("tap:remus:h:9|aio:/x", False), ("phy:/dev/sda,xvda,w", False),
    ("a b", False), ("@@", False), ("café", False), ("a$b", False)])
def test_atomp(s, bare):
    assert bool(sxp.atomp(s)) is bare


@pytest.mark.parametrize("s,out", [
    ("it's", "\"it's\""),
    ("it's \"x\"", "'it\\'s \"x\"'"),
    ('a"b', "'a\"b'"),
    ("a\\b", "'a\\\\b'"),
    ("a\tb\nc\rd", "'a\\tb\\nc\\rd'"),
    ("\x01\x0b\x0c\x1f\x7f", "'\\x01\\x0b\\x0c\\x1f\\x7f'"),
    ("tap:remus:h:9|aio:/x", "'tap:remus:h:9|aio:/x'"),
])
def test_python2_repr_quoting(s, out):
    assert sxp.to_string(s) == out


def test_numbers_and_other_types():
    assert sxp.to_string([5, -1, True, False, 2 ** 64]) == \
        "(5 -1 True False '18446744073709551616')"       # a Python 2 long is quoted
    # Python 2 str(float): 12 significant digits, '.0' when integral
    assert sxp.to_string([1.0, 0.1 + 0.2, 1e16, 1250626179.35, 21.397345341]) == \
        "(1.0 0.3 1e+16 1250626179.35 21.397345341)"
    assert sxp.to_string(("a", ("b",), [])) == "(a (b) ())"
    assert sxp.to_string({"k": 1}) == "\"{'k': 1}\""


def test_non_ascii_printing():
    assert sxp.to_string(["name", "café"]) == "(name 'café')"
    assert sxp.to_string(["name", "café"], escape_non_ascii=True) == \
        "(name 'caf\\xc3\\xa9')"
    assert sxp.to_string(b"caf\xc3\xa9") == "'caf\\xc3\\xa9'"
    assert sxp.to_string("a\xa0b") == "'a\\xa0b'"


def test_show_and_show_xml(capsys):
    buf = io.StringIO()
    sxp.show(["a", ["b", "c d"]], buf)
    assert buf.getvalue() == "(a (b 'c d'))"
    sxp.show(["x"])
    assert capsys.readouterr().out == "(x)"
    buf = io.StringIO()
    sxp.show_xml(["vm", ["@", ["id", "1"]], ["name", "x"], "a b"], buf)
    assert buf.getvalue() == "<vm id=1><name>x</name> a b</vm>"


# -- 11.4 accessors -------------------------------------------------------------

VM = ["vm", ["@", ["id", "v1"], ["k", "v"]],
      ["name", "x"], ["device", ["vif", ["@", ["id", "vif1"]], ["mac", "m1"]]],
      "loose", ["device", ["vbd", ["uname", "phy:/dev/a"]]], ["empty"]]


def test_elementp_and_name():
    assert not sxp.elementp([]) and not sxp.elementp("a") and not sxp.elementp(None)
    assert sxp.elementp(["a"]) and sxp.elementp(("a",))
    assert sxp.elementp(["a", 1], "a") and not sxp.elementp(["a"], "b")
    assert sxp.name("s") == "s" and sxp.name(VM) == "vm"
    assert sxp.name([]) is None and sxp.name(5) is None


def test_attributes():
    assert sxp.attributes(VM) == [["id", "v1"], ["k", "v"]]
    assert sxp.attributes(["x", ["y"]]) == [] and sxp.attributes("x") == []
    assert sxp.attribute(VM, "k") == "v"
    assert sxp.attribute(VM, "nope", "dflt") == "dflt"
    assert sxp.attribute(42, "k") is None


def test_children_skip_attribute_list():
    kids = sxp.children(VM)
    assert kids[0] == ["name", "x"] and len(kids) == 5
    assert sxp.children(VM, "device") == [VM[3], VM[5]]
    assert sxp.children("x") == [] and sxp.children(["x"]) == []


def test_child_family():
    assert sxp.child(VM, "device") is VM[3]
    assert sxp.child(VM, "nope", "d") == "d"
    assert sxp.child_at(VM, 2) == "loose" and sxp.child_at(VM, 9, "d") == "d"
    assert [sxp.child0(VM), sxp.child1(VM), sxp.child2(VM), sxp.child3(VM),
            sxp.child4(VM)] == sxp.children(VM)
    assert sxp.child4(["x"], "d") == "d"


def test_child_value():
    assert sxp.child_value(["x", ["y", "1"]], "y") == "1"          # spec example
    assert sxp.child_value(VM, "empty", "d") == "d"                 # childless
    assert sxp.child_value(VM, "name") == "x"
    assert sxp.child_value(["x", ["y", ["@", ["id", "i"]], "2"]], "y") == "2"
    assert sxp.child_value("junk", "y", "d") == "d"


def test_ids():
    assert sxp.has_id(VM, "v1") and not sxp.has_id(VM, "x")
    assert sxp.with_id(VM, "vif1") is VM[3][1]      # any depth
    assert sxp.child_with_id(VM, "vif1") is None      # direct items only
    assert sxp.child_with_id([VM], "v1") is VM
    assert sxp.with_id("x", "a", "d") == "d"


def test_elements_preorder_with_context():
    root = ["a", ["b", ["c"]], "x", ["d"]]
    got = list(sxp.elements(root))
    ctx_b = (0, root, None)
    assert got == [(root, None), (root[1], ctx_b),
                   (["c"], (0, root[1], ctx_b)), (["d"], (2, root, None))]


def test_child_map():
    m, v = sxp.child_map(VM)
    assert list(m) == ["name", "device", "empty"]
    assert m["device"] == [VM[3], VM[5]] and v == ["loose"]


def test_merge():
    s1 = ["vm", ["name", "a"], ["memory", "64"], "x1"]
    s2 = ["vm", ["memory", "128"], ["cpus", "2"], "x2"]
    assert sxp.merge(s1, s2) == ["vm", ["name", "a"], ["memory", "64"], ["cpus", "2"], "x1"]
    assert sxp.merge(None, s2) is s2 and sxp.merge(s1, None) is s1
    assert sxp.merge("a", "b") == "a"
    out = sxp.merge_list(["r"], [["d", "1"], ["d", "2"]], [["d", "3"]])
    assert out == ["r", ["d", "1"], ["d", "2"]]


def test_from_string_family():
    assert sxp.from_string("") == []
    assert sxp.from_string("(a) (b)") == ["a"]
    with pytest.raises(TypeError):                   # [quirk] kept
        sxp.from_string("  # nothing")
    assert sxp.all_from_string("") is None
    assert sxp.parse(io.StringIO("(a)\n(b\nc)\n")) == [["a"], ["b", "c"]]


def test_xend_test_sxp_expectations(fixtures_dir):
    # tools/python/xen/xend/tests/test_sxp.py (fixtures/xen/xend-tests)
    assert sxp.all_from_string("String") == ["String"]
    assert sxp.all_from_string("(String Thing)") == [["String", "Thing"]]
    assert sxp.all_from_string("(String) (Thing)") == [["String"], ["Thing"]]
    for rel in ("xen/xend-tests/xend-config.sxp", "xen/examples/xend-config.sxp"):
        with open(fixtures_dir / rel, "rb") as fin:
            config = sxp.parse(fin)
        assert sxp.child_value(config, "xend-relocation-hosts-allow") == \
            "^localhost$ ^localhost\\.localdomain$"
        with open(fixtures_dir / rel, "rb") as fin:
            assert sxp.parse(fin, legacy=True) == config


# -- robustness -------------------------------------------------------------------

def test_deep_nesting_bounded():
    # the reader refuses nesting past MAX_DEPTH at the first '(' too many
    # (issue 12: millions of '(' took gigabytes before anything noticed) ...
    e = err("(" * 100000)
    assert (e.line, e.col) == (1, sxp.reader.MAX_DEPTH + 1) and "\n" not in str(e)
    assert "nested more than" in str(e)
    assert len(loads("(" * 256 + ")" * 256)) == 1
    # ... the legacy parser keeps the legacy reader's unbounded depth
    p = sxp.Parser(legacy=True)
    p.input("(" * 1000 + ")" * 1000)
    p.input_eof()
    assert p.ready()
    # and the accessors and the printer stay iterative on any depth
    v = "a"
    for _ in range(100000):
        v = ["x", v]                 # what "(x " * 100000 + "a" + ")" * 100000 was
    text = sxp.to_string(v)
    assert len(text) == 100000 * 4 + 1 and text.startswith("(x (x ")
    assert sum(1 for _ in sxp.elements(v)) == 100000
    assert sxp.with_id(v, "q") is None
    assert sxp.to_string(sxp.merge(v, v)) == text
    buf = io.StringIO()
    sxp.show_xml(v, buf)
    assert buf.getvalue().startswith("<x><x>")


def test_ten_megabyte_inputs():
    unit = "(device (vbd (uname 'phy:/dev/vg/lv') (dev xvda) (mode w)))\n"
    body = unit * (10_000_000 // len(unit))
    t0 = time.perf_counter()
    assert len(loads("(domain\n" + body + ")")[0]) == len(body) // len(unit) + 1
    e = err("(domain\n" + body)                       # final ')' missing
    assert (e.line, e.col) == (1, 1) and "\n" not in str(e)
    body = unit * (1_000_000 // len(unit))
    e = err("(domain\n" + body + "))")
    assert (e.line, e.col) == (body.count("\n") + 2, 2)
    e = err("(domain\n" + body + "\x00)")
    assert e.value == "invalid character: code 0"
    assert (e.line, e.col) == (body.count("\n") + 2, 1)
    assert time.perf_counter() - t0 < 30


def test_load_file_utf8_and_positions(tmp_path):
    f = tmp_path / "bad.sxp"
    f.write_bytes(b"(a\n (b \xff))")
    with pytest.raises(sxp.ParseError) as ei:
        sxp.load_file(f)
    assert (ei.value.source, ei.value.line, ei.value.col) == (str(f), 2, 5)
    assert "UTF-8" in ei.value.value
    f.write_bytes(b"(a\n (b \x00))")
    with pytest.raises(sxp.ParseError) as ei:
        sxp.load_file(f)
    assert (ei.value.line, ei.value.col) == (2, 5)
    f.write_bytes("\ufeff(name 'café')".encode())
    assert sxp.load_file(f) == [["name", "café"]]
    with pytest.raises(FileNotFoundError):
        sxp.load_file(tmp_path / "missing")


def test_load_file_continuations_positions_refer_to_file(tmp_path):
    f = tmp_path / "c.sexpr"
    f.write_text("(domain (name 'x')\\\n(args 'a/\\\nb')\\\n(x))\\\n  )\n")
    with pytest.raises(sxp.ParseError) as ei:
        sxp.load_file(f, continuations=True)
    assert (ei.value.line, ei.value.col) == (5, 3)
    assert sxp.load_file(f, continuations=True, lenient=True) == \
        [["domain", ["name", "x"], ["args", "a/b"], ["x"]]]


# -- Hypothesis: round trip and the character-at-a-time oracle -----------------

text_atoms = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
sxprs = st.recursive(text_atoms, lambda kids: st.lists(kids, max_size=5), max_leaves=30)


@settings(max_examples=250, deadline=None)
@given(st.lists(sxprs, max_size=4))
def test_round_trip(value):
    assert loads(sxp.to_string(value)) == [value]
    # escape_non_ascii writes pure ASCII: the UTF-8 bytes as \\xhh escapes
    escaped = sxp.to_string(value, escape_non_ascii=True)
    assert escaped.isascii()
    assert loads(escaped) == [_as_utf8_bytes(value)]


def _as_utf8_bytes(v):
    if isinstance(v, list):
        return [_as_utf8_bytes(x) for x in v]
    return v.encode("utf-8").decode("latin-1")


class _Fail(Exception):
    def __init__(self, kind, pos=None):
        self.kind, self.pos = kind, pos


_EOF = object()
_ESC = {"a": "\a", "b": "\b", "t": "\t", "n": "\n", "v": "\v", "f": "\f",
        "r": "\r", "\\": "\\", "'": "'", '"': '"'}
_CTRL = {chr(c) for c in range(32) if chr(c) not in " \t\n\v\f\r"} | {"\x7f"}


def _oracle(text, legacy, ascii_only=False, lenient=False):
    """Section 11.2, one character at a time (no regular expressions).

    Returns the values, or raises _Fail(kind, (line, col)).
    """
    vals, stack, opens = [], [], []
    cur = vals
    state, buf, delim, spos = "top", "", None, None
    chars = list(text) + [_EOF]
    i = 0
    num = ndig = 0
    esc_pos = None

    def bad_here(c):
        return not legacy and (c in _CTRL or (ascii_only and c > "\x7f"))

    while i < len(chars):
        c = chars[i]
        pos = _pos(text, i)
        if state == "top":
            if c is _EOF or c == "\x04":
                if stack:
                    if legacy:
                        raise _Fail("unexpected EOF")
                    if not lenient:
                        raise _Fail("unexpected EOF", opens[-1])
                    while stack:
                        done, cur = cur, stack.pop()
                        cur.append(done)
                return vals
            if c in " \t\n\v\f\r":
                pass
            elif c == "#":
                state = "comment"
            elif c == "(":
                stack.append(cur)
                opens.append(pos)
                cur = []
            elif c == ")":
                if not stack:
                    if not lenient:
                        raise _Fail("syntax error", pos)
                else:
                    done, cur = cur, stack.pop()
                    opens.pop()
                    cur.append(done)
            elif c in "'\"":
                state, delim, buf, spos = "string", c, "", pos
            elif ("!" <= c <= "~") or (not legacy and not ascii_only
                                       and c > "\x7f" and c.isprintable()):
                state, buf = "atom", c
            else:
                raise _Fail("invalid character: code %d" % ord(c), pos)
        elif state == "atom":
            if c is _EOF:
                cur.append(buf)
                if stack and legacy:
                    return vals                      # [quirk] list lost
                state = "top"
                continue
            stop = c in " \t\n\v\f\r{}()<>[];#"
            if not legacy and (c in _CTRL or (c > "\x7f" and (ascii_only or not c.isprintable()))):
                stop = True
            if stop:
                cur.append(buf)
                state = "top"
                continue
            buf += c
        elif state == "comment":
            if c is _EOF:
                if stack and legacy:
                    return vals
                state = "top"
                continue
            if c == "\n":
                state = "top"
            elif bad_here(c):
                state = "top"
                continue
        elif state == "string":
            if c is _EOF:
                raise _Fail("unexpected EOF", None if legacy else spos)
            if c == delim:
                cur.append(buf)
                state = "top"
            elif c == "\\":
                state, esc_pos = "escape", pos
            elif bad_here(c):
                raise _Fail("invalid character: code %d" % ord(c), pos)
            else:
                buf += c
        elif state == "escape":
            if c is _EOF:
                raise _Fail("unexpected EOF", None if legacy else spos)
            if bad_here(c):
                raise _Fail("invalid character: code %d" % ord(c), pos)
            if c in _ESC:
                buf += _ESC[c]
                state = "string"
            elif c == "x":
                state, num, ndig = "hex", 0, 0
            elif c in "01234567":
                state, num, ndig = "octal", 0, 0
                continue
            else:
                buf += "\\" if legacy else "\\" + c
                state = "string"
        elif state == "octal":
            if c is _EOF:
                raise _Fail("unexpected EOF", None if legacy else spos)
            if "0" <= c <= "7":
                num, ndig = num * 8 + ord(c) - 48, ndig + 1
                if num > 255:
                    raise _Fail("invalid octal escape", esc_pos)
                if ndig == 3:
                    buf += chr(num)
                    state = "string"
            else:
                buf += chr(num)
                state = "string"
                continue
        elif state == "hex":
            if c is _EOF:
                raise _Fail("unexpected EOF", None if legacy else spos)
            if c in string.hexdigits:
                if legacy:
                    base = "0" if c <= "9" else "A" if c <= "F" else "a"
                    num = num * 16 + ord(c) - ord(base)
                else:
                    num = num * 16 + int(c, 16)
                ndig += 1
                if ndig == 2:
                    buf += chr(num)
                    state = "string"
            elif legacy:
                raise _Fail("NameError")
            elif ndig == 0:
                raise _Fail("invalid hex escape", esc_pos)
            else:
                buf += chr(num)
                state = "string"
                continue
        i += 1
    return vals


def _pos(text, i):
    head = text[:i]
    nl = head.count("\n")
    return (nl + 1, i - head.rfind("\n")) if nl else (1, i + 1)


def _ours(text, legacy, chunks=None, **kw):
    p = sxp.Parser(legacy=legacy, source="t", **kw)
    p._warn = lambda w: None
    try:
        for part in (chunks or [text]):
            if part:
                p.input(part)
        p.input_eof()
    except NameError:
        return ("fail", "NameError", None)
    except sxp.ParseError as e:
        kind = e.value
        for k in ("unexpected EOF", "syntax error", "invalid octal escape",
                  "invalid hex escape"):
            if kind.startswith(k):
                kind = k
        return ("fail", kind, None if legacy else (e.line, e.col))
    return ("ok", p.get_all())


def _expected(text, legacy, **kw):
    try:
        return ("ok", _oracle(text, legacy, **kw))
    except _Fail as f:
        return ("fail", f.kind, None if legacy else f.pos)


ALPHABET = list("()ab '\"\\#x4A7081[;\n\t") + ["\x04", "\x00", "é", "\xa0", "\\x4a", "\\q"]
texts = st.lists(st.sampled_from(ALPHABET), max_size=25).map("".join)


@settings(max_examples=1500, deadline=None)
@given(texts, st.booleans())
def test_reader_agrees_with_character_oracle(text, legacy):
    assert _ours(text, legacy) == _expected(text, legacy)


@settings(max_examples=600, deadline=None)
@given(texts, st.sampled_from([{"ascii_only": True}, {"lenient": True},
                               {"ascii_only": True, "lenient": True}]))
def test_reader_modes_agree_with_character_oracle(text, kw):
    assert _ours(text, False, **kw) == _expected(text, False, **kw)


@settings(max_examples=500, deadline=None)
@given(texts, st.lists(st.integers(0, 25), max_size=6), st.booleans())
def test_chunked_input_agrees_with_whole_input(text, cuts, legacy):
    cuts = sorted(set(c for c in cuts if c <= len(text)))
    chunks = [text[a:b] for a, b in zip([0] + cuts, cuts + [len(text)])]
    assert _ours(text, legacy, chunks) == _ours(text, legacy)


def test_fixture_dir_is_readable(fixtures_dir):
    assert pathlib.Path(fixtures_dir, "xen", "xend-tests", "xend-config.sxp").is_file()
