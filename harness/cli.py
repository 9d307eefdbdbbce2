"""The command line: `python -m harness <command>`. The CLI owns all printing.

Exit codes: 0 success, 1 some job or check failed (or a file could not be written: a full disk), 2 usage
error (bad name, missing file, a path that cannot be used), 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from harness import __version__
from harness.commands import COMMANDS
from harness.contracts import UserError


def _load_commands() -> list:
    modules = []
    for name in COMMANDS:
        try:
            modules.append(importlib.import_module(f"harness.commands.{name}"))
        except ModuleNotFoundError as exc:
            if exc.name != f"harness.commands.{name}":
                raise
    return modules


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's usage errors exit 2, as ours do
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser():
    parser = _Parser(prog="python -m harness", description="Benchmark deep generative models.")
    parser.add_argument("--version", action="version", version=f"harness {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    handlers = {}
    for module in _load_commands():
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.configure(p)
        handlers[module.NAME] = module.execute
    return parser, handlers


def main(argv=None) -> int:
    parser, handlers = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not args.command:
        parser.print_help()
        return 2
    from harness.host import PluginError, get_host

    try:
        host = get_host()
        return handlers[args.command](args, host)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except PluginError as exc:
        print(f"plugin error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and the like
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # a file that could not be written or read: a full disk, a path that cannot be used
        return _os_error(exc)
    except KeyboardInterrupt:
        print("interrupted; finished jobs are kept (rerun with --resume)", file=sys.stderr)
        return 130


def _os_error(exc: OSError) -> int:
    """A file that could not be written or read: what and why, exit 1 for lack of space or an I/O error
    (rerun with --resume when there is room), 2 otherwise (a path the user can change)."""
    import errno

    from harness.storage import full

    logging.getLogger(__name__).debug("file error", exc_info=True)
    if full.is_no_space(exc) or exc.errno == errno.EIO:
        print(f"error: {full.describe(exc)}", file=sys.stderr)
        return 1
    where = f": {exc.filename}" if exc.filename else ""
    print(f"error: {exc.strerror or exc}{where}", file=sys.stderr)
    return 2
