#!/usr/bin/python3
"""test_schema_examples.py: schemas/govuk_pay_webhook.json gives the same
verdicts as receiver/webhook.c (tests/unit/test_webhook.c) on every file in
$PAYHOOK_REF/webhook-examples and on mutated copies of the constructed body.
Run by ctest with /usr/bin/python3 (Debian's python3-jsonschema 4.10).
Prints "N passed, N failed"; exits 1 when anything failed."""

import copy
import json
import os
import sys

import jsonschema

SRC = os.environ.get("PAYHOOK_SRC") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..")
REF = os.environ.get("PAYHOOK_REF") or os.path.join(SRC, "..", "shared",
                                                    "reference")
EXAMPLES = os.path.join(REF, "webhook-examples")
SCHEMA = os.path.join(SRC, "schemas", "govuk_pay_webhook.json")

CONSTRUCTED = "constructed-card_payment_captured.body.json"
API_REPR = "pay-webhooks-PaymentApiRepresentationTest-expectedJson-resource.json"

# Expected verdict for every file in webhook-examples (same as test_webhook.c).
EXPECTED = {
    CONSTRUCTED: True,
    "tech-docs-webhook-message-example.json": True,
    "pay-webhooks-WebhookMessageBodyTest-expectedJson.json": False,
    API_REPR: False,                      # a resource only, no envelope
    "signature-test-vectors.json": False,  # not a webhook body
}

results = {"passed": 0, "failed": 0}


def check(name, ok, detail=""):
    if ok:
        results["passed"] += 1
        print("ok   %s" % name)
    else:
        results["failed"] += 1
        print("FAIL %s %s" % (name, detail))


def verdict(validator, doc):
    errors = list(validator.iter_errors(doc))
    return not errors, "; ".join(e.message[:100] for e in errors[:3])


def load(name):
    with open(os.path.join(EXAMPLES, name), "rb") as f:
        return json.loads(f.read().decode("utf-8"))


def check_examples(validator):
    names = sorted(os.listdir(EXAMPLES))
    for name in names:
        if name not in EXPECTED:
            check("example %s has an expected verdict" % name, False,
                  "new file: add it here and to test_webhook.c")
            continue
        valid, why = verdict(validator, load(name))
        check("example %s is %s" % (name, "valid" if EXPECTED[name]
                                    else "invalid"),
              valid == EXPECTED[name], why)
    for name in EXPECTED:
        check("example %s exists" % name, name in names)


def envelope(resource, resource_id):
    return {
        "webhook_message_id": "2c7fqamtqk0g4sbhnm4f4ce6qa",
        "created_date": "2018-09-22T10:13:16.067Z",
        "resource_id": resource_id,
        "api_version": 1,
        "resource_type": "PAYMENT",
        "event_type": "card_payment_started",
        "resource": resource,
    }


def check_wrapped_resource(validator):
    res = load(API_REPR)
    valid, why = verdict(validator, envelope(res, res["payment_id"]))
    check("PaymentApiRepresentationTest resource is valid in an envelope",
          valid, why)
    bad = copy.deepcopy(res)
    bad["amount"] = "1000"
    valid, _ = verdict(validator, envelope(bad, res["payment_id"]))
    check("wrapped resource with a string amount is invalid", not valid)


def setter(path, value):
    def apply(doc):
        *parents, last = path
        for key in parents:
            doc = doc[key]
        doc[last] = value
    return apply


def deleter(path):
    def apply(doc):
        *parents, last = path
        for key in parents:
            doc = doc[key]
        del doc[last]
    return apply


R = ("resource",)
CARD = R + ("card_details",)

