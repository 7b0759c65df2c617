"""Per-entry mapping variables, as a property: the result is the mapping with each variable's
entry set (or removed when empty), the more specific prefix applied last, nothing else touched.
End-to-end runs with real pipelines are in tests/e2e/test_mapping_from_environment.py."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from sendgrid_destination.env_mapping import mapping_prefixes, overlay_mapping

GLOBAL, SCOPED = mapping_prefixes("sendgrid", "nightly")
names = st.from_regex(r"[a-z][a-z0-9]{0,7}(_[a-z0-9]{1,4})?", fullmatch=True).filter(
    lambda n: n != "custom_fields"
)
columns = st.text(st.characters(codec="ascii", categories=["L", "N"]), max_size=6)
entries = st.dictionaries(names, columns, max_size=4)


def _expected(base: dict[str, Any], layers: list[tuple[dict, dict]]) -> dict[str, Any]:
    result = {k: v for k, v in base.items() if k != "custom_fields"}
    custom = dict(base.get("custom_fields", {}))
    for reserved, custom_layer in layers:
        for target, layer in ((result, reserved), (custom, custom_layer)):
            for name, column in layer.items():
                if column.strip():
                    target[name] = column
                else:
                    target.pop(name, None)
    return result | ({"custom_fields": custom} if custom else {})


@given(
    base=st.fixed_dictionaries({}, optional={"email": names, "custom_fields": entries}),
    layers=st.lists(st.tuples(entries, entries), min_size=2, max_size=2),
)
def test_variables_set_or_remove_entries_the_scoped_ones_last(base, layers) -> None:
    env = {}
    for prefix, (reserved, custom) in zip((GLOBAL, SCOPED), layers, strict=True):
        env |= {f"{prefix}{name.upper()}": col for name, col in reserved.items()}
        env |= {f"{prefix}CUSTOM_FIELDS__{name.upper()}": col for name, col in custom.items()}
    result = overlay_mapping(base, [GLOBAL, SCOPED], env)
    assert result == (_expected(base, layers) if env else base)


def test_without_variables_the_mapping_is_kept_and_none_stays_none() -> None:
    base = {"email": "email", "custom_fields": {"plan": "plan"}}
    assert overlay_mapping(base, [GLOBAL], {"DESTINATION__OTHER__MAPPING__EMAIL": "x"}) == base
    assert overlay_mapping(None, [GLOBAL], {}) is None


def test_the_prefixes_follow_the_destination_and_pipeline_names() -> None:
    assert mapping_prefixes("sg_prod", "Nightly") == [
        "DESTINATION__SG_PROD__MAPPING__",
        "NIGHTLY__DESTINATION__SG_PROD__MAPPING__",
    ]
