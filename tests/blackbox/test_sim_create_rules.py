"""Every POST /v1/payments validation rule, on both sides of each limit
(GOVUK-PAY.md §8): status, error code and field."""

import sys

sys.dont_write_bytecode = True
from simharness import LIVE_KEY, TEST_KEY, Checks, Sim

c = Checks("test_sim_create_rules")

BASE = {"amount": 1450, "reference": "ref", "description": "desc",
        "return_url": "https://example.service.gov.uk/done"}
OK = (201, None, None)
DROP = object()


def with_(**kw):
    b = dict(BASE)
    for k, v in kw.items():
        if v is DROP:
            b.pop(k, None)
        else:
            b[k] = v
    return b


def md(n, klen=5, vlen=5):
    return {("k%0*d" % (klen - 1, i))[:klen]: "v" * vlen for i in range(n)}


S255, S256 = "a" * 255, "a" * 256
EMOJI_255 = "\U0001F600" * 127 + "a"   # 255 UTF-16 units
EMOJI_256 = "\U0001F600" * 128         # 256 UTF-16 units
ADDR = {"line1": "1 Street", "line2": "Flat 2", "postcode": "SW1A 1AA",
        "city": "London", "country": "GB"}


def pf(**kw):
    a = dict(ADDR)
    name = kw.pop("cardholder_name", "J Bloggs")
    a.update(kw)
    return {"cardholder_name": name, "billing_address": a}


CASES = [
    # amount: integer 1..10,000,000
    ("amount 1", with_(amount=1), OK),
    ("amount 0", with_(amount=0), (422, "P0102", "amount")),
    ("amount -1", with_(amount=-1), (422, "P0102", "amount")),
    ("amount 10000000", with_(amount=10000000), OK),
    ("amount 10000001", with_(amount=10000001), (422, "P0102", "amount")),
    ("amount string", with_(amount="1450"), (400, "P0102", "amount")),
    ("amount 1450.0", '{"amount":1450.0,"reference":"r","description":"d",'
     '"return_url":"https://x.gov.uk/"}', (400, "P0102", "amount")),
    ("amount 1e3", '{"amount":1e3,"reference":"r","description":"d",'
     '"return_url":"https://x.gov.uk/"}', (400, "P0102", "amount")),
    ("amount 2^31", with_(amount=2147483648), (400, "P0102", "amount")),
    ("amount bool", with_(amount=True), (400, "P0102", "amount")),
    ("amount missing", with_(amount=DROP), (400, "P0101", "amount")),
    ("amount null", with_(amount=None), (400, "P0101", "amount")),
]
for f in ("reference", "description"):
    CASES += [
        (f + " 255", with_(**{f: S255}), OK),
        (f + " 256", with_(**{f: S256}), (422, "P0102", f)),
        (f + " 255 UTF-16 units", with_(**{f: EMOJI_255}), OK),
        (f + " 256 UTF-16 units", with_(**{f: EMOJI_256}),
         (422, "P0102", f)),
        (f + " missing", with_(**{f: DROP}), (400, "P0101", f)),
        (f + " null", with_(**{f: None}), (400, "P0101", f)),
        (f + " empty", with_(**{f: ""}), (400, "P0101", f)),
        (f + " blank", with_(**{f: "   "}), (400, "P0101", f)),
        (f + " number", with_(**{f: 12}), (400, "P0102", f)),
        (f + " with <", with_(**{f: "a<b"}), (400, "P0102", f)),
        (f + " with >", with_(**{f: "a>b"}), (400, "P0102", f)),
        (f + " with |", with_(**{f: "a|b"}), (400, "P0102", f)),
        (f + " with &", with_(**{f: "a&b"}), OK),
        (f + " with URL", with_(**{f: "see https://x.gov.uk"}),
         (422, "P0102", f)),
        (f + " with www", with_(**{f: "see www.example.com"}),
         (422, "P0102", f)),
        (f + " with a dot", with_(**{f: "Council tax 2026.27"}), OK),
    ]
