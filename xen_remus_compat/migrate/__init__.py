"""What ``convert`` and ``show`` do: discover inputs, plan, write atomically, report."""
