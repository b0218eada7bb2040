from django import forms


class MigrateForm(forms.Form):
    """The migrate dialog's fields (the options are checked again by migration.services)."""

    target = forms.CharField(required=False)
    mode = forms.ChoiceField(choices=[("", "auto"), ("live", "live"), ("offline", "offline")], required=False)
    copy_storage = forms.CharField(required=False, max_length=8)
    bandwidth_mibs = forms.CharField(required=False, max_length=12)
    max_downtime_ms = forms.CharField(required=False, max_length=12)
    auto_converge = forms.BooleanField(required=False)
    compressed = forms.BooleanField(required=False)
    postcopy = forms.BooleanField(required=False)

    def first_error(self) -> str:
        for field, errors in self.errors.items():
            return f"{field}: {errors[0]}"
        return ""

    def options(self) -> dict:
        data = self.cleaned_data
        options = {key: data[key] for key in ("copy_storage", "bandwidth_mibs", "max_downtime_ms", "auto_converge",
                                              "compressed", "postcopy")}  # fmt: skip
        if data["mode"]:
            options["live"] = data["mode"] == "live"
        return options
