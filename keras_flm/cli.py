"""`flm`: the host command line. Subcommand groups come from the `flm.commands`
entry-point group, so this root knows no layer above it and `flm --help` imports no
TensorFlow (command modules import it inside their functions)."""
import sys
from importlib import metadata
from typing import Dict, List, Optional

import click


def _entry_points() -> List["metadata.EntryPoint"]:
    eps = metadata.entry_points()
    if hasattr(eps, "select"):
        return list(eps.select(group="flm.commands"))
    return list(eps.get("flm.commands", []))  # Python 3.8/3.9


class PluginGroup(click.Group):
    """A click group whose commands are loaded lazily from entry points."""

    def _plugins(self) -> Dict[str, "metadata.EntryPoint"]:
        return {ep.name: ep for ep in _entry_points()}

    def list_commands(self, ctx: click.Context) -> List[str]:
        return sorted(set(super().list_commands(ctx)) | set(self._plugins()))

    def get_command(self, ctx: click.Context, name: str) -> Optional[click.Command]:
        cmd = super().get_command(ctx, name)
        if cmd is not None:
            return cmd
        ep = self._plugins().get(name)
        if ep is None:
            return None
        try:
            return ep.load()
        except ImportError as e:
            # A command whose module (or its dependencies) is missing still shows in --help
            # and explains itself instead of crashing the whole CLI.
            msg = "flm %s is unavailable: %s (install the extras: pip install -e .[train])" % (name, e)

            @click.command(name=name, help=msg, context_settings={"ignore_unknown_options": True})
            @click.argument("args", nargs=-1, type=click.UNPROCESSED)
            def unavailable(args):
                raise click.ClickException(msg)

            return unavailable


@click.group(cls=PluginGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="flm")
def cli() -> None:
    """flm: train, quantize and deploy a MobileNetV2-PFLD facial landmark detector."""


def main(argv: Optional[List[str]] = None) -> None:
    cli.main(args=argv if argv is not None else sys.argv[1:], prog_name="flm")
