"""What ``convert`` and ``show`` do: discover inputs, plan, write atomically, report.

The library behind ``xen-remus-compat convert|show`` (the command line only
parses options and prints), one module per step:

* :mod:`.inputs` -- find the input files, read and decode them, parse every
  domain (with :mod:`.locate` giving line and column to errors found after
  parsing);
* :mod:`.plan` -- translate each domain and decide every output file, before
  anything is written;
* :mod:`.output` -- write the plan as one all-or-nothing batch;
* :mod:`.report` -- the summary and the diffs shown to the operator, and
  the same as JSON;
* :mod:`.hostcheck` -- whether the paths written are on this host;
* :mod:`.show` -- what ``show`` prints.

The names the command line uses are importable from here.
"""
from __future__ import annotations

from .inputs import (
    MAX_INPUT_BYTES, XEND_CONFIG_NAME, LoadedDomain, decode_input, discover,
    load_domains, parse_domains, read_input, sniff_format,
)
from .output import convert, ensure_outdir, write
from .plan import (
    CFG_SUFFIX, JSON_SUFFIX, REMUS_DISK_MODES, ConversionPlan, DomainResult,
    PlannedFile, check_domain_name, check_overwrites, check_unique, plan_outputs,
    prepare, translate,
)
from .hostcheck import check_host
from .report import format_report, report_json, summary_line, unified_diff
from .show import SHOW_FORMATS, pretty_sxpr, render

__all__ = [
    "MAX_INPUT_BYTES", "XEND_CONFIG_NAME", "LoadedDomain", "decode_input",
    "discover", "load_domains", "parse_domains", "read_input", "sniff_format",
    "convert", "ensure_outdir", "write",
    "CFG_SUFFIX", "JSON_SUFFIX", "REMUS_DISK_MODES", "ConversionPlan",
    "DomainResult", "PlannedFile", "check_domain_name", "check_overwrites",
    "check_unique", "plan_outputs", "prepare", "translate",
    "format_report", "report_json", "summary_line", "unified_diff", "check_host",
    "SHOW_FORMATS", "pretty_sxpr", "render",
]
