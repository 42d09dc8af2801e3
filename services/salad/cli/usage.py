"""Help and usage errors that read like gh's or kubectl's: a flag shows no `<bool>` (it takes no value), an
argument shows its name in capitals and no `<list[str]>`, the usage line reads `salad order [OPTIONS]
FRUIT...`, not `{fruits}...`; a usage error is one `error:` line on stderr, never wrapped, as every other
error, not a box cut at 80 columns."""

import sys
import textwrap

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperCommand, TyperGroup


def without_flag_types(params: list) -> list:
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""  # typer shows an option's metavar in place of its type
        elif param.param_type_name == "argument":
            param.display_type_rich = lambda ctx: None  # its metavar (ORDER_ID, FRUIT) says it
    return params


class SaladGroup(TyperGroup):
    def get_params(self, ctx) -> list:
        return without_flag_types(super().get_params(ctx))

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode: bool = True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.TyperException as exc:  # click's ClickException: a usage error, mostly
            usage_error(exc)
        except typer.Abort:
            Console(stderr=True).print("aborted")
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


def usage_error(exc) -> None:
    """`error: ...`, then the command's usage line and where its help is (no-arguments help is printed)."""
    ctx = getattr(exc, "ctx", None)
    if type(exc).__name__ != "NoArgsIsHelpError":
        console = Console(stderr=True, soft_wrap=True, highlight=False)
        console.print(f"[red]error:[/red] {escape(exc.format_message())}")
        if ctx is not None:
            console.print(escape(ctx.get_usage()))
            console.print(f"Try '{ctx.command_path} -h' for help.")
    sys.exit(exc.exit_code)


def fenced_examples(text: str | None) -> str | None:
    """A docstring ends with an "Examples:" paragraph of indented commands: fenced, typer's markdown shows
    them one a line whatever comes before (indented, a first paragraph loses its indentation)."""
    if not text or "Examples:\n\n" not in text:
        return text
    prose, examples = text.split("Examples:\n\n", 1)
    return f"{prose}Examples:\n\n```\n{textwrap.dedent(examples).strip()}\n```"


class SaladCommand(TyperCommand):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.help = fenced_examples(self.help)

    def get_params(self, ctx) -> list:
        return without_flag_types(super().get_params(ctx))

    def collect_usage_pieces(self, ctx) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                name = (param.metavar or param.name or "").upper() + ("..." if param.nargs != 1 else "")
                pieces.append(name if param.required else f"[{name}]")
        return pieces
