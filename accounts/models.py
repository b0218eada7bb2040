from django.db import models


class TokenInfo(models.Model):
    """The name a user gave one of their personal API tokens (django-rest-knox keeps the token:
    only its hash and first characters, its owner, creation and expiry)."""

    token = models.OneToOneField("knox.AuthToken", primary_key=True, on_delete=models.CASCADE, related_name="info")
    name = models.CharField(max_length=100)

    class Meta:
        verbose_name = "API token name"

    def __str__(self) -> str:
        return self.name