# (name, edit, valid): the same verdicts test_webhook.c asserts.
MUTATIONS = [
    ("msg id ../", setter(("webhook_message_id",), "../etc/passwd"), False),
    ("msg id %2F", setter(("webhook_message_id",), "abc%2Fdef"), False),
    ("msg id upper case", setter(("webhook_message_id",),
                                 "2C7FQAMTQK0G4SBHNM4F4CE6QA"), False),
    ("msg id 27 chars", setter(("webhook_message_id",),
                               "2c7fqamtqk0g4sbhnm4f4ce6qa0"), False),
    ("msg id trailing newline", setter(("webhook_message_id",),
                                       "2c7fqamtqk\n"), False),
    ("msg id empty", setter(("webhook_message_id",), ""), False),
    ("msg id 1 char", setter(("webhook_message_id",), "0"), True),
    ("resource id slash", setter(("resource_id",), "hu20/../x"), False),
    ("payment id upper", setter(R + ("payment_id",),
                                "HU20SQLACT5260Q2NANM0Q8U93"), False),
    ("api_version 2", setter(("api_version",), 2), False),
    ("api_version true", setter(("api_version",), True), False),
    ("api_version string", setter(("api_version",), "1"), False),
    ("resource_type payment", setter(("resource_type",), "payment"), True),
    ("resource_type Payment", setter(("resource_type",), "Payment"), True),
    ("resource_type REFUND", setter(("resource_type",), "REFUND"), False),
    ("event_type unknown", setter(("event_type",), "card_payment_disputed"),
     True),
    ("event_type upper", setter(("event_type",), "CARD_PAYMENT_CAPTURED"),
     False),
    ("event_type 64 chars", setter(("event_type",), "a" * 64), True),
    ("event_type 65 chars", setter(("event_type",), "a" * 65), False),
    ("created_date without millis", setter(("created_date",),
                                           "2021-10-19T10:06:13Z"), True),
    ("created_date offset", setter(("created_date",),
                                   "2021-10-19T10:06:13.371+01:00"), False),
    ("created_date month 13", setter(("created_date",),
                                     "2021-13-19T10:06:13.371Z"), False),
    ("created_date lower z", setter(("created_date",),
                                    "2021-10-19T10:06:13.371z"), False),
    ("no webhook_message_id", deleter(("webhook_message_id",)), False),
    ("no resource", deleter(("resource",)), False),
    ("resource null", setter(("resource",), None), False),
    ("no payment_id", deleter(R + ("payment_id",)), False),
    ("no amount", deleter(R + ("amount",)), False),
    ("no state.finished", deleter(R + ("state", "finished")), False),
    ("no description", deleter(R + ("description",)), False),
    ("no reference", deleter(R + ("reference",)), False),
    ("no email (optional)", deleter(R + ("email",)), True),
    ("amount max", setter(R + ("amount",), 10000000), True),
    ("amount max+1", setter(R + ("amount",), 10000001), False),
    ("amount negative", setter(R + ("amount",), -1), False),
    ("amount string", setter(R + ("amount",), "5000"), False),
    ("amount huge", setter(R + ("amount",), 10 ** 30), False),
    ("net_amount int64 max", setter(R + ("net_amount",), 2 ** 63 - 1), True),
    ("net_amount int64 max+1", setter(R + ("net_amount",), 2 ** 63), False),
    ("fee fraction", setter(R + ("fee",), 25.5), False),
    ("status declined", setter(R + ("state", "status"), "declined"), True),
    ("status 24 chars", setter(R + ("state", "status"), "a" * 24), False),
    ("status upper", setter(R + ("state", "status"), "SUCCESS"), False),
    ("finished string", setter(R + ("state", "finished"), "true"), False),
    ("state message null", setter(R + ("state", "message"), None), False),
    ("email null", setter(R + ("email",), None), False),
    ("moto string", setter(R + ("moto",), "false"), False),
    ("card_type null", setter(CARD + ("card_type",), None), True),
    ("billing_address null", setter(CARD + ("billing_address",), None), True),
    ("line2 null", setter(CARD + ("billing_address", "line2"), None), True),
    ("card_details null", setter(R + ("card_details",), None), False),
    ("card_brand number", setter(CARD + ("card_brand",), 4), False),
    ("refund status null", setter(R + ("refund_summary", "status"), None),
     True),
    ("captured_date null", setter(R + ("settlement_summary", "captured_date"),
                                  None), False),
    ("3ds required string", setter(R + ("authorisation_summary",
                                        "three_d_secure", "required"), "yes"),
     False),
    ("metadata float", setter(R + ("metadata", "internal_reference_number"),
                              25.0), True),
    ("metadata null value", setter(R + ("metadata", "ledger_code"), None),
     False),
    ("metadata nested", setter(R + ("metadata", "ledger_code"), {"a": 1}),
     False),
    ("extra provider_id", setter(R + ("provider_id",), "10987654321"), True),
    ("extra envelope key", setter(("api_minor",), {}), True),
]


def check_mutations(validator):
    base = load(CONSTRUCTED)
    for name, edit, want in MUTATIONS:
        doc = copy.deepcopy(base)
        edit(doc)
        valid, why = verdict(validator, doc)
        check("mutation %s is %s" % (name, "valid" if want else "invalid"),
              valid == want, why)


def main():
    with open(SCHEMA, "rb") as f:
        schema = json.loads(f.read().decode("utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    check("schema uses draft 2020-12",
          cls is jsonschema.Draft202012Validator)
    validator = cls(schema)
    check_examples(validator)
    check_wrapped_resource(validator)
    check_mutations(validator)
    print("%d passed, %d failed" % (results["passed"], results["failed"]))
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
