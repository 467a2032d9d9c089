"""Bash completion (issue 14 item 8): generated from the three parsers,
committed in completions/ (what the wheel and the Debian package install),
and completing options, choices, subcommands and files when sourced in bash.
"""
from __future__ import annotations

import io
import pathlib
import shutil
import subprocess

import pytest

from xen_remus_compat.cli import completion, main

ROOT = pathlib.Path(__file__).resolve().parents[2]
COMPLETIONS = ROOT / "completions"
BASH = shutil.which("bash")


def test_committed_scripts_are_generated_from_the_current_parsers():
    scripts = completion.generate(main_parser=main.build_parser)
    stale = [c for c, text in scripts.items()
             if not (COMPLETIONS / c).is_file()
             or (COMPLETIONS / c).read_text() != text]
    assert not stale, (f"completions/{', '.join(stale)} out of date with the "
                       "parsers: run `make completions`")


def test_every_option_of_every_parser_is_offered():
    nodes = completion.nodes_for("xen-remus-compat", main.build_parser)
    commands = {n.path for n in nodes}
    assert ("stream", "verify") in commands and ("convert",) in commands
    convert = next(n for n in nodes if n.path == ("convert",))
    assert {"--output-dir", "--remus-disks", "--to-pvh"} <= set(convert.options)
    assert convert.values["--output-dir"] == "dir"
    assert convert.values["--remus-disks"] == "words:script plain"
    remus = completion.nodes_for("remus")[0]
    assert {"-i", "--interval", "-p", "--blackhole", "--sim", "--no-disk"} <= set(remus.options)
    assert remus.values["--tls-ca"] == "file" and remus.values["-s"] == "command"
    assert "--blackhole" not in remus.values              # a flag takes no value
    receiver = completion.nodes_for("remus-receiver")[0]
    assert receiver.values["--ready-file"] == "file"
    assert receiver.values["--port"] == "none"


def _complete(command: str, words, cwd=ROOT):
    """COMPREPLY after sourcing completions/COMMAND in a bare bash, for the
    command line ``words`` (the command first, the word completed last)."""
    script = ('source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); '
              'COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}; '
              'fn=$(complete -p "$1" | sed -E "s/.*-F ([^ ]+).*/\\1/"); "$fn"; '
              'printf "%s\\n" "${COMPREPLY[@]}"')
    out = subprocess.run([BASH, "--norc", "--noprofile", "-c", script, "bash",
                          str(COMPLETIONS / command), *words],
                         cwd=cwd, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return [line for line in out.stdout.splitlines() if line]


needs_bash = pytest.mark.skipif(BASH is None, reason="bash is not installed")


@needs_bash
@pytest.mark.parametrize("command,words,expected", [
    ("remus", ["--bl"], ["--blackhole"]),
    ("remus", ["-i", "100", "--no-"], ["--no-net", "--no-compression", "--no-disk"]),
    ("remus", ["--source", "x"], ["xl", "xend"]),
    ("remus", ["--source=", "li"], ["libxl"]),           # '=' split off by bash
    ("remus-receiver", ["--tls"], ["--tls-cert", "--tls-key", "--tls-ca"]),
    ("remus-receiver", ["--insecure", "--max-"], ["--max-sessions", "--max-memory"]),
    ("xen-remus-compat", ["st"], ["stream"]),
    ("xen-remus-compat", ["-v", "stream", ""], ["verify", "dump"]),
    ("xen-remus-compat", ["stream", "verify", "--grammar", ""], ["warn", "error", "off"]),
    ("xen-remus-compat", ["show", "-f", "j"], ["json"]),
    ("xen-remus-compat", ["convert", "--remus-disks", "p"], ["plain"]),
    ("xen-remus-compat", ["completion", ""], ["bash"]),
])
def test_bash_completes(command, words, expected):
    if words and words[0].endswith("="):               # as COMP_WORDBREAKS splits
        words = [words[0][:-1], "="] + words[1:]
    assert sorted(_complete(command, [command] + words)) == sorted(expected)


@needs_bash
def test_files_and_directories_where_the_parser_says_so(tmp_path):
    (tmp_path / "guest.sxp").write_text("(vm)")
    (tmp_path / "gdir").mkdir()
    assert sorted(_complete("xen-remus-compat", ["xen-remus-compat", "show", "g"],
                            cwd=tmp_path)) == ["gdir", "guest.sxp"]
    assert _complete("xen-remus-compat", ["xen-remus-compat", "convert", "-o", "g"],
                     cwd=tmp_path) == ["gdir"]
    assert _complete("remus-receiver", ["remus-receiver", "--tls-cert", "gu"],
                     cwd=tmp_path) == ["guest.sxp"]
    # a value that is not a file completes to nothing, not to files
    assert _complete("remus", ["remus", "-i", "g"], cwd=tmp_path) == []


def test_subcommand_prints_and_writes(tmp_path):
    out, err = io.StringIO(), io.StringIO()
    assert main.main(["completion", "bash", "remus"], stdout=out, stderr=err) == 0
    assert "complete -F _xrc_remus remus" in out.getvalue()
    assert main.main(["completion", "bash", "-o", str(tmp_path)],
                     stdout=out, stderr=err) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(completion.COMMANDS)
    err = io.StringIO()
    assert main.main(["completion", "bash", "xm"], stdout=out, stderr=err) == 1
    assert err.getvalue().count("\n") == 1 and "no completion for xm" in err.getvalue()
