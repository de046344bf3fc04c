"""Background and scheduled work: worker loops woken by events, and one scheduler by lease."""
