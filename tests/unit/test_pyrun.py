"""xen_remus_compat.py2: Python 2 scripts translated and run unchanged.

Expected values are Python 2's behaviour (legacy-api.md header: "Strings
are byte strings, ``/`` is integer division on ints"; §1: the remus
command's constructs) and the task brief (in-memory translation, line
numbers of the script, Python 3 scripts run as they are, str accepted at
fd and socket boundaries).  Each construct the translation must handle is
checked on its own.
"""
from __future__ import annotations

import ast
import io
import os
import sys
import textwrap

import pytest

from xen_remus_compat import errors
from xen_remus_compat.py2 import run as pyrun


def write(tmp_path, src, name="script.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(src).lstrip("\n"))
    return path


def run(tmp_path, src, argv=(), name="script.py", stdin="", dialect="auto"):
    path = write(tmp_path, src, name)
    out, err = io.StringIO(), io.StringIO()
    rc = pyrun.run_file(str(path), list(argv), dialect=dialect, stdout=out,
                        stderr=err, stdin=io.StringIO(stdin))
    return rc, out.getvalue(), err.getvalue()


def ok(tmp_path, src, **kw):
    rc, out, err = run(tmp_path, src, **kw)
    assert rc == 0, err
    return out


# -- print ---------------------------------------------------------------------

def test_print_statement(tmp_path):
    assert ok(tmp_path, 'print "a", 1\nprint\nprint "b"\n') == "a 1\n\nb\n"


def test_print_to_stderr(tmp_path):
    rc, out, err = run(tmp_path, 'import sys\nprint >>sys.stderr, "oops", 2\nprint "out"\n')
    assert (rc, out, err) == (0, "out\n", "oops 2\n")


def test_print_trailing_comma_soft_space(tmp_path):
    # legacy-api.md §1.5: 'installing buffer on <ifb>...  done.' (two spaces)
    src = 'print "installing buffer on ifb0...",\nprint " done."\n'
    assert ok(tmp_path, src) == "installing buffer on ifb0...  done.\n"


def test_print_tuple_statement_stays_a_tuple(tmp_path):
    # in a Python 2 script (the first line says so) a parenthesised print
    # of two values prints a tuple
    assert ok(tmp_path, 'print "x"\nprint ("a", "b")\n') == "x\n('a', 'b')\n"


# -- exceptions ------------------------------------------------------------------

def test_except_comma(tmp_path):
    src = """
    try:
        raise ValueError("bad")
    except (KeyError, ValueError), e:
        print "caught", e
    """
    assert ok(tmp_path, src) == "caught bad\n"


def test_raise_comma(tmp_path):
    src = """
    class CfgException(Exception): pass
    try:
        raise CfgException, 'Missing domain'
    except CfgException, inst:
        print str(inst)
    """
    assert ok(tmp_path, src) == "Missing domain\n"


# -- modules and builtins ------------------------------------------------------------

def test_xmlrpclib(tmp_path):
    src = """
    import xmlrpclib
    try:
        raise xmlrpclib.Fault(3, 'no domain')
    except xmlrpclib.Fault, f:
        print f.faultCode, f.faultString
    """
    assert ok(tmp_path, src) == "3 no domain\n"


def test_dict_methods(tmp_path):
    src = """
    d = {'b': 2, 'a': 1}
    print sorted([k + str(v) for k, v in d.iteritems()])
    print d.has_key('a'), d.has_key('z')
    print sorted(d.keys())[0], sum(d.itervalues())
    """
    assert ok(tmp_path, src) == "['a1', 'b2']\nTrue False\na 3\n"


def test_octal_and_long_literals(tmp_path):
    assert ok(tmp_path, "print 0755, 0666 & 0777, 10L * 3\n") == "493 438 30\n"


def test_py2_builtins(tmp_path):
    src = """
    print [i for i in xrange(3)], isinstance('x', basestring), unicode('u'), long(7)
    """
    assert ok(tmp_path, src) == "[0, 1, 2] True u 7\n"


def test_file_builtin_becomes_open(tmp_path):
    (tmp_path / "data.txt").write_text("hello\n")
    src = "import os\nprint file(os.path.join(os.path.dirname(__file__), 'data.txt')).read().strip()\n"
    assert ok(tmp_path, src) == "hello\n"
    assert "open(" in pyrun.translate("f = file('x')\n").text


def test_file_left_alone_when_bound(tmp_path):
    src = "for file in ['a', 'b']:\n    print file\n"
    t = pyrun.translate(src)
    assert "open" not in t.text
    assert ok(tmp_path, src) == "a\nb\n"


# -- division ----------------------------------------------------------------------

def test_int_division_floors(tmp_path):
    src = "needed = 3000\nprint needed/1024, -7/2, 7/2*2, 2**10/3\n"
    assert ok(tmp_path, src) == "2 -4 6 341\n"


def test_float_division_stays_true(tmp_path):
    src = ("interval, elapsed = 200, 50.5\n"
           "print (interval - elapsed)/1000, 7.0/2, 7/2.0, float(7)/2, 1/1e3\n")
    assert ok(tmp_path, src) == "0.1495 3.5 3.5 3.5 0.001\n"


def test_division_chains_left_to_right(tmp_path):
    assert ok(tmp_path, "a = 100\nprint a * 3 / 7 / 2 % 5, a / (9 / 2)\n") == "1 25\n"


def test_augmented_division(tmp_path):
    src = "x = 7\nx /= 2\ny = 7.0\ny /= 2\nprint x, y\n"
    assert ok(tmp_path, src) == "3 3.5\n"


def test_future_division_left_alone(tmp_path):
    src = "from __future__ import division\nprint 7/2\n"
    assert "_py2" not in pyrun.translate(src).text
    assert ok(tmp_path, src) == "3.5\n"


def test_float_literal_division_is_not_rewritten():
    text = pyrun.translate("x = y / 1000.0 + z / -2.5 + float(a) / b\n").text
    assert "_py2" not in text and text.count("/") == 3


def test_classes_with_div(tmp_path):
    src = """
    class Size(object):
        def __init__(self, n): self.n = n
        def __div__(self, k): return Size(self.n / k)
    print (Size(9) / 2).n
    """
    assert ok(tmp_path, src) == "4\n"


# -- str and bytes at fds and sockets ------------------------------------------------

def test_os_write_str_to_fifo(tmp_path):
    fifo = tmp_path / "ctl"
    os.mkfifo(fifo)
    src = f"""
    import os
    fd = os.open({str(fifo)!r}, os.O_RDWR)
    os.write(fd, 'flush')
    msg = os.read(fd, 5)
    print msg == 'flush', msg, len(msg), msg[0], repr(msg)
    if msg == 'flush' and 'us' in msg and msg.startswith('fl'):
        print 'token ok'
    """
    assert ok(tmp_path, src) == "True flush 5 f 'flush'\ntoken ok\n"


def test_socket_sends_str_and_reads_text(tmp_path):
    src = """
    import socket
    a, b = socket.socketpair()
    a.sendall('receive\\n')
    line = b.recv(100)
    print line.strip() == 'receive', line.strip()
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.close()
    """
    assert ok(tmp_path, src) == "True receive\n"


# -- tabs, sibling modules, argv, exit status --------------------------------------

def test_mixed_tab_indentation(tmp_path):
    # valid Python 2 (tab = 8 columns), a TabError in Python 3
    src = "if 1:\n        x = 1\n\ty = 2\n        print x + y\n"
    assert ok(tmp_path, src) == "3\n"


def test_sibling_module_translated_and_nothing_written(tmp_path):
    write(tmp_path, "def half(n):\n    return n / 2\nNAME = 'helper'\n", name="helper.py")
    path = write(tmp_path, "import helper\nprint helper.half(7), helper.NAME\n")
    before = sorted(os.listdir(tmp_path))
    out = io.StringIO()
    assert pyrun.run_file(str(path), stdout=out, stderr=io.StringIO()) == 0
    assert out.getvalue() == "3 helper\n"
    assert sorted(os.listdir(tmp_path)) == before       # no .bak, no __pycache__
    assert "helper" not in sys.modules or \
        not getattr(sys.modules["helper"], "__file__", "").startswith(str(tmp_path))


def test_argv_name_and_file(tmp_path):
    src = "import sys\nprint sys.argv[1:], __name__, __file__ == sys.argv[0]\n"
    assert ok(tmp_path, src, argv=["-i", "100", "dom"]) == "['-i', '100', 'dom'] __main__ True\n"
    assert sys.argv[0] != str(tmp_path / "script.py")        # restored


@pytest.mark.parametrize("body,status,stderr", [
    ("sys.exit(3)", 3, ""), ("sys.exit()", 0, ""), ("sys.exit('Missing domain')", 1,
                                                      "Missing domain\n"),
    ("raise SystemExit(256 + 2)", 2, "")])
def test_exit_status(tmp_path, body, status, stderr):
    rc, out, err = run(tmp_path, f"import sys\n{body}\n")
    assert (rc, err) == (status, stderr)


def test_uncaught_exception_traceback_names_script_lines(tmp_path):
    src = "import sys\n\ndef f():\n    print 'x'\n    raise IOError, 'no fifo'\n\nf()\n"
    rc, out, err = run(tmp_path, src)
    path = str(tmp_path / "script.py")
    assert rc == 1
    assert err.startswith("Traceback (most recent call last):\n")
    assert f'File "{path}", line 7, in <module>' in err
    assert f'File "{path}", line 5, in f' in err
    assert err.rstrip().endswith("OSError: no fifo")
    assert "xen_remus_compat/py2/" not in err


def test_line_numbers_survive_fixers_that_add_lines(tmp_path):
    # fix_reduce adds 'from functools import reduce': one more line
    src = "import os\nx = reduce(lambda a, b: a + b, [1, 2])\n\n\nraise KeyError, 'line five'\n"
    t = pyrun.translate(src)
    assert len(t.text.splitlines()) == len(src.splitlines()) + 1
    rc, out, err = run(tmp_path, src)
    assert rc == 1 and ", line 5, in <module>" in err


def test_stdin_is_the_given_stream(tmp_path):
    src = "import sys\nprint sys.stdin.readline().strip()\n"
    assert ok(tmp_path, src, stdin="c2\n") == "c2\n"


# -- dialect detection -----------------------------------------------------------------

@pytest.mark.parametrize("src,dialect", [
    ("#!/usr/bin/env python3\nprint(7/2)\n", "3"),
    ("#!/usr/bin/python2.7\nprint(7/2)\n", "2"),
    ("x = 1\nprint(f'{x}')\n", "3"),
    ("import sys\nprint('x', file=sys.stderr)\n", "3"),
    ("print('a', 'b')\n", "3"),
    ("import xmlrpc.client\n", "3"),
    ("def f(a: int) -> int:\n    return a\n", "3"),
    ('print "x"\n', "2"),
    ("d = {}\nfor k, v in d.iteritems(): pass\n", "2"),
    ("import xmlrpclib\n", "2"),
    ("for i in xrange(3): pass\n", "2"),
    ("x = 7 / 2\n", "2"),                     # nothing Python 3-only: legacy
    ("from __future__ import print_function\nprint('a', 'b')\nd.has_key(1)\n", "2"),
])
def test_detect(src, dialect):
    assert pyrun.detect(src)[0] == dialect


def test_python3_script_runs_untouched(tmp_path):
    src = "import sys\nn = 7\nprint(f'{n / 2}', file=sys.stdout)\n"
    t = pyrun.translate(src)
    assert (t.dialect, t.text, t.helper) == ("3", src, None)
    assert ok(tmp_path, src) == "3.5\n"


def test_forced_dialect(tmp_path):
    src = "x = 7\nprint(x / 2)\n"
    assert ok(tmp_path, src, dialect="3") == "3.5\n"
    assert ok(tmp_path, src, dialect="2") == "3\n"
    with pytest.raises(errors.InputError):
        pyrun.translate(src, dialect="4")


# -- translation errors ---------------------------------------------------------------

def test_syntax_error_in_python2_names_the_line(tmp_path):
    path = write(tmp_path, 'import sys\n\ndef f(:\n    print "x"\n')
    with pytest.raises(pyrun.TranslationError) as ei:
        pyrun.translate_file(str(path))
    e = ei.value
    assert isinstance(e, errors.InputError) and e.exit_status == 1
    assert (e.source, e.line, e.col) == (str(path), 3, 7)
    assert str(e).startswith(f"{path}:3:7: not valid Python 2: invalid syntax")
    assert "def f(:" in str(e)


def test_unterminated_string_and_bad_indent(tmp_path):
    with pytest.raises(pyrun.TranslationError) as ei:
        pyrun.translate('x = 1\ny = "abc\n', path="s.py")
    assert ei.value.line == 2
    with pytest.raises(pyrun.TranslationError) as ei:
        pyrun.translate("if 1:\n    x = 1\n  y = 2\n", path="s.py")
    assert ei.value.line == 3 and "IndentationError" in str(ei.value)


def test_python3_syntax_error_names_the_line(tmp_path):
    path = write(tmp_path, "#!/usr/bin/python3\nx = 1\ny = (\n")
    with pytest.raises(pyrun.TranslationError) as ei:
        pyrun.translate_file(str(path)).code()
    assert ei.value.line == 3 and "not valid Python 3" in str(ei.value)


def test_unreadable_and_undecodable_scripts(tmp_path):
    with pytest.raises(errors.InputError, match="cannot read script"):
        pyrun.translate_file(str(tmp_path / "missing.py"))
    bad = tmp_path / "latin.py"
    bad.write_bytes(b"x = 1\ns = '\xe9'\n")
    with pytest.raises(pyrun.TranslationError) as ei:
        pyrun.translate_file(str(bad))
    assert ei.value.line == 2


def test_latin1_declared_source(tmp_path):
    p = tmp_path / "latin.py"
    p.write_bytes(b"# -*- coding: latin-1 -*-\nprint len('\xe9')\n")
    out, err = io.StringIO(), io.StringIO()
    assert pyrun.run_file(str(p), stdout=out, stderr=err) == 0
    assert out.getvalue() == "1\n"


# -- the text and the helpers' name ----------------------------------------------------

def test_show_text_is_standalone_python3():
    src = '#!/usr/bin/python\n"""doc"""\nimport os\nprint 7/2\nos.write(1, "")\n'
    shown = pyrun.translate(src).show_text()
    ast.parse(shown)
    lines = shown.splitlines()
    assert lines[:2] == ["#!/usr/bin/python", '"""doc"""']
    assert lines[2].startswith("import xen_remus_compat.py2.runtime as _py2")
    assert "_py2.div(7, 2)" in shown and "_py2.os_write(1" in shown


def test_helper_name_avoids_the_scripts_names(tmp_path):
    src = "_py2 = 'mine'\nprint _py2, 9/2\n"
    t = pyrun.translate(src)
    assert t.helper == "_py2_"
    assert ok(tmp_path, src) == "mine 4\n"


def test_translation_writes_nothing(tmp_path):
    path = write(tmp_path, 'print "x"\n')
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    pyrun.translate_file(str(path))
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == before


def test_fix_import_is_not_run():
    # a sibling import stays absolute: __main__ has no package
    assert "from ." not in pyrun.translate("import helper\n", path="/tmp/x/s.py").text


# -- legacy import names -----------------------------------------------------------------

def test_legacy_names_found_even_without_the_pth_hook(tmp_path, monkeypatch):
    from xen_remus_compat import _xenalias
    monkeypatch.setattr(sys, "meta_path", [f for f in sys.meta_path
                                           if not isinstance(f, (_xenalias.AliasFinder,
                                                                 _xenalias.ParentFinder))])
    for name in [m for m in sys.modules if m == "xen" or m.startswith("xen.")]:
        monkeypatch.delitem(sys.modules, name)
    src = """
    from xen.remus import vm, save
    from xen.xend import XendOptions
    import xen.lowlevel.netlink
    print vm.__name__, save.__name__, XendOptions.__name__
    """
    assert ok(tmp_path, src) == ("xen_remus_compat.legacy.vm xen_remus_compat.legacy.save "
                                 "xen_remus_compat.legacy.xend.XendOptions\n")


def test_missing_xend_module_message(tmp_path):
    rc, out, err = run(tmp_path, "from xen.xend import XendCheckpoint\n")
    assert rc == 1
    last = err.strip().splitlines()[-1]
    assert "xen.xend.XendCheckpoint is not provided" in last
    assert "'xl save', 'xl restore', 'xl migrate'" in last


# -- commands legacy scripts run -----------------------------------------------------------

class FakeRunner:
    def __init__(self):
        self.calls = []

    def __call__(self, argv, *, cwd=None, **kw):
        from xen_remus_compat.runner import Result
        self.calls.append(list(argv))
        return Result(list(argv), 0, "ran\n", "")


def test_legacy_commands_map_xm_to_xl():
    fake = FakeRunner()
    run_ = pyrun.LegacyCommands(run=fake, xl="/usr/sbin/xl")
    run_(["sudo", "xm", "destroy", "7"])
    run_(["xm", "migrate", "--live", "7", "b"])     # no xl equivalent: untouched
    run_(["ifdown", "eth2"])
    assert fake.calls == [["sudo", "/usr/sbin/xl", "destroy", "7"],
                          ["xm", "migrate", "--live", "7", "b"], ["ifdown", "eth2"]]


def test_legacy_commands_sim_never_touch_the_host():
    fake, destroyed = FakeRunner(), []
    run_ = pyrun.LegacyCommands(sim=True, run=fake, destroy=destroyed.append, xl="xl")
    assert run_(["sudo", "ifdown", "eth2"]).returncode == 0
    assert run_("sudo xm destroy simguest".split()).stdout == ""
    run_(["sudo", "ifup", "eth2"])
    run_(["echo", "hi"])
    assert destroyed == ["simguest"]
    assert fake.calls == [["echo", "hi"]]


def test_legacy_commands_through_util_runcmd(tmp_path, monkeypatch):
    from xen_remus_compat.legacy import util
    fake = FakeRunner()
    monkeypatch.setattr(util, "RUNNER", pyrun.LegacyCommands(run=fake, xl="xl"))
    src = "import sys\nfrom xen.remus import util\nsys.stdout.write(util.runcmd('sudo xm destroy 3'))\n"
    assert ok(tmp_path, src) == "ran\n"
    assert fake.calls == [["sudo", "xl", "destroy", "3"]]


# -- the run-legacy command (in-process convention) ----------------------------------------

def test_run_legacy_show(tmp_path):
    from xen_remus_compat.cli import run_legacy
    path = write(tmp_path, 'print "x", 3/2\n')
    args = run_legacy.build_parser().parse_args(["--show", str(path)])
    out, err = io.StringIO(), io.StringIO()
    assert run_legacy.run(args, out, err) == 0
    assert "print(\"x\", _py2.div(3, 2))" in out.getvalue()
    assert err.getvalue().startswith(f"# {path}: Python 2 (")


def test_run_legacy_runs_with_args(tmp_path):
    from xen_remus_compat.cli import run_legacy
    path = write(tmp_path, "import sys\nprint ' '.join(sys.argv[1:])\nsys.exit(4)\n")
    args = run_legacy.build_parser().parse_args([str(path), "-i", "100", "dom"])
    out, err = io.StringIO(), io.StringIO()
    assert run_legacy.run(args, out, err) == 4
    assert out.getvalue() == "-i 100 dom\n"


def test_run_legacy_add_parser_convention():
    import argparse
    from xen_remus_compat.cli import run_legacy
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    run_legacy.add_parser(sub, [])
    args = parser.parse_args(["run-legacy", "--sim", "s.py", "--sim", "x"])
    assert args.run is run_legacy.run
    assert (args.sim, args.script, args.args) == (True, "s.py", ["--sim", "x"])


def test_traceback_hides_the_python2_helpers(tmp_path):
    rc, out, err = run(tmp_path, "n = 3\nprint n / 0\n")
    assert rc == 1 and "xen_remus_compat/py2/" not in err
    # Python 2's own message for int / 0
    assert err.rstrip().splitlines()[-1] == "ZeroDivisionError: integer division or modulo by zero"
    assert err.rstrip().splitlines()[-2].strip() == "print n / 0"
