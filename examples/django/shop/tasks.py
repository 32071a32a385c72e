"""The shop's tasks. `@shared_task` binds to the project's app (a Django app never imports
the project); `fleet -A mysite worker` finds this module by autodiscovery."""

from fleet import shared_task
from shop.models import Order


@shared_task(bind=True)
def confirm_order(self, order_id):
    """Mark an order confirmed (it exists: the task was sent after the commit)."""
    order = Order.objects.get(pk=order_id)
    order.confirmed = True
    order.confirmed_by = self.request.hostname or ""
    order.save(update_fields=["confirmed", "confirmed_by"])
    return {"order": order.pk, "item": order.item}


@shared_task(bind=True)
def pack_orders(self, order_ids):
    """Long work that reports its progress: AsyncResult(id).state is PROGRESS meanwhile."""
    for done, order_id in enumerate(order_ids, 1):
        Order.objects.filter(pk=order_id).update(confirmed=True)
        self.update_state(state="PROGRESS", meta={"done": done, "total": len(order_ids)})
    return len(order_ids)
