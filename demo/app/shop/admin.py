from django.contrib import admin

from shop.models import Message, Product


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ["text", "created"]
    search_fields = ["text"]
    readonly_fields = ["created"]


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    """Saving here purges /products/ from bext's cache (django-bext, after the commit)."""

    list_display = ["name", "price", "updated"]
    search_fields = ["name", "description"]
    readonly_fields = ["updated"]
