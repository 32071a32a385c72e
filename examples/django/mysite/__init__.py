"""The example Django project. Importing it loads the fleet app, so `@shared_task`s in
Django apps bind to it and `fleet -A mysite worker` finds it."""

from mysite.fleet import app as fleet_app

__all__ = ["fleet_app"]
