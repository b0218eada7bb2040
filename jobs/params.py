"""Fields for the option serializers of job kinds: plain words when a value is wrong."""

from __future__ import annotations

from collections.abc import Callable

from rest_framework import serializers


class Flag(serializers.BooleanField):
    """true/false, 1/0, yes/no, on/off (an empty form value is false)."""

    FALSE_VALUES = {*serializers.BooleanField.FALSE_VALUES, ""}

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        kwargs.setdefault("default", False)
        super().__init__(**kwargs)

    def bind(self, field_name, parent):
        super().bind(field_name, parent)
        self.error_messages["invalid"] = f"{field_name} must be true or false."


class WholeNumber(serializers.Field):
    """An integer between ``min_value`` and ``max_value`` in ``unit``; "" or null means the default."""

    def __init__(self, *, unit: str, min_value: int, max_value: int, default: int | Callable[[], int] = 0, **kwargs):
        self.unit, self.min_value, self.max_value = unit, min_value, max_value
        kwargs.setdefault("required", False)
        super().__init__(default=default, **kwargs)

    def validate_empty_values(self, data):
        if data in ("", None):
            return True, self.get_default()
        return super().validate_empty_values(data)

    def to_internal_value(self, data) -> int:
        what = "of seconds" if self.unit == "seconds" else f"({self.unit})"
        text = str(data).strip() if isinstance(data, (str, int)) and not isinstance(data, bool) else ""
        if not (text.lstrip("+-").isascii() and text.lstrip("+-").isdigit()) or len(text) > 20:
            raise serializers.ValidationError(f"{self.field_name} must be a whole number {what}.")
        number = int(text)
        if not self.min_value <= number <= self.max_value:
            raise serializers.ValidationError(
                f"{self.field_name} must be between {self.min_value} and {self.max_value} {self.unit}."
            )
        return number

    def to_representation(self, value) -> int:
        return int(value)
