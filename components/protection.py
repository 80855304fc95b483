"""Resource options of the resources that hold data (G3).

With data protection the engine refuses any deployment that would delete or replace them
(`protect`: a `pulumi destroy` stops before deleting anything) and, should the guard be
lifted by hand with `pulumi state unprotect`, deleting them from the stack leaves them and
their data in the account (`retain_on_delete`). Without it they are ordinary resources.
"""

from __future__ import annotations

from typing import Any

import pulumi


def data_store_options(parent: pulumi.Resource, protect_data: bool,
                       **extra: Any) -> pulumi.ResourceOptions:
    """Options of a data-holding child of `parent`: protected and retained when `protect_data`."""
    return pulumi.ResourceOptions(parent=parent, protect=protect_data,
                                  retain_on_delete=protect_data, **extra)
