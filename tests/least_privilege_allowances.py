"""The reviewed table: each action a function's role grants that no test sees it call, and why.

tests/support/least_privilege.py fails a whole run for a granted action never seen that is not
listed here, and for an entry here that is seen or no longer granted, so the table stays true.
`function` and `resource` are fnmatch patterns (the resource as the template grants it, resolved in
the tests' account and region, Environment=dev). docs/security.md says how to read and change it.
"""

from __future__ import annotations

from tests.support.least_privilege import Allowance

ALLOWANCES: tuple[Allowance, ...] = ()
