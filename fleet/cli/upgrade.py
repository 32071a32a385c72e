"""`fleet upgrade settings FILE`: rewrite a Celery settings module for fleet (the library
part is fleet.upgrade)."""

from __future__ import annotations

import click

from fleet.cli.context import CliContext, global_options, pass_cli


@click.group()
def upgrade() -> None:
    """Move code written for Celery to fleet."""


@upgrade.command("settings")
@global_options
@click.argument("path", metavar="FILE", type=click.Path(dir_okay=False))
@click.option("--dry-run", is_flag=True, help="Print the diff only; change nothing.")
@click.option("--django", is_flag=True,
              help="FILE is Django settings: use FLEET_-prefixed names (read with "
                   "config_from_object('django.conf:settings', namespace='FLEET')).")
@click.option("--no-backup", is_flag=True, help="Don't keep the original as FILE.orig.")
@pass_cli
def settings(cli_ctx: CliContext, path: str, dry_run: bool, django: bool,
             no_backup: bool) -> None:
    """Rename Celery's setting names in FILE to fleet's, and print the diff.

    \b
    BROKER_URL -> broker_url, CELERYD_CONCURRENCY -> worker_concurrency,
    CELERYBEAT_SCHEDULE -> beat_schedule, ... (with --django: CELERY_BROKER_URL ->
    FLEET_BROKER_URL). Settings fleet has no equivalent for (CELERY_TASK_SERIALIZER,
    CELERY_ALWAYS_EAGER, ...) are commented out, each with the reason above it. The
    original is kept as FILE.orig unless --no-backup.

    \b
    fleet upgrade settings proj/celeryconfig.py --dry-run
    fleet upgrade settings mysite/settings.py --django
    """
    from fleet.upgrade import upgrade_file, write

    rewrite = upgrade_file(path, django=django)
    if not rewrite.changed:
        cli_ctx.echo(f"{path}: no Celery setting names: nothing to change.")
        return
    click.echo(rewrite.diff(), nl=False)
    summary = f"{len(rewrite.renamed)} renamed, {len(rewrite.removed)} commented out"
    if dry_run:
        cli_ctx.echo(f"{path}: {summary} (dry run: nothing written).", err=True)
        return
    backup = write(rewrite, backup=not no_backup)
    kept = f"; the original is {backup}" if backup else ""
    cli_ctx.echo(f"{path}: {summary}; written{kept}.", err=True)


COMMANDS = (upgrade,)
