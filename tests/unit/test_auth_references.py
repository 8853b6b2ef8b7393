"""`validate` refuses an `auth::authenticator` that names no running extension (a typo, or an
extension left out of service::extensions): at run time every request to that surface would be
refused with 503 and nothing said at start."""
from __future__ import annotations

import pytest

from pipeline.config.resolve import resolve
from pipeline.errors import ConfigErrors
from pipeline.registry import factories

BASE = {
    "receivers": {"otlp": {"protocols": {"http": {"endpoint": "127.0.0.1:0",
                                                  "auth": {"authenticator": "bearertokenauth"}}}}},
    "exporters": {"debug": {}},
    "extensions": {"bearertokenauth": {"token": "t"}, "oidc": {"issuer_url": "https://i", "audience": "a",
                                                                "jwks_url": "https://i/jwks"},
                   "debug_api": {"auth": {"authenticator": "oidc"}},
                   "health_check": {"auth": {"authenticator": "oidcc"}}},
    "service": {"extensions": ["bearertokenauth", "debug_api", "health_check"],
                "pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["debug"]}},
                "telemetry": {"metrics": {"auth": {"authenticator": "nope"}}}},
}


def test_each_authenticator_that_names_no_running_extension_is_one_error():
    with pytest.raises(ConfigErrors) as refused:
        resolve(BASE, factories())
    errors = [e for e in refused.value.errors if "authenticator" in e]
    assert sorted(e.split(": names ", 1)[0] for e in errors) == [
        "extensions::debug_api::auth::authenticator", "extensions::health_check::auth::authenticator",
        "service::telemetry::metrics::auth::authenticator"]
    [debug] = [e for e in errors if e.startswith("extensions::debug_api")]
    assert debug.startswith('extensions::debug_api::auth::authenticator: names "oidc", which is not an extension '
                            "listed in service::extensions")


def test_authenticators_that_run_pass():
    fixed = {**BASE, "extensions": {**BASE["extensions"], "health_check": {"auth": {"authenticator": "oidc"}}},
             "service": {**BASE["service"], "extensions": ["bearertokenauth", "oidc", "debug_api", "health_check"],
                         "telemetry": {"metrics": {"auth": {"authenticator": "bearertokenauth"}}}}}
    resolve(fixed, factories())
