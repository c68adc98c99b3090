"""Small adapters: the only modules that talk to AWS (boto3). Each one does one service."""
