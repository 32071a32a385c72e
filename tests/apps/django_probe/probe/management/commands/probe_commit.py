"""Place an order with delay_on_commit and say how many tasks were published inside the
transaction and after it (the publish hook sees every send); --rollback rolls it back."""

import json

from django.core.management.base import BaseCommand
from django.db import transaction
from shop.models import Order
from shop.tasks import confirm_order

from fleet import hooks


class Command(BaseCommand):
    def add_arguments(self, parser):
        parser.add_argument("item")
        parser.add_argument("--rollback", action="store_true")

    def handle(self, *args, **options):
        published = []
        hooks.after_task_publish.connect(lambda body, **_: published.append(body["id"]))
        with transaction.atomic():
            order = Order.objects.create(item=options["item"])
            confirm_order.delay_on_commit(order.pk)
            inside = len(published)
            if options["rollback"]:
                transaction.set_rollback(True)
        self.stdout.write(json.dumps({"order": order.pk, "inside": inside,
                                      "after": len(published), "ids": published}))
