from django.db import models


class Order(models.Model):
    item = models.CharField(max_length=100)
    quantity = models.PositiveIntegerField(default=1)
    confirmed = models.BooleanField(default=False)
    confirmed_by = models.CharField(max_length=200, blank=True)  #: the node that did it
    created = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"order {self.pk}: {self.quantity} x {self.item}"
