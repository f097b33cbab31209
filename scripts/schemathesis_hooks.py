"""Schemathesis hooks for scripts/schemathesis.sh: strategies for the custom string formats of
the cashback OpenAPI document (crates/cashback-api/src/openapi.rs). A pattern cannot carry a
check character, so valid values are generated here: fiscal codes (check character, real
birth dates), PANs (Luhn), IBANs (mod 97), account holders, acquirer file names (real dates)."""

import string

import schemathesis
from hypothesis import strategies as st

UPPER = string.ascii_uppercase
DIGITS = string.digits

# Values of the characters in odd (1-based) positions of a fiscal code; digits as letters A-J.
_ODD = [1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22, 25, 24, 23]
_MONTHS = "ABCDEHLMPRST"


def _cf_check(first15: str) -> str:
    total = 0
    for i, c in enumerate(first15):
        idx = int(c) if c.isdigit() else ord(c) - ord("A")
        total += _ODD[idx] if i % 2 == 0 else idx
    return chr(ord("A") + total % 26)


@st.composite
def fiscal_codes(draw):
    name = draw(st.text(UPPER, min_size=6, max_size=6))
    year = draw(st.integers(0, 99))
    month = draw(st.sampled_from(_MONTHS))
    day = draw(st.integers(1, 28)) + draw(st.sampled_from([0, 40]))
    place = draw(st.sampled_from(UPPER)) + "%03d" % draw(st.integers(0, 999))
    first15 = "%s%02d%s%02d%s" % (name, year, month, day, place)
    assert len(first15) == 15
    return first15 + _cf_check(first15)


@st.composite
def pans(draw):
    body = draw(st.text(DIGITS, min_size=11, max_size=18))
    total = 0
    # The check digit goes at the end: from the right, every second digit of the body doubles.
    for i, c in enumerate(reversed(body)):
        d = int(c)
        if i % 2 == 0:
            d = d * 2 - 9 if d * 2 > 9 else d * 2
        total += d
    return body + str((10 - total % 10) % 10)


def _mod97(s: str) -> int:
    return int("".join(str(int(c, 36)) for c in s)) % 97


@st.composite
def ibans(draw):
    country = draw(st.sampled_from(["IT", "DE"]))
    if country == "IT":
        bban = (
            draw(st.sampled_from(UPPER))
            + draw(st.text(DIGITS, min_size=10, max_size=10))
            + draw(st.text(DIGITS + UPPER, min_size=12, max_size=12))
        )
    else:
        bban = draw(st.text(DIGITS, min_size=18, max_size=18))
    check = 98 - _mod97(bban + country + "00")  # 2 to 98
    return "%s%02d%s" % (country, check, bban)


@st.composite
def file_names(draw):
    abi = draw(st.one_of(st.just("99999"), st.text(DIGITS + UPPER, min_size=5, max_size=5)))
    date = "%04d%02d%02d" % (draw(st.integers(2000, 2030)), draw(st.integers(1, 12)), draw(st.integers(1, 28)))
    time = "%02d%02d%02d" % (draw(st.integers(0, 23)), draw(st.integers(0, 59)), draw(st.integers(0, 59)))
    ext = draw(st.sampled_from([".csv", ".csv.pgp"]))
    return "CSTAR.%s.TRNLOG.%s.%s.%03d%s" % (abi, date, time, draw(st.integers(0, 999)), ext)


schemathesis.openapi.format("fiscal-code", fiscal_codes())
schemathesis.openapi.format("pan", pans())
schemathesis.openapi.format("iban", ibans())
schemathesis.openapi.format("account-holder", st.one_of(fiscal_codes(), st.text(DIGITS, min_size=11, max_size=11)))
schemathesis.openapi.format("acquirer-file-name", file_names())


# ---- uploads: a real SAS, so that generated files reach the ingestion ----

_UPLOAD = "/pagopastorage/{container}/{file}"
_sas_cache = {}


def _sas():
    """The acquirer pass's SAS (`CB_API_KEY`, `CB_BASE_URL`), asked once."""
    import json
    import os
    import urllib.request

    key, base = os.environ.get("CB_API_KEY", ""), os.environ.get("CB_BASE_URL", "")
    if not key or key == "-" or not base:
        return None
    if key not in _sas_cache:
        req = urllib.request.Request(
            base + "/rtd/csv-transaction/rtd/sas", method="POST", headers={"Ocp-Apim-Subscription-Key": key}
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            _sas_cache[key] = json.load(resp)
    return _sas_cache[key]


@schemathesis.hook
def map_case(context, case):
    """Positive upload cases go to this key's container with its SAS (negative ones keep what
    was generated: the 403 answers are fuzzed there)."""
    meta = case.meta
    if case.operation.path != _UPLOAD or meta is None or not meta.generation.mode.is_positive:
        return case
    sas = _sas()
    if sas is None:
        return case
    from urllib.parse import parse_qsl

    case.path_parameters = {**(case.path_parameters or {}), "container": sas["authorizedContainer"]}
    case.query = {**(case.query or {}), **dict(parse_qsl(sas["sas"]))}
    return case
