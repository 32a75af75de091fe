"""What the trainer steps share: arguments and resuming, callbacks, the loss, methods (methods/) and rewards."""
