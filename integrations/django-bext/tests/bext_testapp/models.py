from django.db import models


class Category(models.Model):
    name = models.CharField(max_length=50)

    class Meta:
        app_label = "bext_testapp"


class Product(models.Model):
    name = models.CharField(max_length=50)
    categories = models.ManyToManyField(Category, related_name="products")

    class Meta:
        app_label = "bext_testapp"


class Note(models.Model):
    """Not registered: must never trigger an invalidation."""

    text = models.CharField(max_length=50)

    class Meta:
        app_label = "bext_testapp"
