"""Model weights: where they are, how they load and merge, and the number format each kind of work runs in."""
