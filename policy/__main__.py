"""The platform's CrossGuard policy pack (O4).

    pulumi preview --stack dev --policy-pack policy \
        --policy-pack-config policy/policy-config.dev.json

The rules live in `rules.py` as plain functions that the unit tests and `make plan` also run.
Three rules need stack facts, given per stack in `policy-config.<stack>.json`:
`required-tags` and `names-carry-suffix` take `environmentSuffix`,
`destroyable-unless-protected` takes `dataProtection` (both as in `Pulumi.<stack>.yaml`).
Any rule's enforcement can be changed in that file too, e.g.
`"encryption-in-transit": "advisory"` for a stack that turned cache TLS off on purpose.
"""

import sys
from pathlib import Path

# The pack's own modules, and the repository root for the AWS facts `rules.py` shares with
# the components (`components/aws_limits.py`, plain data).
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

from pack import PACK_NAME, build_policies
from pulumi_policy import EnforcementLevel, PolicyPack

PolicyPack(name=PACK_NAME, enforcement_level=EnforcementLevel.MANDATORY, policies=build_policies())
