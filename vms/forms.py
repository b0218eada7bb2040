"""The forms of the VM pages: an operation's options, and a bulk operation over chosen VMs.

They only read what the form sent; the job kinds validate the options (jobs.engine.clean_params)."""

import uuid as uuidlib

from django import forms

from . import actions


class ActionForm(forms.Form):
    timeout = forms.CharField(required=False)  # shutdown: checked by the kind
    force_boot = forms.BooleanField(required=False)
    remove_storage = forms.BooleanField(required=False)
    force = forms.BooleanField(required=False)

    def params(self, kind: str) -> dict:
        """The options a form for ``kind`` sends (only those: the kind refuses unknown ones)."""
        data = getattr(self, "cleaned_data", {})
        if kind == actions.DELETE:
            return {"remove_storage": bool(data.get("remove_storage")), "force": bool(data.get("force"))}
        if kind == actions.SHUTDOWN and data.get("timeout"):
            return {"timeout": data["timeout"]}
        if kind == actions.START and data.get("force_boot"):
            return {"force_boot": True}
        return {}


class BulkActionForm(ActionForm):
    action = forms.CharField(required=False, max_length=32)
    vms = forms.MultipleChoiceField(required=False)

    def __init__(self, data=None, **kwargs):
        super().__init__(data, **kwargs)
        # any submitted value is a choice: the UUIDs are checked by uuids()
        chosen = data.getlist("vms")[:1000] if data is not None and hasattr(data, "getlist") else []
        self.fields["vms"].choices = [(v, v) for v in chosen]

    def uuids(self) -> list[uuidlib.UUID]:
        found = []
        for value in getattr(self, "cleaned_data", {}).get("vms") or []:
            try:
                found.append(uuidlib.UUID(value))
            except (ValueError, TypeError, AttributeError):
                continue
        return found
