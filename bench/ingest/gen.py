#!/usr/bin/python3
"""gen.py: pre-compute signed webhooks for bench/ingest (wrk has no HMAC).

Writes DIR/template.json, one ~1.5 KB compact GOV.UK Pay webhook body in
which @@MSGID@@ stands for webhook_message_id and @@PAYID@@ for the
payment id (resource_id and resource.payment_id), and DIR/ids.txt, N lines
"<webhook_message_id> <payment_id> <Pay-Signature>": the signature is the
hex HMAC-SHA256 under SECRET of the template with that line's ids filled
in. Every id is distinct, so each request wrk sends is a new webhook.

The ids count up (in order, from SEED), unless --random: then they are
drawn at random from SEED, as GOV.UK Pay's own ids are random. That
matters to the journal: counting ids add their index entries at the end
of the b-tree, a few pages per commit; random ones land on a different
leaf page each, so every webhook writes two more whole pages (its
webhook_message_id and resource_id indexes) once the journal is large.

usage: gen.py DIR N SECRET_FILE [SEED] [--random]
"""
import hashlib
import hmac
import json
import os
import random
import sys

ALPHABET = "0123456789abcdefghijklmnopqrstuv"


def gov_id(n):
    """26 characters of GOV.UK Pay's id alphabet, distinct for each n."""
    out = []
    for _ in range(26):
        out.append(ALPHABET[n % 32])
        n //= 32
    return "".join(reversed(out))


def template():
    """A card_payment_captured webhook shaped like GOV.UK Pay's, ~1.5 KB."""
    return {
        "webhook_message_id": "@@MSGID@@",
        "created_date": "2026-11-21T10:06:13.371Z",
        "resource_id": "@@PAYID@@",
        "api_version": 1,
        "resource_type": "PAYMENT",
        "event_type": "card_payment_captured",
        "resource": {
            "amount": 14500, "description": "Pay your council tax",
            "reference": "CT-2026-0041-7781", "language": "en",
            "email": "sherlock.holmes@example.com",
            "state": {"status": "success", "finished": True},
            "payment_id": "@@PAYID@@", "payment_provider": "worldpay",
            "created_date": "2026-11-21T10:05:45.454Z",
            "refund_summary": {"status": "available",
                               "amount_available": 14500,
                               "amount_submitted": 0},
            "settlement_summary": {
                "capture_submit_time": "2026-11-21T10:06:12.105Z",
                "captured_date": "2026-11-21"},
            "card_details": {
                "last_digits_card_number": "4242",
                "first_digits_card_number": "424242",
                "cardholder_name": "Sherlock Holmes",
                "expiry_date": "04/29",
                "billing_address": {"line1": "221 Baker Street",
                                    "line2": "Flat b", "postcode": "NW1 6XE",
                                    "city": "London", "country": "GB"},
                "card_brand": "Visa", "card_type": "debit",
                "wallet_type": None},
            "delayed_capture": False, "moto": False,
            "corporate_card_surcharge": 0, "total_amount": 14500,
            "fee": 25, "net_amount": 14475,
            "provider_id": "pp-0041-7781",
            "return_url": "https://your-council.service.gov.uk/council-tax/"
                          "payment-complete?ref=CT-2026-0041-7781",
            "authorisation_summary": {"three_d_secure": {"required": True}},
            "authorisation_mode": "web",
            "metadata": {"ledger_code": "AB100",
                         "internal_reference_number": 200,
                         "council_tax_account": "40017781",
                         "billing_period": "2026-27",
                         "instalment": 3, "channel": "online"},
        },
    }


def main():
    argv = [x for x in sys.argv[1:] if x != "--random"]
    randomly = len(argv) < len(sys.argv) - 1
    if len(argv) not in (3, 4):
        sys.exit(__doc__)
    out, n, secret_file = argv[0], int(argv[1]), argv[2]
    seed = int(argv[3]) if len(argv) == 4 else 0
    rng = random.Random(seed)
    with open(secret_file, "rb") as f:
        secret = f.readline().strip()
    tpl = json.dumps(template(), separators=(",", ":")).encode()
    a, rest = tpl.split(b"@@MSGID@@")
    b, c, d = rest.split(b"@@PAYID@@")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "template.json"), "wb") as f:
        f.write(tpl + b"\n")
    base = (seed & 0xffff) << 40
    with open(os.path.join(out, "ids.txt"), "w") as f:
        lines = []
        for i in range(n):
            if randomly:    # 130 bits: a repeat is beyond belief
                mid = gov_id(rng.getrandbits(130))
                pid = gov_id(rng.getrandbits(130))
            else:
                mid = gov_id(base + 2 * i)
                pid = gov_id(base + 2 * i + 1)
            body = b"".join((a, mid.encode(), b, pid.encode(), c,
                             pid.encode(), d))
            sig = hmac.digest(secret, body, hashlib.sha256).hex()
            lines.append("%s %s %s\n" % (mid, pid, sig))
            if len(lines) == 10000:
                f.write("".join(lines))
                lines = []
        f.write("".join(lines))
    print("gen: %d webhooks of %d bytes in %s (%s ids)" %
          (n, len(tpl) - 9 - 2 * 9 + 3 * 26, out,
           "random" if randomly else "counting"))


if __name__ == "__main__":
    main()
