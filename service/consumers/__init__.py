"""The queue side: the long-poll consumer and the handlers it runs."""
