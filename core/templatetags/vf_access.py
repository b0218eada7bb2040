"""``{% may "operate" vm as can_operate %}``: what the signed-in user may do, for showing buttons.

Backed by core.access (the same answers the services enforce); the UI only hides what the
server would refuse anyway.
"""

from django import template

from core import access

register = template.Library()


@register.simple_tag(takes_context=True)
def may(context, action: str, obj=None) -> bool:
    request = context.get("request")
    user = getattr(request, "user", None) or context.get("user")
    if user is None:
        return False
    return access.may(user, action, obj)
