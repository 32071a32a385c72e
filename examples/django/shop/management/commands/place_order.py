"""`python manage.py place_order ITEM [--quantity N] [--fail]`: what the view does, from the
command line; --fail rolls the transaction back after asking for the confirmation, which
is then never sent."""

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from shop.models import Order
from shop.tasks import confirm_order


class Command(BaseCommand):
    help = "Place an order; its confirmation task is sent once the order is committed."

    def add_arguments(self, parser):
        parser.add_argument("item")
        parser.add_argument("--quantity", type=int, default=1)
        parser.add_argument("--fail", action="store_true",
                            help="roll the order back after delay_on_commit")

    def handle(self, *args, **options):
        with transaction.atomic():
            order = Order.objects.create(item=options["item"], quantity=options["quantity"])
            confirm_order.delay_on_commit(order.pk)
            if options["fail"]:  # leaving the block with an error rolls the order back
                raise CommandError(f"rolled back order {order.pk}: no confirmation sent")
        self.stdout.write(str(order.pk))