CASES += [
    ("return_url 2000", with_(return_url="https://x.gov.uk/" + "a" * 1983),
     OK),
    ("return_url 2001", with_(return_url="https://x.gov.uk/" + "a" * 1984),
     (422, "P0102", "return_url")),
    ("return_url missing", with_(return_url=DROP),
     (400, "P0101", "return_url")),
    ("return_url null", with_(return_url=None),
     (400, "P0101", "return_url")),
    ("return_url number", with_(return_url=5), (400, "P0102", "return_url")),
    ("return_url not a URL", with_(return_url="not a url"),
     (422, "P0102", "return_url")),
    ("return_url http on test", with_(return_url="http://localhost:3000/r"),
     OK),
    ("language en", with_(language="en"), OK),
    ("language cy", with_(language="cy"), OK),
    ("language fr", with_(language="fr"), (422, "P0102", "language")),
    ("language EN", with_(language="EN"), (422, "P0102", "language")),
    ("language number", with_(language=1), (400, "P0102", "language")),
    ("email 254", with_(email="a" * 242 + "@example.org"), OK),
    ("email 255", with_(email="a" * 243 + "@example.org"),
     (422, "P0102", "email")),
    ("email number", with_(email=5), (400, "P0102", "email")),
    ("email null", with_(email=None), OK),
    ("delayed_capture true", with_(delayed_capture=True), OK),
    ("delayed_capture false", with_(delayed_capture=False), OK),
    ("delayed_capture string", with_(delayed_capture="true"),
     (400, "P0102", "delayed_capture")),
    ("delayed_capture null", with_(delayed_capture=None),
     (400, "P0102", "delayed_capture")),
    ("moto false", with_(moto=False), OK),
    ("moto true (not enabled)", with_(moto=True), (422, "P0196", "moto")),
    ("moto string", with_(moto="x"), (400, "P0102", "moto")),
    ("metadata 15 pairs", with_(metadata=md(15)), OK),
    ("metadata 16 pairs", with_(metadata=md(16)),
     (422, "P0102", "metadata")),
    ("metadata key 30", with_(metadata=md(1, klen=30)), OK),
    ("metadata key 31", with_(metadata=md(1, klen=31)),
     (422, "P0102", "metadata")),
    ("metadata key empty", with_(metadata={"": "x"}),
     (422, "P0102", "metadata")),
    ("metadata value 100", with_(metadata=md(1, vlen=100)), OK),
    ("metadata value 101", with_(metadata=md(1, vlen=101)),
     (422, "P0102", "metadata")),
    ("metadata value empty string", with_(metadata={"a": ""}), OK),
    ("metadata number and bool", with_(metadata={"n": 1.5, "b": False}),
     OK),
    ("metadata value null", with_(metadata={"a": None}),
     (422, "P0102", "metadata")),
    ("metadata value object", with_(metadata={"a": {"b": 1}}),
     (422, "P0102", "metadata")),
    ("metadata value array", with_(metadata={"a": [1]}),
     (422, "P0102", "metadata")),
    ("metadata keys differ only in case", with_(metadata={"a": 1, "A": 2}),
     (422, "P0102", "metadata")),
    ("metadata null", with_(metadata=None), (422, "P0102", "metadata")),
    ("metadata string", with_(metadata="x"), (422, "P0102", "metadata")),
    ("prefilled full", with_(prefilled_cardholder_details=pf()), OK),
    ("prefilled name 255",
     with_(prefilled_cardholder_details=pf(cardholder_name=S255)), OK),
    ("prefilled name 256",
     with_(prefilled_cardholder_details=pf(cardholder_name=S256)),
     (422, "P0102", "prefilled_cardholder_details.cardholder_name")),
    ("prefilled name number",
     with_(prefilled_cardholder_details=pf(cardholder_name=5)),
     (400, "P0102", "cardholder_name")),
    ("prefilled postcode 25",
     with_(prefilled_cardholder_details=pf(postcode="a" * 25)), OK),
    ("prefilled postcode 26",
     with_(prefilled_cardholder_details=pf(postcode="a" * 26)),
     (422, "P0102",
      "prefilled_cardholder_details.billing_address.postcode")),
]
for f in ("line1", "line2", "city"):
    CASES += [
        ("prefilled %s 255" % f,
         with_(prefilled_cardholder_details=pf(**{f: S255})), OK),
        ("prefilled %s 256" % f,
         with_(prefilled_cardholder_details=pf(**{f: S256})),
         (422, "P0102",
          "prefilled_cardholder_details.billing_address." + f)),
        ("prefilled %s number" % f,
         with_(prefilled_cardholder_details=pf(**{f: 1})),
         (400, "P0102", f)),
    ]
