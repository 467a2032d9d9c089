"""Bash completion for the three commands, generated from their parsers.

``xen-remus-compat completion bash [COMMAND...]`` prints the scripts (for
``eval`` in a venv); ``-o DIR`` writes one file per command, named as the
command, which is how ``completions/`` of the source tree is made (``make
completions``; tests/unit/test_completion.py checks it is up to date) and
what the wheel and the Debian package install in
``share/bash-completion/completions``, where bash-completion loads a
command's file the first time it is completed.

The parsers are read, not re-typed: argparse's actions (options, whether
each takes a value, its choices, its metavar, nested subcommands,
positionals) and optparse's options for the legacy ``remus``.  What a value
completes to is derived from its choices, else from its metavar or dest
(``FILE``, ``DIR``, ``SCRIPT``...), else nothing; ``remus``'s positionals
(a domain, a host) are completed from ``xl list`` and the host names bash
knows.  The scripts need bash 4 and nothing else (bash-completion is not
required to source them).
"""
from __future__ import annotations

import argparse
import optparse
import os
import re
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, TextIO, Tuple

from . import base

NAME = "completion"
HELP = "print bash completion for the commands (generated from their parsers)"
COMMANDS = ("xen-remus-compat", "remus", "remus-receiver")
#: remus's positionals (optparse has none to read): ``domain [destination]``
REMUS_POSITIONALS = ("domain", "host")

#: metavar/dest words that name a directory, a file
_DIR = {"DIR", "OUTDIR", "DIRECTORY"}
_FILE = {"FILE", "SCRIPT", "INPUT", "PATH", "CERT", "KEY"}


@dataclass
class Node:
    """One parser: a command or a (nested) subcommand."""

    path: Tuple[str, ...]
    options: List[str] = field(default_factory=list)
    #: option -> what its value completes to (see :func:`_kind`)
    values: Dict[str, str] = field(default_factory=dict)
    commands: List[str] = field(default_factory=list)
    positionals: List[str] = field(default_factory=list)
    #: the last positional takes any number of words
    repeat: bool = False


def _kind(metavar: Optional[str], dest: Optional[str], help_text: Optional[str],
          choices) -> str:
    """``words:A B``, ``file``, ``dir``, ``command`` or ``none``."""
    if choices:
        return "words:" + " ".join(str(c) for c in choices)
    words = set(re.split(r"[^A-Z]+", f"{metavar or ''} {dest or ''}".upper()))
    if words & _DIR:
        return "dir"
    if words & _FILE or "path of" in (help_text or "").lower():
        return "file"
    if (metavar or "").upper() == "CMD":
        return "command"
    return "none"


def from_argparse(parser: argparse.ArgumentParser,
                  path: Tuple[str, ...] = ()) -> List[Node]:
    """The node of ``parser`` and of each of its subcommands, depth first."""
    node, below = Node(path), []
    for action in parser._actions:                      # noqa: SLF001 (read only)
        if isinstance(action, argparse._SubParsersAction):   # noqa: SLF001
            for name, sub in action.choices.items():
                node.commands.append(name)
                below.extend(from_argparse(sub, path + (name,)))
        elif action.option_strings:
            node.options.extend(action.option_strings)
            if action.nargs != 0:
                kind = _kind(action.metavar, action.dest, action.help, action.choices)
                for opt in action.option_strings:
                    node.values[opt] = kind
        elif action.help is not argparse.SUPPRESS:
            node.positionals.append(_kind(action.metavar, action.dest, None,
                                          action.choices))
            node.repeat = action.nargs in ("+", "*", argparse.REMAINDER)
    return [node] + below


def from_optparse(parser: optparse.OptionParser,
                  positionals: Sequence[str] = ()) -> List[Node]:
    node = Node((), positionals=list(positionals))
    for opt in parser.option_list:
        names = opt._short_opts + opt._long_opts         # noqa: SLF001
        node.options.extend(names)
        if opt.takes_value():
            kind = _kind(opt.metavar, opt.dest, opt.help, opt.choices)
            if opt.dest == "source":
                from ..sources import SOURCES
                kind = "words:" + " ".join(SOURCES)
            for name in names:
                node.values[name] = kind
    return [node]


