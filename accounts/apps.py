from django.apps import AppConfig
from django.db.models.signals import post_migrate


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Users, roles and API tokens"

    def ready(self):
        from .roles import ensure_roles_after_migrate

        # Roles are defined in code (roles.py); after every migrate (and every test-database flush,
        # which empties auth_group) the groups are put back as the code says.
        post_migrate.connect(ensure_roles_after_migrate, dispatch_uid="virtfleet-ensure-roles")
