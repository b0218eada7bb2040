from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    """VM consoles in the browser: single-use tickets, the websockify proxy, session records."""

    name = "console"
    verbose_name = "Consoles"

    def ready(self):
        from . import pages

        pages.register()
