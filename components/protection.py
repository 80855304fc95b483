"""Resource options of the resources that hold data (G3).

With data protection the engine refuses any deployment that would delete or replace them
(`protect`: a `pulumi destroy` stops before deleting anything) and, should the guard be
lifted by hand with `pulumi state unprotect`, deleting them from the stack leaves them and
their data in the account (`retain_on_delete`). Without it they are ordinary resources.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi


def data_store_options(
    parent: pulumi.Resource, protect_data: bool, **extra: Any
) -> pulumi.ResourceOptions:
    """Options of a data-holding child of `parent`: protected and retained when `protect_data`."""
    return pulumi.ResourceOptions(
        parent=parent, protect=protect_data, retain_on_delete=protect_data, **extra
    )


@dataclass(frozen=True)
class Lifecycle:
    """Everything data protection switches on together (G3), derived from the one flag.

    Without it a stack is destroyable: keys wait KMS's shortest window, secrets go at once
    (so a re-deploy can reuse their names), buckets, repositories and stream consumers are
    emptied on destroy. With it keys and secrets keep 30-day recovery windows and nothing
    holding data is emptied.
    """

    protect_data: bool

    @property
    def key_deletion_window_days(self) -> int:
        return 30 if self.protect_data else 7

    @property
    def secret_recovery_window_days(self) -> int:
        return 30 if self.protect_data else 0

    @property
    def destroyable(self) -> bool:
        return not self.protect_data
