"""Implementations of the ports: AWS (SQS, DynamoDB, S3) and local (SQLite, files)."""
