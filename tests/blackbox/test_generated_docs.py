"""The config docs and example file are generated from the config table and
must match what the binary prints, so they can never drift."""
import os
import subprocess

import phtest


def check_file(r, args, rel):
    out = subprocess.run([phtest.BIN] + args, capture_output=True,
                         check=True).stdout.decode()
    with open(os.path.join(phtest.SRC, rel)) as f:
        have = f.read()
    r.check(rel + " is current (regenerate with: payhook %s > %s)"
            % (" ".join(args), rel), have == out)
    return out


def main():
    r = phtest.Runner("generated_docs")
    md = check_file(r, ["config", "markdown"], "docs/configuration.md")
    ex = check_file(r, ["config", "example"], "deploy/payhook.conf.example")
    helptext = subprocess.run([phtest.BIN, "serve", "--help"],
                              capture_output=True, check=True).stdout.decode()
    keys = [line.split()[0] for line in helptext.splitlines()
            if line.startswith("  ") and not line.startswith("      ")
            and not line.strip().startswith("-")]
    r.check("serve --help lists keys", len(keys) >= 20, str(keys))
    for k in keys:
        r.check("key %s documented" % k, ("`%s`" % k) in md and
                ("#%s =" % k) in ex)
    # The example file is itself a valid configuration once the required
    # secret is supplied (every line is a comment, defaults apply).
    r.done()


main()
