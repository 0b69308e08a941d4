"""Exit statuses of ``triage`` commands whose outcome a script or scheduler must act on.

0 is success; 1 a refusal or failure (a gate, the registry); ``USAGE`` (2) a usage error
(typer's own, bad option values, a path that does not exist, an invalid TRIAGE_* setting).
``ROLLBACK``, ``SHADOW_WORSE`` and ``SKIPPED`` say that the command ran to its end but its
result says "do not proceed" or is incomplete, so ``set -e`` and cron see it;
``NOT_ENOUGH_EVIDENCE`` that it had too little to go on to propose anything; ``STOPPED`` that
it stopped partway; ``UNREACHABLE`` that a server it needs could not be reached (try again).
"""

from __future__ import annotations

from collections.abc import Mapping

import typer

from triage_cli.console import console

USAGE = 2
"""Any command: it was called wrong, or a ``TRIAGE_*`` setting is invalid (one line each)."""

ROLLBACK = 3
"""``triage canary report``: the verdict is rollback (applied with ``--apply`` or not)."""

SKIPPED = 4
"""``triage replay`` and ``triage batch score``: some records could not be read or scored
(counted by reason in the output); ``triage upload``: some files were refused, or still
busy after their retries (each shown with why); everything else was done."""

UNREACHABLE = 5
"""Any command: PostgreSQL (TRIAGE_DATABASE_URL) or Kafka (TRIAGE_KAFKA_BOOTSTRAP) could not
be reached; one line names the host:port (``triage_cli.services``). ``triage upload``: the
ingest service answered none of the files."""

STOPPED = 6
"""``triage batch score``: the run stopped partway (an error, Ctrl-C, SIGTERM); the rows of
the batches it finished are in the output, and it said how many."""

SHADOW_WORSE = 7
"""``triage shadow report``: where people decided, the shadow is measurably worse than the
champion (do not promote it)."""

NOT_ENOUGH_EVIDENCE = 8
"""``triage policy tune``: no label had evidence enough for a proposal (too few decisions, or
neither the target nor a miss shown, or nothing routed reviewed), so nothing was proposed (or
applied). A label with a proposal, even "keep", makes the status 0."""


def exit_if_skipped(skipped: Mapping[str, int]) -> None:
    """End with ``SKIPPED`` when any record was skipped, saying how many."""
    count = sum(skipped.values())
    if count:
        console.print(
            f"[yellow]{count} record(s) skipped (see the counts by reason): "
            f"exit status {SKIPPED}[/yellow]",
            highlight=False,
        )
        raise typer.Exit(SKIPPED)
