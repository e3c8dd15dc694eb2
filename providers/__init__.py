"""The `backup` provider: observe a resource's facts and carry out its effects."""
