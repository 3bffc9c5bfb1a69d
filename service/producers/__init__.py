"""The enqueue side: creating jobs and sending their messages."""