def nodes_for(command: str,
              main_parser: Optional[Callable[[], argparse.ArgumentParser]] = None
              ) -> List[Node]:
    """The parser tree of one of :data:`COMMANDS`."""
    if command == "remus":
        from . import remus
        return from_optparse(remus.Cfg().parser, REMUS_POSITIONALS)
    if command == "remus-receiver":
        from . import receiver
        return from_argparse(receiver.build_parser())
    if command == "xen-remus-compat":
        if main_parser is None:
            raise ValueError("the xen-remus-compat parser is passed in by cli.main")
        return from_argparse(main_parser())
    raise ValueError(f"unknown command {command!r} (one of {', '.join(COMMANDS)})")


# --- the bash script ---------------------------------------------------------

_DRIVER = r'''
@F@() {
    local cur="${COMP_WORDS[COMP_CWORD]}" prev="" node="" npos=0 i w
    local skip=0 opt="" prefix="" kind="" endopts=0
    COMPREPLY=()
    for ((i = 1; i < COMP_CWORD; i++)); do
        w="${COMP_WORDS[i]}"
        if ((skip > 0)); then skip=$((skip - 1)); continue; fi
        if ((!endopts)); then
            case "$w" in
                --) endopts=1; continue ;;
                --*=*|=) continue ;;
                -?*)
                    if @F@_value "$node" "$w" >/dev/null; then
                        skip=1
                        [[ "${COMP_WORDS[i+1]}" == "=" ]] && skip=2
                    fi
                    continue ;;
            esac
        fi
        if ((npos == 0)) && @F@_command "$node" "$w"; then
            node="${node:+$node }$w"
        else
            npos=$((npos + 1))
        fi
    done
    prev="${COMP_WORDS[COMP_CWORD-1]}"
    if [[ "$cur" == "=" ]]; then
        opt="$prev"; cur=""
    elif [[ "$prev" == "=" ]]; then
        opt="${COMP_WORDS[COMP_CWORD-2]}"
    elif [[ "$cur" == --*=* ]]; then
        opt="${cur%%=*}"; prefix="$opt="; cur="${cur#*=}"
    elif [[ "$prev" == -?* ]]; then
        opt="$prev"
    fi
    if ((!endopts)) && [[ -n "$opt" ]] && kind="$(@F@_value "$node" "$opt")"; then
        @F@_reply "$kind" "$prefix"
        return 0
    fi
    if ((!endopts)) && [[ "$cur" == -* ]]; then
        COMPREPLY=($(compgen -W "$(@F@_options "$node")" -- "$cur"))
        return 0
    fi
    if ((npos == 0)) && kind="$(@F@_commands "$node")" && [[ -n "$kind" ]]; then
        COMPREPLY=($(compgen -W "$kind" -- "$cur"))
        return 0
    fi
    @F@_reply "$(@F@_positional "$node" "$npos")" ""
}

@F@_reply() {   # KIND PREFIX: complete $cur (a local of the caller)
    local IFS=$'\n'
    case "$1" in
        words:*) IFS=$' \t\n'; COMPREPLY=($(compgen -W "${1#words:}" -- "$cur")) ;;
        file) compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -f -- "$cur")) ;;
        dir) compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -d -- "$cur")) ;;
        command) COMPREPLY=($(compgen -c -- "$cur")) ;;
        domain)
            if command -v xl >/dev/null 2>&1; then
                COMPREPLY=($(compgen -W "$(xl list 2>/dev/null | awk 'NR > 1 {print $1}')" -- "$cur"))
            fi ;;
        host) COMPREPLY=($(compgen -A hostname -- "$cur")) ;;
        *) COMPREPLY=() ;;
    esac
    if [[ -n "$2" ]]; then
        for i in "${!COMPREPLY[@]}"; do COMPREPLY[i]="$2${COMPREPLY[i]}"; done
    fi
}
'''


def _word_list(words: Sequence[str]) -> str:
    return " ".join(words)


def _case(fn: str, arg_doc: str, subject: str,
          entries: Sequence[Tuple[str, str]], default: str) -> str:
    lines = [f"{fn}() {{   # {arg_doc}", f"    case {subject} in"]
    for pattern, body in entries:
        lines.append(f"        {pattern}) {body} ;;")
    lines.append(f"        *) {default} ;;")
    lines += ["    esac", "}"]
    return "\n".join(lines)


