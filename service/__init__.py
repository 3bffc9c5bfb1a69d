"""storyboard-service: novels in, comic storyboards out, through a queue and a worker."""

__version__ = "0.1.0"
