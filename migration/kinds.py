"""Live migration and host maintenance as job kinds of the engine."""

from jobs import kinds
from jobs.kinds import Kind, Subject
from vms.kinds import vm_subject

from . import services

kinds.register(
    Kind(
        name=services.MIGRATE,
        label="Migrate",
        handler=services.run_migration,
        subject=vm_subject,
        lock="vm",
        queue="migration",
        right="migrate",
        audit_action="vm.migrate",
        params=services.MigrationOptionsSerializer,
        check=services.check_migration,
        admit=services.slots_message,  # at most N outgoing / M incoming migrations per host
        judge=services.judge_migration,
        after=services.reread_both,
        cancellable=True,  # abortJob: the VM keeps running on its source
        retry_transient=False,  # a migration that lost its host is judged, not started again
        panel="migration/_progress.html",
    )
)

kinds.register(
    Kind(
        name=services.MAINTENANCE,
        label="Enter maintenance",
        handler=services.run_evacuation,  # starts one migrate job per VM, then waits for them
        subject=Subject.of_host,
        lock="host",
        queue="lifecycle",
        right="maintain",
        audit_action="host.maintenance.enter",
        children_done=services.evacuation_done,
        cancellable=True,  # cancels the migrations still running; the host returns to service
        connect=False,
    )
)
