"""POST /orders/ places an order; its confirmation task is sent once the order is stored."""

from django.urls import path
from shop import views

urlpatterns = [path("orders/", views.place_order), path("orders/<int:order_id>/",
                                                        views.show_order)]
