from django.db import models


class Message(models.Model):
    """A message posted through /form/ (also browsable in the admin)."""

    text = models.CharField(max_length=200)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created", "-id"]

    def __str__(self) -> str:
        return self.text


class Product(models.Model):
    """A product listed at /products/: the page bext caches and django-bext purges.

    The list views tag their responses ``products`` and ``shop.product``; saving or
    deleting a Product (admin, shell, anywhere) invalidates ``shop.product`` after the
    commit (``BEXT_AUTO_INVALIDATE`` in demosite/settings_local.py).
    """

    name = models.CharField(max_length=100)
    price = models.DecimalField(max_digits=8, decimal_places=2)
    description = models.TextField(blank=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name
