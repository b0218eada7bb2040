from django.conf import settings


def virtfleet(request):
    """Values every page needs: where the live-update socket is, the product version."""
    return {
        "VIRTFLEET_VERSION": "1.0",
        "VIRTFLEET_DEBUG": settings.DEBUG,
    }
