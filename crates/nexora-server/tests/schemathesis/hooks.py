"""schemathesis hooks for the OpenAPI contract test (tests/schemathesis.rs).

The one rule of the API a JSON Schema cannot state about a generated request: a key's
`expires_at` must be in the future (and no later than the year 9999 in UTC), judged by the
server's clock. A generated date-time is as likely to lie in the past, which the server rightly
answers 422; schemathesis would call that a valid request rejected. So every generated
`expires_at` that looks like a date-time gets the year 2400: a date valid in its own year is
valid in 2400 (a leap year), the instant is in the future, and any offset keeps it in range. A
malformed value stays malformed, so negative cases stay negative. The behaviour table tests
past and out-of-range expiries (422) directly.
"""

import re

import schemathesis

DATE_TIME = re.compile(r"^\d{4}(?=-\d{2}-\d{2}[Tt ])")


@schemathesis.hook
def map_case(context, case):
    if (
        case.method.upper() == "POST"
        and case.path == "/api/users/me/api-keys"
        and isinstance(case.body, dict)
        and isinstance(case.body.get("expires_at"), str)
    ):
        case.body["expires_at"] = DATE_TIME.sub("2400", case.body["expires_at"])
    return case
