#!/bin/sh
# lint.sh: ban the unsafe C string functions listed in STYLE.md (curl's
# checksrc idea). Exits 1 naming every offending line.
cd "$(dirname "$0")/.." || exit 2
banned='\b(sprintf|vsprintf|strcpy|strcat|strncat|strtok|atoi|atol|gets)[[:space:]]*\('
hits=$(grep -rnE "$banned" --include='*.c' --include='*.h' \
    common receiver journal dispatch sim cmd tests bench 2>/dev/null |
    grep -vE '^[^:]+:[0-9]+:[[:space:]]*(\*|/\*|//)')
if [ -n "$hits" ]; then
	echo "lint: banned string functions (use xsnprintf/xasprintf/memcpy/strtoll):"
	echo "$hits"
	exit 1
fi
echo "lint: ok (no sprintf/strcpy/strcat/strtok/atoi/gets)"
