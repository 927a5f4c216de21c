from django.contrib import admin

from shop.models import Message


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ["text", "created"]
    search_fields = ["text"]
    readonly_fields = ["created"]
