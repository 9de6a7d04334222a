"""Which command an argument list runs; standard library only, so `--version` answers before typer loads.

Subcommand rule: a subcommand (crop, weights, info, preview, train, eval) is recognised only as the
very first argument, and there it always wins, even over a file or folder of that name (this
repository itself has a weights/ folder, and `s2ccrop weights list` must work in it). To crop such a
path write it as `./weights` or after any option (`s2ccrop -r 1:1 weights`; after `--` every argument is
a path, options included). Anything else is
the crop command, the default: `s2ccrop photo.jpg -r 16:9` is `s2ccrop crop photo.jpg -r 16:9`.
"""

from __future__ import annotations

SUBCOMMANDS = ("crop", "weights", "info", "preview", "train", "eval")
# Options of the command line itself (not of a subcommand); `--show-completion=bash` counts too.
TOP_LEVEL_OPTIONS = ("-h", "--help", "--version", "--install-completion", "--show-completion")


def with_default_command(args: list[str]) -> list[str]:
    """`args` with "crop" in front unless they start with a subcommand or an option of the command
    line itself."""
    if args and (args[0] in SUBCOMMANDS or args[0].split("=", 1)[0] in TOP_LEVEL_OPTIONS):
        return list(args)
    return ["crop", *args]


def asks_version(args: list[str]) -> bool:
    """`s2ccrop --version`, also among the crop command's arguments (not after `--`, not a subcommand's)."""
    if args[:1] == ["--version"]:
        return True
    if not args or args[0] in SUBCOMMANDS:
        return False
    return "--version" in (args[: args.index("--")] if "--" in args else args)
