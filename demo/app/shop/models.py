from django.db import models


class Message(models.Model):
    """A message posted through /form/ (also browsable in the admin)."""

    text = models.CharField(max_length=200)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created", "-id"]

    def __str__(self) -> str:
        return self.text
