import argparse

from django.core.management.base import BaseCommand

from dashboard.retention import prune_history


def _days(value: str) -> int:
    try:
        days = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of days") from None
    if days < 0:
        raise argparse.ArgumentTypeError("a retention cannot be negative (0 keeps that history for ever)")
    return days


class Command(BaseCommand):
    help = (
        "Delete finished jobs, audit events and closed console sessions older than their retention "
        "(VIRTFLEET_JOB_RETENTION_DAYS, VIRTFLEET_AUDIT_RETENTION_DAYS; 0 keeps them for ever). "
        "Beat runs this daily; use it by hand to prune now or to see what would go."
    )

    def add_arguments(self, parser):
        parser.add_argument("--job-days", type=_days, help="keep finished jobs this many days (overrides the setting)")
        parser.add_argument("--audit-days", type=_days, help="keep audit events and console sessions this many days")
        parser.add_argument("--dry-run", action="store_true", help="only count what would be deleted")

    def handle(self, *args, job_days=None, audit_days=None, dry_run=False, **options):
        result = prune_history(job_days=job_days, audit_days=audit_days, dry_run=dry_run)
        if not result.cutoffs:
            self.stdout.write("Nothing to prune: every retention is 0 (history is kept for ever).")
            return
        verb = "Would delete" if dry_run else "Deleted"
        self.stdout.write(
            f"{verb} {result.jobs} finished jobs, {result.audit_events} audit events and "
            f"{result.console_sessions} console sessions "
            f"({', '.join(f'{k} before {v}' for k, v in result.cutoffs.items())})."
        )