CASES += [
    ("unexpected attribute", with_(colour="red"), (400, "P0104", "colour")),
    ("invalid JSON", '{"amount": 1450,', (400, "P0197", None)),
    ("JSON array", '[1,2]', (400, "P0197", None)),
    ("empty body", '', (400, "P0197", None)),
    ("authorisation_mode web", with_(authorisation_mode="web"), OK),
    ("authorisation_mode moto_api", with_(authorisation_mode="moto_api"),
     (422, "P0195", "authorisation_mode")),
    ("authorisation_mode bogus", with_(authorisation_mode="bogus"),
     (422, "P0102", "authorisation_mode")),
    ("agreement_id without agreement mode",
     with_(agreement_id="a" * 26), (400, "P0104", "agreement_id")),
    ("set_up_agreement unknown", with_(set_up_agreement="a" * 26),
     (400, "P0103", "set_up_agreement")),
    ("set_up_agreement 25 chars", with_(set_up_agreement="a" * 25),
     (422, "P0102", "set_up_agreement")),
]


def run(sim, name, body, want, key=TEST_KEY, headers=None):
    r = sim.api("POST", "/v1/payments", body, key=key, headers=headers)
    status, code, field = want
    got = (r.status, (r.json or {}).get("code"), (r.json or {}).get("field"))
    c.eq(got, (status, code, field), name)
    if status != 201:
        c.check(r.json and isinstance(r.json.get("description"), str) and
                r.json["description"], name + ": has a description", r)
    return r


with Sim() as sim:
    for name, body, want in CASES:
        run(sim, name, body, want)
    # live accounts need https
    run(sim, "live http return_url",
        with_(return_url="http://example.service.gov.uk/r"),
        (422, "P0920", "return_url"), key=LIVE_KEY)
    run(sim, "live https return_url", with_(), OK, key=LIVE_KEY)
    # Idempotency-Key header
    run(sim, "Idempotency-Key ok", with_(), OK,
        headers={"Idempotency-Key": "abc-123"})
    r = sim.api("POST", "/v1/payments", with_(),
                headers={"Idempotency-Key": "bad key!"})
    c.eq((r.status, r.json.get("code"), r.json.get("header")),
         (422, "P0102", "Idempotency-Key"), "Idempotency-Key bad")
    r = sim.api("POST", "/v1/payments", with_(),
                headers={"Idempotency-Key": "a" * 256})
    c.eq(r.status, 422, "Idempotency-Key 256 chars")
    # the documented example error
    r = sim.api("POST", "/v1/payments", with_(amount=10000001))
    c.eq(r.json, {"field": "amount", "code": "P0102",
                  "description": "Invalid attribute value: amount. Must be "
                                 "less than or equal to 10000000"},
         "documented error example, byte for byte")
    # the request's fields come back
    body = with_(language="cy", email="x@example.org", delayed_capture=True,
                 metadata={"a": "b", "n": 2}, reference="R1",
                 description="D1", amount=777)
    r = run(sim, "echo fields", body, OK)
    for k, v in body.items():
        c.eq(r.json.get(k), v, "create echoes " + k)
    c.eq(r.header("Location"), r.json["_links"]["self"]["href"],
         "Location is the self link")
    # a payment made with the test key is invisible to the live key
    pid = r.json["payment_id"]
    c.eq(sim.api("GET", "/v1/payments/" + pid, key=LIVE_KEY).status, 404,
         "accounts are separate")
    c.eq(sim.stop(), 0, "clean exit")

with Sim(extra=["--reject-urls", "0"]) as sim:
    run(sim, "URLs allowed with --reject-urls 0",
        with_(description="see https://x.gov.uk"), OK)

c.finish()