def _q(text: str) -> str:
    """A double-quoted bash word (the parsers' names need no more)."""
    if re.search(r'["$`\\]', text):
        raise ValueError(f"unexpected character in {text!r}")
    return f'"{text}"'


def script(command: str, nodes: Sequence[Node]) -> str:
    """The completion script of ``command``."""
    fn = "_xrc_" + re.sub(r"\W", "_", command)
    values, options, commands, cmd_test, positional = [], [], [], [], []
    for node in nodes:
        key = " ".join(node.path)
        for opt, kind in node.values.items():
            values.append((_q(f"{key}:{opt}"), f"echo {_q(kind)}"))
        options.append((_q(key), f"echo {_q(_word_list(node.options))}"))
        if node.commands:
            commands.append((_q(key), f"echo {_q(_word_list(node.commands))}"))
            cmd_test.append(("|".join(_q(f"{key}:{c}") for c in node.commands),
                             "return 0"))
        for n, kind in enumerate(node.positionals):
            positional.append((_q(f"{key}:{n}"), f"echo {_q(kind)}"))
        if node.repeat and node.positionals:
            positional.append((_q(f"{key}:") + "*",
                               f"echo {_q(node.positionals[-1])}"))
    parts = [
        f"# bash completion for {command} (xen-remus-compat) -*- shell-script -*-",
        "# Generated from the command's parser by `xen-remus-compat completion "
        "bash`; do not edit.",
        _DRIVER.replace("@F@", fn).strip("\n"),
        "",
        _case(f"{fn}_value", "NODE OPTION: what the option's value completes to",
              '"$1:$2"', values, "return 1"),
        "",
        _case(f"{fn}_options", "NODE: its options", '"$1"', options, "return 1"),
        "",
        _case(f"{fn}_commands", "NODE: its subcommands", '"$1"', commands, "return 1"),
        "",
        _case(f"{fn}_command", "NODE WORD: is WORD a subcommand of NODE",
              '"$1:$2"', cmd_test, "return 1"),
        "",
        _case(f"{fn}_positional", "NODE N: what its N-th positional completes to",
              '"$1:$2"', positional, "echo none"),
        "",
        f"complete -F {fn} {command}",
        "",
    ]
    return "\n".join(parts)


def generate(commands: Sequence[str] = COMMANDS,
             main_parser: Optional[Callable[[], argparse.ArgumentParser]] = None
             ) -> Dict[str, str]:
    """``{command: script}``."""
    return {c: script(c, nodes_for(c, main_parser)) for c in commands}


# --- the subcommand ----------------------------------------------------------


def add_parser(sub, parents: Sequence[argparse.ArgumentParser] = ()
               ) -> argparse.ArgumentParser:
    p = sub.add_parser(NAME, parents=list(parents), help=HELP,
                       description="Print the bash completion of the commands, "
                       "generated from their parsers: eval \"$(xen-remus-compat "
                       "completion bash)\" in a shell, or -o DIR to write one "
                       "file per command (what share/bash-completion/completions "
                       "holds).")
    p.add_argument("shell", choices=("bash",), help="the shell (bash)")
    p.add_argument("commands", nargs="*", metavar="COMMAND",
                   help=f"the commands (default: {', '.join(COMMANDS)})")
    p.add_argument("-o", "--output-dir", dest="outdir", metavar="DIR",
                   help="write DIR/COMMAND for each command instead")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    wanted = args.commands or list(COMMANDS)
    unknown = [c for c in wanted if c not in COMMANDS]
    if unknown:
        raise base.UsageError(f"no completion for {', '.join(unknown)} "
                              f"(commands: {', '.join(COMMANDS)})")
    scripts = generate(wanted, getattr(args, "parser_factory", None))
    if args.outdir:
        from ..atomic import write_atomic
        os.makedirs(args.outdir, exist_ok=True)
        for command, text in scripts.items():
            write_atomic(os.path.join(args.outdir, command), text)
            err.write(f"{os.path.join(args.outdir, command)}\n")
        return base.EXIT_OK
    out.write("\n".join(scripts.values()))
    return base.EXIT_OK
