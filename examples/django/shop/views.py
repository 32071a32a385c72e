"""Placing an order: stored in a transaction; its confirmation is sent only once the
transaction commits (never for an order that was rolled back)."""

import json

from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from shop.models import Order
from shop.tasks import confirm_order


@csrf_exempt
def place_order(request: HttpRequest) -> JsonResponse:
    if request.method != "POST":
        return JsonResponse({"error": "POST an order: {\"item\": ..., \"quantity\": ...}"},
                            status=405)
    data = json.loads(request.body or b"{}")
    with transaction.atomic():
        order = Order.objects.create(item=data["item"], quantity=data.get("quantity", 1))
        confirm_order.delay_on_commit(order.pk)
    return JsonResponse({"order": order.pk}, status=201)


def show_order(request: HttpRequest, order_id: int) -> JsonResponse:
    order = Order.objects.get(pk=order_id)
    return JsonResponse({"order": order.pk, "item": order.item, "confirmed": order.confirmed,
                         "confirmed_by": order.confirmed_by})
